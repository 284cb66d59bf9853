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
from typing import Any, Iterable, Iterator
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


def commit_latencies_ms(s3_client: Any, bucket: str, table_prefix: str, since_ms: int | None = None) -> list[int]:
    """commit time - Kafka time in ms for every row the table's commits added, oldest commit first."""
    table_prefix = table_prefix.strip("/")
    latencies: list[int] = []
    for key in commit_keys(s3_client, bucket, table_prefix):
        committed_ms, paths = commit_actions(s3_client.get_object(Bucket=bucket, Key=key)["Body"].read().decode())
        for path in paths:
            if "://" in path:
                raise ValueError(f"{key} adds a file outside the table ({path}): not supported")
            body = s3_client.get_object(Bucket=bucket, Key=f"{table_prefix}/{path}")["Body"].read()
            column = pq.read_table(io.BytesIO(body), columns=["kafka_timestamp"]).column("kafka_timestamp")
            latencies += [committed_ms - sent_ms for sent_ms in timestamps_ms(column)
                          if since_ms is None or sent_ms >= since_ms]
    return latencies


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
