"""Structured progress: one JSON line per micro-batch, so late rows and slow batches never pass unseen."""
from __future__ import annotations

import json
import logging
import threading

from pyspark.sql.streaming import StreamingQueryListener

log = logging.getLogger("stocklake.stream")


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
