"""Structured progress: one JSON line per micro-batch, so late rows and slow batches never pass unseen.

The job logs through logger `stocklake.stream` with LOG_FORMAT (spark_jobs/lib/logs.py), one JSON object per line:

    2026-01-05 14:30:00,123 INFO stocklake.stream {"event": "batch", "query": "silver_trades", "rows_in": 812, ...}

read_progress() reads them back from the job's log; it is the one parser of these lines.

A batch line of a query that observes its parse step (the silver queries, see parse_observation_name) also
carries `rows_quarantined`; other queries' lines leave it out and readers take it as 0. Sinks given to
ProgressLogger (spark_jobs/lib/stream_metrics.py: the Prometheus endpoint and the metrics table's buffer) receive
batch_record(): the batch line's fields plus the query's ids and the batch's trigger time.
"""
from __future__ import annotations

import json
import logging
import threading
from typing import Callable, Iterable, Sequence

from pyspark.sql.streaming import StreamingQueryListener

LOGGER_NAME = "stocklake.stream"

log = logging.getLogger(LOGGER_NAME)


def read_progress(log_text: str) -> list[dict]:
    """Every JSON event record the job logged (query_started, batch, stopping, ...), in log order.

    Anything else is skipped: Spark's own log lines share the file, and a line cut short by a killed job is
    not a record.
    """
    marker = f" {LOGGER_NAME} "
    records = []
    for line in log_text.splitlines():
        _, found, message = line.partition(marker)
        if not found:
            continue
        try:
            record = json.loads(message)
        except ValueError:
            continue
        if isinstance(record, dict) and "event" in record:
            records.append(record)
    return records


def parse_observation_name(query: str) -> str:
    """The name of the observation a query makes of its parsed rows (rows_parsed, rows_quarantined)."""
    return f"{query}_parse"


def progress_record(progress) -> dict:
    """The fields an operator watches, from a StreamingQueryProgress."""
    state_ops = progress.stateOperators or []
    record = {
        "event": "batch",
        "query": progress.name,
        "batch_id": progress.batchId,
        "rows_in": progress.numInputRows,
        "input_rows_per_s": round(progress.inputRowsPerSecond or 0.0, 1),
        "processed_rows_per_s": round(progress.processedRowsPerSecond or 0.0, 1),
        "batch_duration_ms": progress.batchDuration,
        "watermark": (progress.eventTime or {}).get("watermark"),
        "rows_dropped_by_watermark": sum(op.numRowsDroppedByWatermark for op in state_ops),
        "state_rows": sum(op.numRowsTotal for op in state_ops),
    }
    # Progress objects of queries without observations (and older fakes) may lack observedMetrics altogether.
    observed = (getattr(progress, "observedMetrics", None) or {}).get(parse_observation_name(progress.name))
    if observed is not None:
        record["rows_quarantined"] = int(observed["rows_quarantined"] or 0)
    record.update(time_breakdown(progress))
    return record


def time_breakdown(progress) -> dict:
    """Where the batch's time went, when Spark reports it: `duration_ms` (Spark's durationMs: latestOffset,
    queryPlanning, addBatch, walCommit, commitOffsets, triggerExecution, ...) and `state_commit_ms` (the state
    stores' commit, part of addBatch). Progress objects without them (fakes) add nothing."""
    breakdown = {}
    durations = getattr(progress, "durationMs", None)
    if durations:
        breakdown["duration_ms"] = {name: int(ms) for name, ms in sorted(durations.items())}
    commits = [getattr(op, "commitTimeMs", None) for op in progress.stateOperators or []]
    if commits and all(ms is not None for ms in commits):
        breakdown["state_commit_ms"] = int(sum(commits))
    return breakdown


def batch_record(progress, record: dict | None = None) -> dict:
    """progress_record (or the one already built from this progress) plus what the metrics sinks need: the
    query's ids and the batch's trigger time (ISO 8601, UTC, as Spark reports it)."""
    return {**(record if record is not None else progress_record(progress)), "query_id": str(progress.id),
            "run_id": str(progress.runId), "batch_timestamp": progress.timestamp}


class ProgressLogger(StreamingQueryListener):
    """Logs each batch and keeps running totals per query (rows in, rows dropped as late); hands each batch's
    batch_record() to every sink (callables that must be quick and thread-safe: they run on Spark's listener
    thread, so they never start a Spark job)."""

    def __init__(self, sinks: Sequence[Callable[[dict], None]] = ()) -> None:
        super().__init__()
        self._sinks = tuple(sinks)
        self._lock = threading.Lock()
        self._terminated = threading.Condition(self._lock)
        self._terminated_ids: set[str] = set()
        self.totals: dict[str, dict[str, int]] = {}

    def onQueryStarted(self, event) -> None:
        log.info(json.dumps({"event": "query_started", "query": event.name, "id": str(event.id),
                             "run_id": str(event.runId)}))

    def onQueryProgress(self, event) -> None:
        record = progress_record(event.progress)
        if self._sinks:
            full = batch_record(event.progress, record)
            for sink in self._sinks:
                try:
                    sink(full)
                except Exception as exc:  # a metrics sink must never cost the batch its log line
                    log.error(json.dumps({"event": "metrics_sink_failed", "query": record["query"],
                                          "batch_id": record["batch_id"],
                                          "error": (str(exc) or type(exc).__name__).splitlines()[0]}))
        with self._lock:
            totals = self.totals.setdefault(record["query"], {"rows_in": 0, "rows_dropped_by_watermark": 0,
                                                              "batches": 0})
            totals["rows_in"] += record["rows_in"]
            totals["rows_dropped_by_watermark"] += record["rows_dropped_by_watermark"]
            totals["batches"] += 1
        log.info(json.dumps(record))

    def onQueryIdle(self, event) -> None:
        pass

    def onQueryTerminated(self, event) -> None:
        log.info(json.dumps({"event": "query_terminated", "id": str(event.id),
                             "error": event.exception.splitlines()[0] if event.exception else None}))
        with self._terminated:
            self._terminated_ids.add(str(event.id))
            self._terminated.notify_all()

    def wait_terminated(self, query_ids: Iterable[str], timeout: float) -> bool:
        """Wait until the listener has seen every one of these queries terminate. Spark delivers a query's
        events in order, so by then its last batch's progress has reached the sinks too."""
        wanted = set(query_ids)
        with self._terminated:
            return self._terminated.wait_for(lambda: wanted <= self._terminated_ids, timeout)
