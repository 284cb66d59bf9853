"""Where a micro-batch's time goes, per query, from the stream's own log and the tables' Delta logs (no Spark).

From the job's JSON lines (spark_jobs/lib/listener.py): Spark's durationMs per batch (latestOffset, queryPlanning,
addBatch, walCommit, commitOffsets, triggerExecution = the whole batch), the state stores' commit (inside addBatch)
and, for a Bronze query, its two Delta appends (inside addBatch; spark_jobs/stream.py's bronze_batch_written line).
From a table's Delta log: how long each commit took after its last data file was written (commitInfo.timestamp -
the newest add.modificationTime): the log listing, conflict check and commit-file write of that batch.
"""
from __future__ import annotations

import statistics
from typing import Any

from bench.latency import commit_keys, read_commit
from spark_jobs.lib.listener import read_progress

# Spark's durationMs keys in the order a batch runs them; triggerExecution is the batch's whole time.
PHASES = ("latestOffset", "queryPlanning", "addBatch", "walCommit", "commitOffsets", "triggerExecution")
# Parts of addBatch measured inside it.
INNER = ("state_commit_ms", "bronze_write_ms", "quarantine_write_ms")


def mean(values: list[float]) -> float | None:
    return round(statistics.fmean(values)) if values else None


def batch_breakdown(log_text: str) -> dict[str, dict[str, Any]]:
    """{query: {"batches", "empty_batches", "rows_per_batch", "<phase>_ms"..., "<inner>"...}}: means over the
    query's batches that read rows (a no-data batch costs only its empty trigger; counted apart)."""
    records = read_progress(log_text)
    writes = {(r["query"], r["batch_id"]): r for r in records if r.get("event") == "bronze_batch_written"}
    result: dict[str, dict[str, Any]] = {}
    by_query: dict[str, list[dict]] = {}
    for record in records:
        if record.get("event") == "batch" and "duration_ms" in record:
            by_query.setdefault(record["query"], []).append(record)
    for query, batches in sorted(by_query.items()):
        data = [b for b in batches if b["rows_in"] > 0]
        row: dict[str, Any] = {"batches": len(data), "empty_batches": len(batches) - len(data),
                               "rows_per_batch": mean([b["rows_in"] for b in data])}
        for phase in PHASES:
            row[f"{phase}_ms"] = mean([b["duration_ms"][phase] for b in data if phase in b["duration_ms"]])
        row["state_commit_ms"] = mean([b["state_commit_ms"] for b in data if "state_commit_ms" in b])
        for key in ("bronze_write_ms", "quarantine_write_ms"):
            row[key] = mean([writes[(query, b["batch_id"])][key] for b in data if (query, b["batch_id"]) in writes])
        result[query] = row
    return result


def commit_after_files_ms(text: str) -> int | None:
    """How long a commit came after its newest data file (None for a commit that adds no file)."""
    committed, adds = read_commit(text)
    if committed is None or not adds:
        return None
    return int(committed) - max(add["modificationTime"] for add in adds)


def delta_commit_ms(s3_client: Any, bucket: str, table_prefix: str) -> dict[str, Any]:
    """Median and max of commit_after_files_ms over the table's commits that added files."""
    values = []
    for key in commit_keys(s3_client, bucket, table_prefix):
        value = commit_after_files_ms(s3_client.get_object(Bucket=bucket, Key=key)["Body"].read().decode())
        if value is not None:
            values.append(value)
    if not values:
        return {"commits": 0, "median_ms": None, "max_ms": None}
    return {"commits": len(values), "median_ms": round(statistics.median(values)), "max_ms": max(values)}


def markdown_rows(phase: str, breakdown: dict[str, dict[str, Any]]) -> list[str]:
    """Table rows (see HEADER) of one bench phase's breakdown."""
    def cell(value: Any) -> str:
        return "" if value is None else f"{value:,}"

    return [f"| {phase} | {query} | {row['batches']:,} (+{row['empty_batches']:,} empty) | "
            f"{cell(row['rows_per_batch'])} | " + " | ".join(cell(row[f'{p}_ms']) for p in PHASES) + " | "
            + " | ".join(cell(row[key]) for key in INNER) + " |"
            for query, row in breakdown.items()]


HEADER = ["| Phase | Query | Data batches | Rows/batch | latestOffset | queryPlanning | addBatch | walCommit "
          "| commitOffsets | Whole batch | State commit | Bronze append | Quarantine append |",
          "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
