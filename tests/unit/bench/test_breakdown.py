"""bench/breakdown.py and the lines it reads: where a micro-batch's time goes, per query."""
from __future__ import annotations

import json
from types import SimpleNamespace

from bench.breakdown import HEADER, batch_breakdown, commit_after_files_ms, markdown_rows
from bench.report import markdown
from spark_jobs.lib.listener import progress_record


def line(record: dict) -> str:
    return f"2026-01-05 14:30:01,000 INFO stocklake.stream {json.dumps(record)}"


def batch(query: str, batch_id: int, rows_in: int, durations: dict, state_commit: int | None = None) -> str:
    record = {"event": "batch", "query": query, "batch_id": batch_id, "rows_in": rows_in, "duration_ms": durations}
    if state_commit is not None:
        record["state_commit_ms"] = state_commit
    return line(record)


def durations(whole: int, add_batch: int, planning: int = 100) -> dict:
    return {"latestOffset": 10, "queryPlanning": planning, "addBatch": add_batch, "walCommit": 50,
            "commitOffsets": 40, "triggerExecution": whole, "getBatch": 0}


def test_breakdown_means_data_batches_per_query_and_counts_empty_ones_apart():
    log = "\n".join([
        "26/01/05 14:30:00 WARN SomeSparkClass: not ours",
        batch("bronze_trades", 0, 0, durations(11_900, 11_000)),        # empty first batch: counted apart
        batch("bronze_trades", 1, 13_300, durations(6_900, 6_000)),
        line({"event": "bronze_batch_written", "query": "bronze_trades", "batch_id": 1, "bronze_write_ms": 2_000,
              "quarantine_write_ms": 3_001}),
        batch("bronze_trades", 2, 44_851, durations(9_100, 8_000, planning=300)),
        line({"event": "bronze_batch_written", "query": "bronze_trades", "batch_id": 2, "bronze_write_ms": 3_000,
              "quarantine_write_ms": 4_000}),
        batch("silver_trades", 0, 25_000, durations(4_000, 3_000), state_commit=900),
        line({"event": "batch", "query": "silver_quotes", "batch_id": 0, "rows_in": 5}),  # no breakdown: skipped
    ])
    result = batch_breakdown(log)
    assert list(result) == ["bronze_trades", "silver_trades"]
    assert result["bronze_trades"] == {
        "batches": 2, "empty_batches": 1, "rows_per_batch": 29_076, "latestOffset_ms": 10, "queryPlanning_ms": 200,
        "addBatch_ms": 7_000, "walCommit_ms": 50, "commitOffsets_ms": 40, "triggerExecution_ms": 8_000,
        "state_commit_ms": None, "bronze_write_ms": 2_500, "quarantine_write_ms": 3_500}
    assert result["silver_trades"]["state_commit_ms"] == 900
    assert result["silver_trades"]["bronze_write_ms"] is None
    rows = markdown_rows("catch-up", result)
    assert rows[0] == ("| catch-up | bronze_trades | 2 (+1 empty) | 29,076 | 10 | 200 | 7,000 | 50 | 40 | 8,000 |  "
                       "| 2,500 | 3,500 |")
    assert all(row.count("|") == HEADER[0].count("|") for row in rows)


def test_commit_after_files_is_the_commit_time_minus_the_newest_data_file():
    commit = "\n".join(json.dumps(action) for action in [
        {"add": {"path": "a.parquet", "modificationTime": 1_000, "dataChange": True}},
        {"add": {"path": "b.parquet", "modificationTime": 1_700, "dataChange": True}},
        {"commitInfo": {"timestamp": 2_450, "operation": "STREAMING UPDATE"}},
    ])
    assert commit_after_files_ms(commit) == 750
    # A commit that adds no data (metadata, compaction's rearrangement) has no such figure.
    assert commit_after_files_ms(json.dumps({"commitInfo": {"timestamp": 5}})) is None
    rearranged = json.dumps({"add": {"path": "c.parquet", "modificationTime": 1, "dataChange": False}})
    assert commit_after_files_ms(rearranged + "\n" + json.dumps({"commitInfo": {"timestamp": 5}})) is None


def test_progress_record_carries_sparks_duration_breakdown_and_the_state_commit():
    progress = SimpleNamespace(
        name="silver_trades", batchId=3, numInputRows=10, inputRowsPerSecond=1.0, processedRowsPerSecond=2.0,
        batchDuration=700, eventTime={}, observedMetrics=None,
        durationMs={"triggerExecution": 700, "addBatch": 500, "latestOffset": 20},
        stateOperators=[SimpleNamespace(numRowsDroppedByWatermark=0, numRowsTotal=4, commitTimeMs=120)])
    record = progress_record(progress)
    assert record["duration_ms"] == {"addBatch": 500, "latestOffset": 20, "triggerExecution": 700}
    assert record["state_commit_ms"] == 120


def test_report_renders_the_breakdown_and_delta_commit_tables():
    results = {"started_at": "2026-01-05T14:00:00+00:00", "duration_seconds": 1.0,
               "machine": {"cores": 2, "memory_gib": 1.0, "cpu": "c", "os": "o", "python": "3", "spark": "4",
                           "kafka": "4", "delta": "4"},
               "settings": {"events": 1, "symbols": 1, "kafka_partitions": 1, "trigger": "5 seconds",
                            "max_offsets_per_trigger": 1, "shuffle_partitions": 1, "producer": "p"},
               "measures": [],
               "breakdown": {"live": batch_breakdown(batch("silver_trades", 0, 7, durations(900, 800)))},
               "delta_commit_ms": {"silver": {"commits": 3, "median_ms": 410, "max_ms": 980}}}
    lines = markdown(results).splitlines()
    assert HEADER[0] in lines
    assert "| live | silver_trades | 1 (+0 empty) | 7 | 10 | 100 | 800 | 50 | 40 | 900 |  |  |  |" in lines
    assert "| silver | 3 | 410 | 980 |" in lines
