"""The maintenance jobs' pure helpers (spark_jobs/lib/hours.py, jobs.py) and their option checks, with exact values."""
from __future__ import annotations

import argparse
from datetime import datetime, timedelta, timezone

import pytest
from pyspark.sql import Row

from spark_jobs import compact, retention, vacuum
from spark_jobs.lib.delta import is_concurrent_modification, retry_once_on_conflict, storage_options
from spark_jobs.lib.hours import (PartitionStats, compaction_candidates, expired_partitions, hour_start, in_lookback,
                                  is_closed, parse_utc, partition_predicate, partition_stats, retention_cutoff)

UTC = timezone.utc


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def stats(date: str, hour: str, files: int, size: int = 100, rows: int | None = 10) -> PartitionStats:
    return PartitionStats(date, hour, files, size, rows)


@pytest.mark.parametrize("text, expected", [
    ("2026-01-05T15:20:00Z", at("2026-01-05T15:20:00")),
    ("2026-01-05T15:20:00+00:00", at("2026-01-05T15:20:00")),
    ("2026-01-05T10:20:00-05:00", at("2026-01-05T15:20:00")),  # converted to UTC
    ("2026-01-05T15:20:00", at("2026-01-05T15:20:00")),        # no offset: taken as UTC
    ("2026-01-05", at("2026-01-05T00:00:00")),
])
def test_parse_utc(text, expected):
    value = parse_utc(text)
    assert value == expected and value.tzinfo == UTC


def test_parse_utc_refuses_what_is_not_a_time():
    with pytest.raises(argparse.ArgumentTypeError, match="not an ISO 8601 time: 'yesterday'"):
        parse_utc("yesterday")


def test_hour_start_of_partition_values():
    assert hour_start("2026-01-05", "07") == at("2026-01-05T07:00:00")
    assert hour_start("2024-02-29", "23") == at("2024-02-29T23:00:00")
    for date, hour in [("2026-01-05", "7"), ("2026-01-05", "24"), ("2025-02-29", "01"), ("2026-1-05", "01"),
                       ("__HIVE_DEFAULT_PARTITION__", "01"), (None, "01"), ("2026-01-05", None)]:
        assert hour_start(date, hour) is None, (date, hour)


@pytest.mark.parametrize("now, grace, closed", [
    ("2026-01-05T14:59:59", 0, False),            # the hour itself is still open
    ("2026-01-05T15:00:00", 0, True),             # no grace: closed the moment it ends
    ("2026-01-05T15:14:59.999999", 15, False),    # within the grace after the hour
    ("2026-01-05T15:15:00", 15, True),            # exactly at hour end + grace
    ("2026-01-05T16:00:00", 15, True),
    ("2026-01-05T14:30:00", 15, False),
])
def test_an_hour_closes_at_its_end_plus_the_grace(now, grace, closed):
    assert is_closed("2026-01-05", "14", at(now), grace) is closed


def test_closing_rolls_over_midnight_and_the_year():
    assert not is_closed("2026-01-05", "23", at("2026-01-06T00:14:59"), 15)
    assert is_closed("2026-01-05", "23", at("2026-01-06T00:15:00"), 15)
    assert not is_closed("2025-12-31", "23", at("2026-01-01T00:14:00"), 15)
    assert is_closed("2025-12-31", "23", at("2026-01-01T00:15:00"), 15)
    # The new day's first hour is the open one.
    assert not is_closed("2026-01-06", "00", at("2026-01-06T00:15:00"), 15)


def test_lookback_is_the_whole_hours_before_the_current_one():
    now = at("2026-01-06T01:05:00")
    inside = [h for h in [("2026-01-05", "21"), ("2026-01-05", "22"), ("2026-01-05", "23"), ("2026-01-06", "00"),
                          ("2026-01-06", "01"), ("2026-01-06", "02")] if in_lookback(*h, now, 3)]
    assert inside == [("2026-01-05", "22"), ("2026-01-05", "23"), ("2026-01-06", "00")]


def test_candidates_are_closed_hours_in_the_lookback_with_enough_files_oldest_first():
    table = {s.key: s for s in [
        stats("2026-01-03", "14", 9),   # older than the 48 h look-back: left alone
        stats("2026-01-03", "15", 4),   # the oldest hour inside it
        stats("2026-01-05", "13", 1),   # closed, but a single file: already compact
        stats("2026-01-05", "14", 2),   # closed (15:15 <= 15:20)
        stats("2026-01-04", "09", 5),
        stats("2026-01-05", "15", 7),   # the open hour: never
        stats("2026-01-05", "16", 3),   # the future (a clock-skewed producer): never
    ]}
    chosen = compaction_candidates(table, at("2026-01-05T15:20:00"), grace_minutes=15, lookback_hours=48,
                                   min_files=2)
    assert [s.key for s in chosen] == [("2026-01-03", "15"), ("2026-01-04", "09"), ("2026-01-05", "14")]


def test_an_hour_within_its_grace_is_not_a_candidate_until_the_grace_is_over():
    table = {("2026-01-05", "14"): stats("2026-01-05", "14", 6)}
    assert compaction_candidates(table, at("2026-01-05T15:14:00"), 15, 48, 2) == []
    assert compaction_candidates(table, at("2026-01-05T15:15:00"), 15, 48, 2) == [table[("2026-01-05", "14")]]


def test_partition_stats_from_add_actions():
    def add(date, hour, size, rows):
        return {"partition.date": date, "partition.hour": hour, "size_bytes": size, "num_records": rows}

    result = partition_stats([add("2026-01-05", "14", 1000, 5), add("2026-01-05", "15", 300, 2),
                              add("2026-01-05", "14", 2500, 7), add("2026-01-04", "09", 10, None),
                              add("2026-01-04", "09", 20, 3)])
    assert result == {
        ("2026-01-04", "09"): PartitionStats("2026-01-04", "09", 2, 30, None),  # a file without statistics
        ("2026-01-05", "14"): PartitionStats("2026-01-05", "14", 2, 3500, 12),
        ("2026-01-05", "15"): PartitionStats("2026-01-05", "15", 1, 300, 2),
    }
    assert list(result) == sorted(result)
    assert partition_stats([]) == {}


def test_retention_cutoff_counts_whole_days_back_from_the_utc_date():
    assert retention_cutoff(at("2026-01-05T00:30:00"), 730) == "2024-01-06"  # across 2024-02-29
    assert retention_cutoff(at("2026-01-05T23:59:59"), 30) == "2025-12-06"
    # 23:30 in New York is already the next day in UTC.
    assert retention_cutoff(datetime(2026, 1, 5, 23, 30, tzinfo=timezone(timedelta(hours=-5))), 1) == "2026-01-05"


def test_expired_partitions_are_those_dated_before_the_cutoff():
    table = {s.key: s for s in [stats("2025-12-05", "23", 1), stats("2025-12-06", "00", 1),
                                stats("2025-11-30", "04", 2), stats("2026-01-05", "10", 1)]}
    assert [s.key for s in expired_partitions(table, "2025-12-06")] == [("2025-11-30", "04"), ("2025-12-05", "23")]


def test_partition_predicate_checks_its_values():
    assert partition_predicate(stats("2026-01-05", "14", 2)) == "date = '2026-01-05' AND hour = '14'"
    with pytest.raises(ValueError, match="not an hour partition"):
        partition_predicate(stats("2026-01-05' OR '1'='1", "14", 2))


def test_storage_options_follow_the_lake_settings(monkeypatch):
    from conf.settings import load_settings

    monkeypatch.setenv("STOCKLAKE_LAKE_S3_ENDPOINT", "https://s3.eu-west-1.amazonaws.com")
    monkeypatch.setenv("STOCKLAKE_LAKE_PATH_STYLE_ACCESS", "false")
    monkeypatch.setenv("STOCKLAKE_LAKE_S3_REGION", "eu-west-1")
    assert storage_options(load_settings()) == {
        "AWS_ENDPOINT_URL": "https://s3.eu-west-1.amazonaws.com", "AWS_REGION": "eu-west-1",
        "AWS_ALLOW_HTTP": "false", "AWS_VIRTUAL_HOSTED_STYLE_REQUEST": "true"}


def delta_conflict(spark, java_class: str):
    """A real Delta conflict exception from the JVM, as pyspark hands it to Python in the jobs: with delta-spark
    imported, which converts its conflicts to its own Python exceptions."""
    import delta.tables  # noqa: F401 (installs Delta's conversion, as every job's import of it does)
    from pyspark.errors.exceptions.captured import convert_exception

    jvm_exception = getattr(spark.sparkContext._jvm, java_class)(
        "Files were added to partition [date=2026-01-05, hour=14] by a concurrent update.")
    return convert_exception(jvm_exception)


@pytest.mark.parametrize("java_class", ["io.delta.exceptions.ConcurrentAppendException",
                                        "io.delta.exceptions.ConcurrentDeleteReadException",
                                        "io.delta.exceptions.ConcurrentDeleteDeleteException",
                                        "io.delta.exceptions.ConcurrentWriteException",
                                        "io.delta.exceptions.MetadataChangedException"])
def test_delta_write_conflicts_are_recognised(spark, java_class):
    assert is_concurrent_modification(delta_conflict(spark, java_class))


def test_a_conflict_is_recognised_through_the_cause_chain(spark):
    """MERGE surfaces a conflict as a Py4JJavaError whose JVM exception may wrap the Delta one."""
    from py4j.protocol import Py4JJavaError

    jvm = spark.sparkContext._jvm
    conflict = jvm.io.delta.exceptions.ConcurrentAppendException("Files were added to partition [date=...]")
    wrapped = jvm.java.lang.RuntimeException("wrapped", conflict)
    assert is_concurrent_modification(Py4JJavaError("An error occurred while calling o1.execute.\n", conflict))
    assert is_concurrent_modification(Py4JJavaError("An error occurred while calling o1.execute.\n", wrapped))
    assert not is_concurrent_modification(
        Py4JJavaError("An error occurred while calling o1.execute.\n", jvm.java.lang.IllegalStateException("disk")))


def test_other_errors_are_not_conflicts(spark):
    with pytest.raises(Exception) as missing_table:
        spark.sql("SELECT * FROM delta.`/nonexistent/stocklake-test-table`").collect()
    assert not is_concurrent_modification(missing_table.value)
    assert not is_concurrent_modification(ValueError("disk full"))


def test_a_conflict_is_retried_once_and_reported(spark):
    conflict = delta_conflict(spark, "io.delta.exceptions.ConcurrentAppendException")
    calls, reported = [], []

    def flaky():
        calls.append(1)
        if len(calls) == 1:
            raise conflict
        return "done"

    assert retry_once_on_conflict(flaky, reported.append) == ("done", 2)
    assert reported == [conflict]

    def always_conflicting():
        calls.append(1)
        raise conflict

    calls.clear()
    with pytest.raises(type(conflict)):
        retry_once_on_conflict(always_conflicting, reported.append)
    assert len(calls) == 2


def test_other_errors_are_not_retried():
    calls = []

    def broken():
        calls.append(1)
        raise ValueError("bad")

    with pytest.raises(ValueError):
        retry_once_on_conflict(broken, lambda exc: None)
    assert calls == [1]
    assert retry_once_on_conflict(lambda: 7, lambda exc: None) == (7, 1)


def test_compact_options():
    args = compact.parse_args([])
    assert (args.entities, args.layers, args.now, args.json) == (["trades", "quotes"], ["bronze", "silver"], None,
                                                                 None)
    args = compact.parse_args(["--entity", "quotes", "--layer", "silver", "--layer", "silver",
                               "--now", "2026-01-05T15:20:00Z"])
    assert (args.entities, args.layers, args.now) == (["quotes"], ["silver"], at("2026-01-05T15:20:00"))


def test_compact_refuses_a_bad_now(capsys):
    with pytest.raises(SystemExit) as exit_info:
        compact.parse_args(["--now", "soon"])
    assert exit_info.value.code == 2
    assert "--now: not an ISO 8601 time: 'soon'" in capsys.readouterr().err


def test_optimize_metrics_from_the_result_row():
    row = Row(path="s3a://b/bronze/trades", metrics=Row(
        numFilesAdded=1, numFilesRemoved=6, filesAdded=Row(min=2612, max=2612, avg=2612.0, totalFiles=1,
                                                           totalSize=2612),
        filesRemoved=Row(min=2551, max=2566, avg=2558.7, totalFiles=6, totalSize=15352)))
    assert compact.optimize_metrics([row]) == {"files_removed": 6, "files_added": 1, "bytes_removed": 15352,
                                               "bytes_added": 2612}


@pytest.mark.parametrize("hours, refused", [(167, True), (1, True), (168, False), (720, False)])
def test_vacuum_retention_below_seven_days_is_refused(hours, refused):
    assert (vacuum.retention_error(hours) is not None) is refused


def test_vacuum_refuses_a_short_retention_before_starting_spark(capsys):
    assert vacuum.main(["--retention-hours", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["vacuum: --retention-hours 1 is below 168 hours (7 days), Delta's retention safety minimum: "
                   "younger files may still be read; this job never disables "
                   "spark.databricks.delta.retentionDurationCheck.enabled"]


def test_retention_refuses_days_the_reconcile_job_still_reads(capsys):
    assert retention.main(["--days", "3"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "retention: --days 3 would delete Bronze partitions the reconcile job still reads "
        "(maintenance.reconcile_lookback_days = 3); use more than 3"]
    assert retention.days_error(4, 3) is None


def test_summary_lines():
    table = {"entity": "trades", "layer": "bronze", "table": "s3a://b/bronze/trades", "status": "compacted",
             "files_before": 12, "files_after": 2, "bytes_before": 30702, "bytes_after": 5224, "partitions": [
                 {"date": "2026-01-05", "hour": "13", "status": "compacted", "conflicts": []},
                 {"date": "2026-01-05", "hour": "14", "status": "compacted", "conflicts": ["ConcurrentAppend"]}]}
    from conf.settings import load_settings

    settings = load_settings()
    assert compact.summary_line(table, settings) == ("compact bronze/trades: 2 closed hour(s) compacted, files 12 -> "
                                                     "2, bytes 30,702 -> 5,224, 1 retried after a write conflict")
    assert compact.summary_line({**table, "status": "missing"}, settings) == \
        "compact bronze/trades: skipped, no Delta table at s3a://b/bronze/trades"
    assert compact.summary_line({**table, "status": "nothing_to_do"}, settings) == \
        "compact bronze/trades: nothing to do (no closed hour among the last 48 h with >= 2 files)"
