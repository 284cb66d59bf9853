"""spark_jobs/lib/exactly_once.py on real local Delta tables: every micro-batch appended once, a replay skipped, and
Delta's state rebuilt for the check once per run, not per batch."""
from __future__ import annotations

from delta.tables import DeltaTable
from pyspark.sql import functions as F

from spark_jobs.lib import exactly_once
from spark_jobs.lib.exactly_once import BatchAppends, marked_batch, marker, parse_marker


def batch_frame(spark, batch_id: int, rows: int = 3):
    return spark.range(rows).select(F.lit(batch_id).alias("batch"), F.col("id"))


def batches_in(spark, path: str) -> dict[int, int]:
    return {row.batch: row["count"] for row in spark.read.format("delta").load(path).groupBy("batch").count().collect()}


def version(spark, path: str) -> int:
    return DeltaTable.forPath(spark, path).history(1).first().version


def test_markers_name_their_application_and_batch_only():
    assert parse_marker(marker("bronze-q1", 7)) == ("bronze-q1", 7)
    assert marked_batch(marker("bronze-q1", 7), "bronze-q1") == 7
    assert marked_batch(marker("bronze-q1", 7), "quarantine-q1") is None
    for text in (None, "", "a note", "[1, 2]", '{"stocklake_app": "bronze-q1", "batch": "7"}', '{"batch": 7}'):
        assert parse_marker(text) is None


def test_each_batch_once_and_a_replay_after_a_restart_is_skipped(spark, tmp_path):
    path = str(tmp_path / "bronze")
    run = BatchAppends(path, "bronze-q1")
    assert [run.append(batch_frame(spark, b), b) for b in (0, 1, 2)] == [True, True, True]
    # The job died after batch 2's commit, before its checkpoint: the next run starts with batch 2 again.
    restarted = BatchAppends(path, "bronze-q1")
    before = version(spark, path)
    assert restarted.append(batch_frame(spark, 2), 2) is False
    assert version(spark, path) == before
    assert restarted.append(batch_frame(spark, 3), 3) is True
    assert batches_in(spark, path) == {0: 3, 1: 3, 2: 3, 3: 3}
    # A new checkpoint is a new query id, hence a new application: its batch 0 is not the old one's.
    assert BatchAppends(path, "bronze-q2").append(batch_frame(spark, 0, rows=1), 0) is True
    assert batches_in(spark, path) == {0: 4, 1: 3, 2: 3, 3: 3}


def test_a_batch_committed_by_an_older_release_with_delta_txn_is_not_written_again(spark, tmp_path):
    path = str(tmp_path / "quarantine")
    for b in range(3):  # how the stream wrote before the markers: txnAppId/txnVersion on every append
        (batch_frame(spark, b).write.format("delta").mode("append")
         .option("txnAppId", "quarantine-q1").option("txnVersion", b).save(path))
    run = BatchAppends(path, "quarantine-q1")
    before = version(spark, path)
    run.append(batch_frame(spark, 2), 2)  # the replay: Delta's own check (no marker yet) skips it
    assert version(spark, path) == before
    run.append(batch_frame(spark, 3), 3)
    assert batches_in(spark, path) == {0: 3, 1: 3, 2: 3, 3: 3}


def test_the_marker_is_found_behind_other_writers_commits(spark, tmp_path, monkeypatch):
    monkeypatch.setattr(exactly_once, "HISTORY_WINDOWS", (2, None))
    path = str(tmp_path / "silver")
    BatchAppends(path, "bronze-q1").append(batch_frame(spark, 7), 7)
    # Other writers' commits after it: no metadata, another application's marker, free text.
    batch_frame(spark, 100, rows=1).write.format("delta").mode("append").save(path)
    BatchAppends(path, "quarantine-q1").append(batch_frame(spark, 101, rows=1), 101)
    (batch_frame(spark, 102, rows=1).write.format("delta").mode("append").option("userMetadata", "compaction")
     .save(path))
    restarted = BatchAppends(path, "bronze-q1")
    assert restarted.append(batch_frame(spark, 7), 7) is False
    assert batches_in(spark, path) == {7: 3, 100: 1, 101: 1, 102: 1}


def jobs_of(spark, group: str, action) -> int:
    spark.sparkContext.setJobGroup(group, group)
    try:
        action()
    finally:
        spark.sparkContext.setLocalProperty("spark.jobGroup.id", None)
    return len(spark.sparkContext.statusTracker().getJobIdsForGroup(group))


def test_only_the_first_append_of_a_run_makes_delta_rebuild_the_table_state(spark, tmp_path):
    path = str(tmp_path / "bronze")
    batch_frame(spark, -1).write.format("delta").mode("append").save(path)
    plain = jobs_of(spark, "plain-append", lambda: batch_frame(spark, -2).write.format("delta").mode("append")
                    .save(path))
    run = BatchAppends(path, "bronze-q1")
    first = jobs_of(spark, "first-append", lambda: run.append(batch_frame(spark, 0), 0))
    later = [jobs_of(spark, f"append-{b}", lambda b=b: run.append(batch_frame(spark, b), b)) for b in (1, 2, 3)]
    # The first append reads the history and asks Delta for the application's version (a state rebuild: more
    # jobs); every later one costs what a plain append does.
    assert first > plain
    assert later == [plain] * 3
