"""Exactly-once Delta appends of micro-batches that do not ask Delta to rebuild the table's state every batch.

Delta makes an append idempotent with the writer options txnAppId/txnVersion: before committing it looks up the
application's last version among the snapshot's transactions, which Delta computes by reconstructing the table's
whole state (three Spark jobs reading the last checkpoint and every commit after it). Done on every micro-batch,
that was the largest fixed cost of a Bronze batch (README, Performance), and it grows with the table.

A replayed batch can only be the first batch of a run: within a run batch ids only grow, and a batch that fails
stops its query. So BatchAppends checks once per run:
- every append carries a marker in its commit (commitInfo.userMetadata: {"stocklake_app": APP, "batch": N});
- the first batch of a run is skipped when a marker of the application names it or a later batch (a replay whose
  commit landed before the job died); otherwise it is written with txnAppId/txnVersion as well, so Delta's own
  check covers batches committed before markers existed;
- every later batch of the run is a plain append with its marker.

The markers are read from the table's history (the commit files Delta keeps for delta.logRetentionDuration, 30 days
by default), newest first, in growing windows until one of the application's is found. A batch can be replayed only
while Kafka still holds its records, which the stream checks at start (spark_jobs/lib/data_loss.py) against a retention
far shorter than the log's.
"""
from __future__ import annotations

import json
import logging

from delta.tables import DeltaTable
from pyspark.sql import DataFrame, SparkSession

from spark_jobs.lib.listener import LOGGER_NAME

log = logging.getLogger(LOGGER_NAME)

MARKER_APP = "stocklake_app"
MARKER_BATCH = "batch"
# How many of the newest commits to read for the application's marker, widened until found (None = all retained).
HISTORY_WINDOWS = (100, 10_000, None)


def marker(app_id: str, batch_id: int) -> str:
    return json.dumps({MARKER_APP: app_id, MARKER_BATCH: batch_id}, separators=(",", ":"))


def parse_marker(user_metadata: str | None) -> tuple[str, int] | None:
    """(application, batch) of a commit's userMetadata marker; None for free text or no marker."""
    if not user_metadata:
        return None
    try:
        found = json.loads(user_metadata)
    except ValueError:
        return None
    if not isinstance(found, dict) or not isinstance(found.get(MARKER_APP), str) \
            or not isinstance(found.get(MARKER_BATCH), int):
        return None
    return found[MARKER_APP], found[MARKER_BATCH]


def marked_batch(user_metadata: str | None, app_id: str) -> int | None:
    """The batch a commit's userMetadata marks for `app_id` (None for another application's, or free text)."""
    parsed = parse_marker(user_metadata)
    return parsed[1] if parsed and parsed[0] == app_id else None


def last_marked_batch(spark: SparkSession, path: str, app_id: str) -> int | None:
    """The newest batch the application's markers name in the table's retained history (None: no marker, or no
    table yet)."""
    if not DeltaTable.isDeltaTable(spark, path):
        return None
    table = DeltaTable.forPath(spark, path)
    for window in HISTORY_WINDOWS:
        history = table.history(window) if window else table.history()
        rows = history.select("userMetadata").collect()
        batches = [b for b in (marked_batch(row.userMetadata, app_id) for row in rows) if b is not None]
        if batches:
            return max(batches)
        if window is None or len(rows) < window:
            return None
    return None


class BatchAppends:
    """Exactly-once appends of one application's micro-batches to one Delta table; one instance per query run."""

    def __init__(self, path: str, app_id: str):
        self.path = path
        self.app_id = app_id
        self._first = True

    def append(self, df: DataFrame, batch_id: int) -> bool:
        """Append the batch; False when it is a replay of a batch already in the table (nothing written)."""
        writer = df.write.format("delta").mode("append").option("userMetadata", marker(self.app_id, batch_id))
        if self._first:
            self._first = False
            last = last_marked_batch(df.sparkSession, self.path, self.app_id)
            if last is not None and batch_id <= last:
                log.info(json.dumps({"event": "replayed_batch_skipped", "table": self.path, "app": self.app_id,
                                     "batch_id": batch_id, "last_committed": last}))
                # Still run the batch, writing nothing: a stateful query (Silver's dedup) must commit the batch's
                # state version, or Spark fails the batch (STATE_STORE_COMMIT_VALIDATION_FAILED).
                df.write.format("noop").mode("overwrite").save()
                return False
            # Delta's own check, once: batches committed with txnAppId before the markers existed.
            writer = writer.option("txnAppId", self.app_id).option("txnVersion", batch_id)
        writer.save(self.path)
        return True
