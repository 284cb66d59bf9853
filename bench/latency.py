"""End-to-end latency to Silver, read from the Delta table's own transaction log (no Spark).

Each JSON commit in <table>/_delta_log/ carries commitInfo.timestamp (epoch ms): the moment the commit was
written, so when its rows became readable. Every row of the parquet files the commit adds carries
kafka_timestamp: the producer's send time (librdkafka's CreateTime, stamped at produce()). A row's latency is
commit time - Kafka time. Rows sent before `since_ms` are skipped, so a warm-up can be left out.
The writer stamps commitInfo.timestamp just before it writes the log file, so the figure is short by that one
write (tens of ms on MinIO). DeltaTable.history() is no substitute: without in-commit timestamps it reports the
log file's modification time, which S3A gives only to the whole second.
"""
from __future__ import annotations

import io
import json
import math
import re
import threading
import time
from typing import Any, Callable, Iterable, Iterator
from urllib.parse import unquote

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

COMMIT_FILE = re.compile(r"^\d{20}\.json$")
# Timestamp units as (multiply, floor-divide) to get epoch ms in integers (ns values exceed a float's precision).
TO_MS = {"s": (1000, 1), "ms": (1, 1), "us": (1, 1000), "ns": (1, 1_000_000)}


def commit_keys(s3_client: Any, bucket: str, table_prefix: str) -> list[str]:
    """The keys of the table's JSON commit files, oldest first (checkpoints, .crc and the rest left out)."""
    log_prefix = f"{table_prefix.strip('/')}/_delta_log/"
    keys = []
    for page in s3_client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=log_prefix):
        keys += [item["Key"] for item in page.get("Contents", [])
                 if COMMIT_FILE.match(item["Key"].removeprefix(log_prefix))]
    return sorted(keys)


def read_commit(text: str) -> tuple[int | None, list[dict]]:
    """A commit file's commitInfo.timestamp (epoch ms; None when absent) and the add actions it makes as new data
    (dataChange true; compaction's rearrangements left out)."""
    timestamp, adds = None, []
    for line in text.splitlines():
        if not line.strip():
            continue
        action = json.loads(line)
        if "commitInfo" in action:
            timestamp = action["commitInfo"]["timestamp"]
        add = action.get("add")
        if add and add.get("dataChange") is True:
            adds.append(add)
    return timestamp, adds


def commit_actions(text: str) -> tuple[int, list[str]]:
    """A commit's timestamp (epoch ms) and the table-relative paths of the files it adds as new data."""
    timestamp, adds = read_commit(text)
    if timestamp is None:
        raise ValueError("Delta commit without commitInfo.timestamp")
    return int(timestamp), [unquote(add["path"]) for add in adds]


def timestamps_ms(column: pa.ChunkedArray) -> Iterator[int]:
    """The non-null values of a timestamp column as epoch milliseconds (Kafka timestamps are whole ms)."""
    if not pa.types.is_timestamp(column.type):
        raise ValueError(f"kafka_timestamp is {column.type}, expected a timestamp")
    multiply, divide = TO_MS[column.type.unit]
    for value in pc.cast(column.drop_null(), pa.int64()).to_pylist():
        yield value * multiply // divide


def commit_latencies_ms(s3_client: Any, bucket: str, table_prefix: str, since_ms: int | None = None,
                        visible_ms: Callable[[int], int | None] | None = None) -> list[int]:
    """commit time - Kafka time in ms for every row the table's commits added, oldest commit first. With
    `visible_ms` (table version -> when a reader first saw it), that time instead of the commit's."""
    table_prefix = table_prefix.strip("/")
    latencies: list[int] = []
    for key in commit_keys(s3_client, bucket, table_prefix):
        committed_ms, paths = commit_actions(s3_client.get_object(Bucket=bucket, Key=key)["Body"].read().decode())
        if visible_ms is not None and paths:
            version = int(key.rsplit("/", 1)[-1].removesuffix(".json"))
            seen = visible_ms(version)
            if seen is None:
                raise ValueError(f"version {version} of {table_prefix} was never seen by the reader")
            committed_ms = seen
        for path in paths:
            if "://" in path:
                raise ValueError(f"{key} adds a file outside the table ({path}): not supported")
            body = s3_client.get_object(Bucket=bucket, Key=f"{table_prefix}/{path}")["Body"].read()
            column = pq.read_table(io.BytesIO(body), columns=["kafka_timestamp"]).column("kafka_timestamp")
            latencies += [committed_ms - sent_ms for sent_ms in timestamps_ms(column)
                          if since_ms is None or sent_ms >= since_ms]
    return latencies


class LiveTailPoller(threading.Thread):
    """Reads Silver as the dashboard does (dashboard.live_tail.LiveTail, from `cutoff` on) every `interval`
    seconds, its refresh, and records when each Silver version became visible there: a trade's latency to the
    dashboard is that moment - its Kafka time."""

    def __init__(self, tail: Any, cutoff: Any, interval: float):
        super().__init__(name="live-tail-poller", daemon=True)
        self.tail, self.cutoff, self.interval = tail, cutoff, interval
        self.seen: list[tuple[int, int]] = []   # (version read, epoch ms when the read returned)
        self.errors: list[str] = []
        self._stopping = threading.Event()

    def poll(self) -> None:
        self.tail.minutes(self.cutoff)
        self.seen.append((self.tail.version, int(time.time() * 1000)))

    def run(self) -> None:
        while not self._stopping.is_set():
            try:
                self.poll()
            except Exception as exc:  # noqa: BLE001 - reported by stop(), the bench fails on it
                self.errors.append(f"{type(exc).__name__}: {exc}")
            self._stopping.wait(self.interval)

    def stop(self) -> None:
        """Stop polling, after one last read (everything committed so far becomes visible); raise on errors."""
        self._stopping.set()
        self.join()
        self.poll()
        if self.errors:
            raise RuntimeError(f"the live tail failed {len(self.errors)} times; first: {self.errors[0]}")

    def visible_ms(self, version: int) -> int | None:
        return next((at for read, at in self.seen if read >= version), None)


def percentiles(values: Iterable[float], ps: Iterable[float] = (50, 95, 99)) -> dict[str, float]:
    """Nearest-rank percentiles: {"p50": ..., "p95": ..., "p99": ...}."""
    ordered = sorted(values)
    if not ordered:
        raise ValueError("percentiles of an empty list")
    result = {}
    for p in ps:
        if not 0 < p <= 100:
            raise ValueError(f"percentile must be in (0, 100], got {p}")
        rank = max(1, math.ceil(p / 100 * len(ordered)))
        result[f"p{p:g}"] = ordered[rank - 1]
    return result
