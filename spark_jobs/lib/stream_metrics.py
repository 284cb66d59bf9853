"""Observability of the streaming job: a Prometheus endpoint in the driver and a Delta table with a row per batch.

Both are fed by spark_jobs/listener.ProgressLogger with batch_record(): one record per micro-batch and query.
Names below are an interface (dashboards and benchmarks read them): keep them stable.

Prometheus, served by `spark_jobs/stream.py --metrics-port N` (or stream.metrics_port; 0 = off) on
http://<stream.metrics_host>:N/metrics. Every series has the label `query` (bronze_trades, silver_trades,
bronze_quotes, silver_quotes). Counters exist (at 0) from the query's start, gauges from its first batch.

    stocklake_stream_rows_in_total                    counter  rows read from Kafka
    stocklake_stream_rows_dropped_by_watermark_total  counter  rows dropped as late by the dedup (silver_* only)
    stocklake_stream_rows_quarantined_total           counter  rows that broke the contract, counted by the
                                                               query's parse observation (silver_* only; the
                                                               bronze_* queries write the quarantine table but
                                                               report 0 here)
    stocklake_stream_batches_total                    counter  micro-batches completed (no-data batches too)
    stocklake_stream_input_rows_per_second            gauge    last batch: rate at which rows arrived
    stocklake_stream_processed_rows_per_second        gauge    last batch: rate at which rows were processed
    stocklake_stream_batch_duration_seconds           gauge    last batch: wall-clock duration
    stocklake_stream_state_rows                       gauge    last batch: rows held in state (dedup keys)
    stocklake_stream_watermark_delay_seconds          gauge    last batch: trigger time - watermark; NaN when the
                                                               query has no watermark (yet)
    stocklake_stream_quarantine_ratio                 gauge    last batch: rows_quarantined / rows_in (0 when
                                                               rows_in = 0)
    stocklake_stream_last_batch_timestamp_seconds     gauge    last batch: trigger time, Unix seconds

Metrics table: Delta at settings.lake_uri(stream.metrics_table) (default s3a://<bucket>/_metrics/stream_progress),
partitioned by `date`, one row per batch with the columns of METRICS_TABLE_SCHEMA:

    query, batch_id, query_id, run_id, batch_timestamp (the batch's trigger time), rows_in,
    rows_dropped_by_watermark, rows_quarantined, state_rows, input_rows_per_s, processed_rows_per_s,
    batch_duration_ms, watermark (null when the query has none yet), date (yyyy-MM-dd of batch_timestamp, UTC)

The listener only buffers records (a Spark job inside a listener callback is unsafe); the job's main loop appends
them every stream.metrics_flush_seconds and once more when the queries stop. A failed append is logged as
{"event": "metrics_flush_failed", ...} and retried with the same Delta transaction version, so a retry of an
append that did commit writes nothing twice. A batch's row can be lost only when the job dies before its flush.

Spark reports the watermark of a query that has seen no event yet as 1970-01-01T00:00:00Z: that counts as no
watermark here (NaN delay, null column), not as a delay of half a century.
"""
from __future__ import annotations

import json
import logging
import math
import threading
import uuid
from datetime import datetime, timezone
from typing import Iterable

import pyarrow as pa
from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server
from pyspark.sql.types import DoubleType, LongType, StringType, StructField, StructType, TimestampType

from spark_jobs.lib.listener import LOGGER_NAME

log = logging.getLogger(LOGGER_NAME)

METRICS_TABLE_SCHEMA = StructType([
    StructField("query", StringType()),
    StructField("batch_id", LongType()),
    StructField("query_id", StringType()),
    StructField("run_id", StringType()),
    StructField("batch_timestamp", TimestampType()),
    StructField("rows_in", LongType()),
    StructField("rows_dropped_by_watermark", LongType()),
    StructField("rows_quarantined", LongType()),
    StructField("state_rows", LongType()),
    StructField("input_rows_per_s", DoubleType()),
    StructField("processed_rows_per_s", DoubleType()),
    StructField("batch_duration_ms", LongType()),
    StructField("watermark", TimestampType()),
    StructField("date", StringType()),
])
METRICS_TABLE_PARTITION = "date"
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def parse_time(text: str | None) -> datetime | None:
    """Spark's ISO 8601 progress time ('2026-01-05T14:30:00.123Z') -> an aware UTC datetime."""
    return datetime.fromisoformat(text).astimezone(timezone.utc) if text else None


def watermark_time(record: dict) -> datetime | None:
    """The batch's watermark, or None when the query has none (no watermark, or no event seen yet)."""
    watermark = parse_time(record.get("watermark"))
    return None if watermark is None or watermark == EPOCH else watermark


def watermark_delay_seconds(record: dict) -> float:
    """How far the watermark trails the batch's trigger time, in seconds; NaN without a watermark."""
    watermark = watermark_time(record)
    if watermark is None:
        return math.nan
    return (parse_time(record["batch_timestamp"]) - watermark).total_seconds()


def quarantine_ratio(record: dict) -> float:
    """Share of the batch's input rows that were quarantined; 0 for an empty batch."""
    rows_in = record["rows_in"]
    return record.get("rows_quarantined", 0) / rows_in if rows_in else 0.0


def table_rows(records: Iterable[dict]) -> list[tuple]:
    """Batch records -> rows of METRICS_TABLE_SCHEMA, in its column order."""
    rows = []
    for record in records:
        batch_timestamp = parse_time(record["batch_timestamp"])
        rows.append((
            record["query"], record["batch_id"], record["query_id"], record["run_id"], batch_timestamp,
            record["rows_in"], record["rows_dropped_by_watermark"], record.get("rows_quarantined", 0),
            record["state_rows"], float(record["input_rows_per_s"]), float(record["processed_rows_per_s"]),
            record["batch_duration_ms"], watermark_time(record), batch_timestamp.strftime("%Y-%m-%d"),
        ))
    return rows


def arrow_table(records: list[dict]) -> pa.Table:
    """table_rows as an Arrow table: createDataFrame of an Arrow table is a JVM-only read, while a list of tuples
    would start Python workers in a job that otherwise needs none."""
    return pa.Table.from_pylist([dict(zip(METRICS_TABLE_SCHEMA.names, row)) for row in table_rows(records)])


class StreamMetrics:
    """The job's Prometheus metrics. Owns its registry, so two instances (tests) never share series."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()

        def counter(name: str, doc: str) -> Counter:
            # prometheus_client exposes a Counter named x as x_total.
            return Counter(name, doc, ["query"], registry=self.registry)

        def gauge(name: str, doc: str) -> Gauge:
            return Gauge(name, doc, ["query"], registry=self.registry)

        self.rows_in = counter("stocklake_stream_rows_in", "Rows read from Kafka")
        self.rows_dropped = counter("stocklake_stream_rows_dropped_by_watermark",
                                    "Rows dropped as late (behind the watermark) by the dedup")
        self.rows_quarantined = counter("stocklake_stream_rows_quarantined",
                                        "Rows that broke the contract (the query's parse observation)")
        self.batches = counter("stocklake_stream_batches", "Micro-batches completed")
        self.input_rate = gauge("stocklake_stream_input_rows_per_second", "Last batch: rows arriving per second")
        self.processed_rate = gauge("stocklake_stream_processed_rows_per_second",
                                    "Last batch: rows processed per second")
        self.batch_duration = gauge("stocklake_stream_batch_duration_seconds", "Last batch: duration")
        self.state_rows = gauge("stocklake_stream_state_rows", "Last batch: rows held in state")
        self.watermark_delay = gauge("stocklake_stream_watermark_delay_seconds",
                                     "Last batch: trigger time minus watermark (NaN without a watermark)")
        self.quarantine_ratio = gauge("stocklake_stream_quarantine_ratio",
                                      "Last batch: rows quarantined / rows in (0 for an empty batch)")
        self.last_batch = gauge("stocklake_stream_last_batch_timestamp_seconds",
                                "Last batch: trigger time, Unix seconds")

    def declare(self, query: str) -> None:
        """Expose the query's counters at 0 before its first batch, so a scrape tells 'nothing yet' from 'no
        such query'."""
        for counter in (self.rows_in, self.rows_dropped, self.rows_quarantined, self.batches):
            counter.labels(query)

    def add(self, record: dict) -> None:
        """Account one batch record (ProgressLogger sink; prometheus_client's metrics are thread-safe)."""
        query = record["query"]
        self.rows_in.labels(query).inc(record["rows_in"])
        self.rows_dropped.labels(query).inc(record["rows_dropped_by_watermark"])
        self.rows_quarantined.labels(query).inc(record.get("rows_quarantined", 0))
        self.batches.labels(query).inc()
        self.input_rate.labels(query).set(record["input_rows_per_s"])
        self.processed_rate.labels(query).set(record["processed_rows_per_s"])
        self.batch_duration.labels(query).set(record["batch_duration_ms"] / 1000)
        self.state_rows.labels(query).set(record["state_rows"])
        self.watermark_delay.labels(query).set(watermark_delay_seconds(record))
        self.quarantine_ratio.labels(query).set(quarantine_ratio(record))
        self.last_batch.labels(query).set(parse_time(record["batch_timestamp"]).timestamp())

    def serve(self, host: str, port: int):
        """Start the /metrics HTTP endpoint in a daemon thread; returns the server (server.server_port).
        Raises OSError when the address cannot be bound (port in use)."""
        server, _thread = start_http_server(port, addr=host, registry=self.registry)
        return server


def ensure_metrics_table(spark, path: str) -> None:
    """Create the (empty, partitioned) metrics table so readers never meet a missing table."""
    from delta.tables import DeltaTable

    (DeltaTable.createIfNotExists(spark).location(path).addColumns(METRICS_TABLE_SCHEMA)
     .partitionedBy(METRICS_TABLE_PARTITION).execute())


class MetricsTable:
    """Batch records buffered from the listener thread (add) and appended by the main loop (flush).

    flush() is called from one thread only. Each append is a Delta transaction (txnAppId of this job run,
    txnVersion counting appends): a failed append keeps its records and is retried, with the same version, before
    newer records, so an append that did commit after all is skipped by Delta instead of written twice.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._buffered: list[dict] = []
        self._unwritten: list[dict] | None = None  # taken from the buffer, not appended yet (main thread only)
        self._app_id = f"stream-metrics-{uuid.uuid4()}"
        self._version = 0

    def add(self, record: dict) -> None:
        with self._lock:
            self._buffered.append(record)

    def pending(self) -> int:
        with self._lock:
            return len(self._buffered) + len(self._unwritten or [])

    def flush(self, spark) -> int:
        """Append what is buffered; the number of rows written. Never raises: a failure is logged and the
        records are kept for the next flush."""
        written = 0
        if self._unwritten is not None:
            # Retried alone: its transaction version must name the same rows as the failed attempt.
            written = self._append(spark)
            if self._unwritten is not None:
                return 0
        with self._lock:
            records, self._buffered = self._buffered, []
        if records:
            self._unwritten = records
            written += self._append(spark)
        return written

    def _append(self, spark) -> int:
        records = self._unwritten
        try:
            (spark.createDataFrame(arrow_table(records), METRICS_TABLE_SCHEMA)
             .write.format("delta").mode("append")
             .option("txnAppId", self._app_id).option("txnVersion", self._version)
             .partitionBy(METRICS_TABLE_PARTITION)
             .save(self.path))
        except Exception as exc:  # a metrics append must never fail the stream
            log.warning(json.dumps({"event": "metrics_flush_failed", "records": len(records),
                                    "error": (str(exc) or type(exc).__name__).splitlines()[0]}))
            return 0
        self._unwritten = None
        self._version += 1
        return len(records)
