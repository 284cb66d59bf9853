"""The stream's metrics: progress records -> Prometheus samples and metrics-table rows, without Spark jobs."""
from __future__ import annotations

import io
import json
import logging
import math
from contextlib import redirect_stderr
from datetime import datetime, timezone
from types import SimpleNamespace

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from pyspark.sql import Row

from spark_jobs.lib.listener import LOGGER_NAME, ProgressLogger, batch_record, progress_record
from spark_jobs.stream import parse_args, run
from spark_jobs.lib.stream_metrics import (METRICS_TABLE_SCHEMA, MetricsTable, StreamMetrics, arrow_table,
                                           quarantine_ratio, table_rows, watermark_delay_seconds)

UTC = timezone.utc


def record(query: str, batch_id: int, rows_in: int, quarantined: int | None, *, dropped: int = 0,
           watermark: str | None = None, timestamp: str = "2026-01-05T14:30:05.500Z") -> dict:
    """A batch record as listener.batch_record builds it."""
    result = {"event": "batch", "query": query, "batch_id": batch_id, "rows_in": rows_in,
              "input_rows_per_s": 250.5, "processed_rows_per_s": 1200.0, "batch_duration_ms": 1500,
              "watermark": watermark, "rows_dropped_by_watermark": dropped, "state_rows": 90 if watermark else 0,
              "query_id": f"qid-{query}", "run_id": "rid-1", "batch_timestamp": timestamp}
    if quarantined is not None:
        result["rows_quarantined"] = quarantined
    return result


def samples(metrics: StreamMetrics) -> dict[tuple[str, str], float]:
    """(sample name, query label) -> value, from the text exposition a scrape gets."""
    text = generate_latest(metrics.registry).decode()
    return {(sample.name, sample.labels["query"]): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples
            if not sample.name.endswith("_created")}


def test_prometheus_samples_after_two_batches():
    metrics = StreamMetrics()
    metrics.declare("silver_quotes")
    metrics.add(record("silver_trades", 0, 1000, 50, watermark="1970-01-01T00:00:00.000Z",
                       timestamp="2026-01-05T14:30:00.000Z"))
    metrics.add(record("silver_trades", 1, 400, 4, dropped=7, watermark="2026-01-05T14:20:00.000Z"))
    metrics.add(record("bronze_trades", 0, 1400, None))

    assert samples(metrics) == {
        ("stocklake_stream_rows_in_total", "silver_trades"): 1400.0,
        ("stocklake_stream_rows_in_total", "bronze_trades"): 1400.0,
        ("stocklake_stream_rows_in_total", "silver_quotes"): 0.0,
        ("stocklake_stream_rows_dropped_by_watermark_total", "silver_trades"): 7.0,
        ("stocklake_stream_rows_dropped_by_watermark_total", "bronze_trades"): 0.0,
        ("stocklake_stream_rows_dropped_by_watermark_total", "silver_quotes"): 0.0,
        ("stocklake_stream_rows_quarantined_total", "silver_trades"): 54.0,
        ("stocklake_stream_rows_quarantined_total", "bronze_trades"): 0.0,
        ("stocklake_stream_rows_quarantined_total", "silver_quotes"): 0.0,
        ("stocklake_stream_batches_total", "silver_trades"): 2.0,
        ("stocklake_stream_batches_total", "bronze_trades"): 1.0,
        ("stocklake_stream_batches_total", "silver_quotes"): 0.0,
        # Gauges: the last batch of each query.
        ("stocklake_stream_input_rows_per_second", "silver_trades"): 250.5,
        ("stocklake_stream_input_rows_per_second", "bronze_trades"): 250.5,
        ("stocklake_stream_processed_rows_per_second", "silver_trades"): 1200.0,
        ("stocklake_stream_processed_rows_per_second", "bronze_trades"): 1200.0,
        ("stocklake_stream_batch_duration_seconds", "silver_trades"): 1.5,
        ("stocklake_stream_batch_duration_seconds", "bronze_trades"): 1.5,
        ("stocklake_stream_state_rows", "silver_trades"): 90.0,
        ("stocklake_stream_state_rows", "bronze_trades"): 0.0,
        ("stocklake_stream_watermark_delay_seconds", "silver_trades"): 605.5,
        ("stocklake_stream_watermark_delay_seconds", "bronze_trades"): pytest.approx(math.nan, nan_ok=True),
        ("stocklake_stream_quarantine_ratio", "silver_trades"): 0.01,
        ("stocklake_stream_quarantine_ratio", "bronze_trades"): 0.0,
        ("stocklake_stream_last_batch_timestamp_seconds", "silver_trades"): 1767623405.5,
        ("stocklake_stream_last_batch_timestamp_seconds", "bronze_trades"): 1767623405.5,
    }


def test_quarantine_ratio_is_of_the_batch_and_zero_for_an_empty_one():
    assert quarantine_ratio(record("silver_trades", 0, 200, 30)) == 0.15
    assert quarantine_ratio(record("silver_trades", 1, 0, 0)) == 0.0
    assert quarantine_ratio(record("bronze_trades", 0, 200, None)) == 0.0


def test_watermark_delay_is_trigger_time_minus_watermark_and_nan_without_one():
    assert watermark_delay_seconds(record("silver_trades", 3, 10, 0, watermark="2026-01-05T14:20:00.000Z",
                                          timestamp="2026-01-05T14:30:05.250Z")) == 605.25
    assert math.isnan(watermark_delay_seconds(record("bronze_trades", 3, 10, None)))
    # Spark's watermark before the query has seen an event: no watermark yet, not 56 years of delay.
    assert math.isnan(watermark_delay_seconds(record("silver_trades", 0, 10, 0,
                                                     watermark="1970-01-01T00:00:00.000Z")))


def test_table_rows_follow_the_schema_with_null_watermarks():
    records = [
        record("silver_trades", 1, 400, 4, dropped=7, watermark="2026-01-05T14:20:00.000Z"),
        record("bronze_trades", 0, 1400, None, timestamp="2026-01-05T23:59:59.999Z"),
        record("silver_trades", 0, 1000, 50, watermark="1970-01-01T00:00:00.000Z"),
    ]
    rows = table_rows(records)
    assert [field.name for field in METRICS_TABLE_SCHEMA] == [
        "query", "batch_id", "query_id", "run_id", "batch_timestamp", "rows_in", "rows_dropped_by_watermark",
        "rows_quarantined", "state_rows", "input_rows_per_s", "processed_rows_per_s", "batch_duration_ms",
        "watermark", "date"]
    batch_time = datetime(2026, 1, 5, 14, 30, 5, 500000, tzinfo=UTC)
    assert rows == [
        ("silver_trades", 1, "qid-silver_trades", "rid-1", batch_time, 400, 7, 4, 90, 250.5, 1200.0, 1500,
         datetime(2026, 1, 5, 14, 20, tzinfo=UTC), "2026-01-05"),
        ("bronze_trades", 0, "qid-bronze_trades", "rid-1", datetime(2026, 1, 5, 23, 59, 59, 999000, tzinfo=UTC),
         1400, 0, 0, 0, 250.5, 1200.0, 1500, None, "2026-01-05"),
        ("silver_trades", 0, "qid-silver_trades", "rid-1", batch_time, 1000, 0, 50, 90, 250.5, 1200.0, 1500,
         None, "2026-01-05"),
    ]
    # Every value fits its column: what createDataFrame(rows, METRICS_TABLE_SCHEMA) checks.
    for row in rows:
        for field, value in zip(METRICS_TABLE_SCHEMA, row):
            field.dataType.toInternal(value)
    # What the flush hands to Spark: the same rows as Arrow.
    assert arrow_table(records).to_pylist() == [dict(zip(METRICS_TABLE_SCHEMA.names, row)) for row in rows]


def progress(name: str, observed: dict | None) -> SimpleNamespace:
    """The StreamingQueryProgress fields the listener reads."""
    return SimpleNamespace(
        name=name, batchId=4, numInputRows=300, inputRowsPerSecond=100.0, processedRowsPerSecond=600.04,
        batchDuration=500, eventTime={"watermark": "2026-01-05T14:20:00.000Z"},
        stateOperators=[SimpleNamespace(numRowsDroppedByWatermark=2, numRowsTotal=40)],
        observedMetrics=observed, id="11111111-2222-3333-4444-555555555555", runId="rid-9",
        timestamp="2026-01-05T14:30:00.000Z")


def test_progress_record_reads_rows_quarantined_from_the_parse_observation():
    observed = {"silver_trades_parse": Row(rows_parsed=300, rows_quarantined=12)}
    assert progress_record(progress("silver_trades", observed)) == {
        "event": "batch", "query": "silver_trades", "batch_id": 4, "rows_in": 300, "input_rows_per_s": 100.0,
        "processed_rows_per_s": 600.0, "batch_duration_ms": 500, "watermark": "2026-01-05T14:20:00.000Z",
        "rows_dropped_by_watermark": 2, "state_rows": 40, "rows_quarantined": 12}
    # No observation of its own (bronze queries; another query's observation does not count): the key is absent.
    for observed in ({}, None, {"silver_quotes_parse": Row(rows_parsed=1, rows_quarantined=1)}):
        assert "rows_quarantined" not in progress_record(progress("silver_trades", observed))


def test_listener_hands_batch_records_to_its_sinks_and_logs_the_line_without_ids(caplog):
    received = []

    def broken_sink(_record):
        raise RuntimeError("boom")

    listener = ProgressLogger(sinks=[broken_sink, received.append])
    fake = progress("silver_trades", {"silver_trades_parse": Row(rows_parsed=300, rows_quarantined=12)})
    with caplog.at_level(logging.INFO, logger=LOGGER_NAME):
        listener.onQueryProgress(SimpleNamespace(progress=fake))
    assert received == [batch_record(fake)]
    assert received[0]["query_id"] == "11111111-2222-3333-4444-555555555555"
    assert received[0]["batch_timestamp"] == "2026-01-05T14:30:00.000Z"
    logged = [json.loads(r.getMessage()) for r in caplog.records]
    assert logged == [{"event": "metrics_sink_failed", "query": "silver_trades", "batch_id": 4, "error": "boom"},
                      progress_record(fake)]


class FakeWriter:
    """Records the Delta append a MetricsTable makes; fails while `failures` is positive."""

    def __init__(self, failures: int):
        self.failures = failures
        self.appends: list[tuple[int, list]] = []

    def createDataFrame(self, table, schema):
        assert schema is METRICS_TABLE_SCHEMA
        rows = list(zip(table.column("query").to_pylist(), table.column("batch_id").to_pylist()))
        writer = SimpleNamespace(options={})

        def option(key, value):
            writer.options[key] = value
            return writer

        def save(path):
            assert path == "s3a://bucket/_metrics/stream_progress"
            if self.failures:
                self.failures -= 1
                raise RuntimeError("S3 unavailable\nstack trace")
            self.appends.append((writer.options["txnVersion"], rows))

        writer.format = writer.mode = writer.partitionBy = lambda *_: writer
        writer.option, writer.save = option, save
        return SimpleNamespace(write=writer)


def test_a_failed_flush_keeps_its_records_and_retries_them_with_the_same_transaction_version(caplog):
    table = MetricsTable("s3a://bucket/_metrics/stream_progress")
    spark = FakeWriter(failures=2)
    table.add(record("silver_trades", 0, 10, 1))
    with caplog.at_level(logging.INFO, logger=LOGGER_NAME):
        assert table.flush(spark) == 0
        table.add(record("silver_trades", 1, 10, 1))
        assert table.flush(spark) == 0  # the retry fails too: the newer record waits behind it
    assert [json.loads(r.getMessage()) for r in caplog.records] == [
        {"event": "metrics_flush_failed", "records": 1, "error": "S3 unavailable"}] * 2
    assert table.pending() == 2

    assert table.flush(spark) == 2
    assert spark.appends == [(0, [("silver_trades", 0)]), (1, [("silver_trades", 1)])]
    assert table.pending() == 0
    assert table.flush(spark) == 0  # nothing buffered: no empty commit


def test_metrics_port_option():
    assert parse_args([]).metrics_port is None
    assert parse_args(["--metrics-port", "9108"]).metrics_port == 9108
    with pytest.raises(SystemExit) as exit_:
        with redirect_stderr(io.StringIO()):
            parse_args(["--metrics-port", "70000"])
    assert exit_.value.code == 2


def test_a_bad_metrics_setting_is_a_configuration_error(monkeypatch):
    monkeypatch.setenv("STOCKLAKE_STREAM_METRICS_PORT", "70000")
    stderr = io.StringIO()
    with redirect_stderr(stderr):
        assert run([]) == 2
    assert stderr.getvalue() == ("stream: configuration error: stream.metrics_port: must be 0 (off) to 65535, "
                                 "got 70000\n")
