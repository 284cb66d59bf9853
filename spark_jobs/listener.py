"""Structured progress: one JSON line per micro-batch, so late rows and slow batches never pass unseen.

The job logs through logger `stocklake.stream` with LOG_FORMAT, one JSON object per line:

    2026-01-05 14:30:00,123 INFO stocklake.stream {"event": "batch", "query": "silver_trades", "rows_in": 812, ...}

read_progress() reads them back from the job's log; it is the one parser of these lines.
"""
from __future__ import annotations

import json
import logging
import threading

from pyspark.sql.streaming import StreamingQueryListener

LOGGER_NAME = "stocklake.stream"
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"

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


def progress_record(progress) -> dict:
    """The fields an operator watches, from a StreamingQueryProgress."""
    state_ops = progress.stateOperators or []
    return {
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


class ProgressLogger(StreamingQueryListener):
    """Logs each batch and keeps running totals per query (rows in, rows dropped as late)."""

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self.totals: dict[str, dict[str, int]] = {}

    def onQueryStarted(self, event) -> None:
        log.info(json.dumps({"event": "query_started", "query": event.name, "id": str(event.id),
                             "run_id": str(event.runId)}))

    def onQueryProgress(self, event) -> None:
        record = progress_record(event.progress)
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
