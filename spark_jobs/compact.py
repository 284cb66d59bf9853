"""Compact closed hour partitions of Bronze and Silver: Delta OPTIMIZE with Z-ORDER, one partition at a time.

    spark-submit spark_jobs/compact.py [--entity trades|quotes ...] [--layer bronze|silver ...]
                                       [--now ISO8601-UTC] [--json PATH]

The stream appends a few small files to the open hour every micro-batch. Once an hour is closed (it ended at least
maintenance.closed_hour_grace_minutes ago, so the stream no longer writes into it), its files are rewritten into
as few as possible, clustered by symbol: Z-ORDER BY `symbol` in Silver, `key` (the symbol, the Kafka key) in
Bronze. Candidates are the closed hours among the maintenance.compaction_lookback_hours whole hours before now that
hold at least maintenance.compaction_min_files data files, so a compacted hour is not rewritten again. The open
hour is never touched: its files stay exactly as they are.

OPTIMIZE commits with dataChange=false and only conflicts with a writer that touched the same files; a Delta
write conflict on a partition is reported and that partition retried once. For each partition the report gives
files, bytes and rows before and after, from the table's current snapshot (spark_jobs/lib/hours.py says how),
plus what OPTIMIZE itself says it removed and added. A missing table is skipped with a line, not an error.

`--now` (default: the real UTC now) is for tests and backfills. Exit 0 when every candidate was compacted (or
there was nothing to do), 1 when one failed, 2 on bad configuration or arguments.
"""
from __future__ import annotations

import argparse
import sys

from conf.settings import Settings
from spark_jobs.lib.delta import is_delta_table, read_partition_stats, retry_once_on_conflict
from spark_jobs.lib.hours import PartitionStats, compaction_candidates, parse_utc, partition_predicate, utc_now
from spark_jobs.lib.jobs import add_common_arguments, job_main, log_event, stats_dict
from conf.errors import first_line
from spark_jobs.lib.transforms import ENTITIES

LAYERS = ("bronze", "silver")
# Z-order column per layer: the symbol, which most queries filter on.
ZORDER_COLUMN = {"bronze": "key", "silver": "symbol"}


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="spark_jobs/compact.py", description=__doc__.splitlines()[0])
    add_common_arguments(parser, ENTITIES)
    parser.add_argument("--layer", choices=LAYERS, action="append",
                        help="a layer to compact; repeat for several (default: bronze and silver)")
    parser.add_argument("--now", type=parse_utc, default=None,
                        help="the time to decide which hours are closed, ISO 8601 (default: now, UTC)")
    args = parser.parse_args(argv)
    args.entities = list(dict.fromkeys(args.entity or ENTITIES))
    args.layers = list(dict.fromkeys(args.layer or LAYERS))
    return args


def optimize_metrics(rows) -> dict:
    """What OPTIMIZE reports it removed and added (its result has one row with a `metrics` struct)."""
    metrics = rows[0]["metrics"] if rows else None
    if metrics is None:
        return {}
    return {"files_removed": metrics["numFilesRemoved"], "files_added": metrics["numFilesAdded"],
            "bytes_removed": metrics["filesRemoved"]["totalSize"], "bytes_added": metrics["filesAdded"]["totalSize"]}


def compact_partition(spark, uri: str, layer: str, candidate: PartitionStats) -> dict:
    from delta.tables import DeltaTable

    predicate = partition_predicate(candidate)
    conflicts: list[str] = []

    def optimize() -> list:
        return (DeltaTable.forPath(spark, uri).optimize().where(predicate)
                .executeZOrderBy(ZORDER_COLUMN[layer]).collect())

    def on_conflict(exc: BaseException) -> None:
        conflicts.append(first_line(exc))
        log_event("compact_conflict", table=uri, date=candidate.date, hour=candidate.hour, error=conflicts[-1])

    outcome = {"date": candidate.date, "hour": candidate.hour, "before": stats_dict(candidate)}
    try:
        rows, attempts = retry_once_on_conflict(optimize, on_conflict)
    except Exception as exc:  # one partition failing must not stop the others
        error = first_line(exc)
        log_event("compact_failed", table=uri, date=candidate.date, hour=candidate.hour, error=error)
        return {**outcome, "status": "failed", "attempts": len(conflicts) + 1, "conflicts": conflicts,
                "error": error}
    return {**outcome, "status": "compacted", "attempts": attempts, "conflicts": conflicts,
            "optimize": optimize_metrics(rows)}


def compact_table(spark, settings: Settings, entity: str, layer: str, now) -> dict:
    maintenance = settings.maintenance
    uri = settings.lake_uri(ENTITIES[entity].table(layer))
    result = {"entity": entity, "layer": layer, "table": uri, "zorder_by": ZORDER_COLUMN[layer],
              "partitions": []}
    if not is_delta_table(spark, uri):
        log_event("compact_skipped", table=uri, reason="no Delta table")
        return {**result, "status": "missing"}
    try:
        version_before, stats = read_partition_stats(settings, uri)
    except Exception as exc:
        log_event("compact_failed", table=uri, error=first_line(exc))
        return {**result, "status": "failed", "error": first_line(exc)}
    candidates = compaction_candidates(stats, now, maintenance.closed_hour_grace_minutes,
                                       maintenance.compaction_lookback_hours, maintenance.compaction_min_files)
    result["version_before"] = version_before
    if not candidates:
        log_event("compact_nothing_to_do", table=uri, version=version_before)
        return {**result, "status": "nothing_to_do", "version_after": version_before}

    for candidate in candidates:
        log_event("compact_partition", table=uri, date=candidate.date, hour=candidate.hour, files=candidate.files,
                  bytes=candidate.bytes, zorder_by=ZORDER_COLUMN[layer])
        result["partitions"].append(compact_partition(spark, uri, layer, candidate))

    # One log read for every partition's "after": OPTIMIZE's own metrics say what it did, this says what the
    # table now holds (both must agree; the tests check that they do).
    try:
        version_after, stats_after = read_partition_stats(settings, uri)
    except Exception as exc:
        log_event("compact_failed", table=uri, error=first_line(exc))
        return {**result, "status": "failed", "error": f"reading the table after OPTIMIZE: {first_line(exc)}"}
    result["version_after"] = version_after
    for outcome in result["partitions"]:
        outcome["after"] = stats_dict(stats_after.get((outcome["date"], outcome["hour"])))
        log_event("compact_partition_done", table=uri, date=outcome["date"], hour=outcome["hour"],
                  status=outcome["status"], before=outcome["before"], after=outcome["after"])
    for key in ("files", "bytes"):
        result[f"{key}_before"] = sum(p["before"][key] for p in result["partitions"])
        result[f"{key}_after"] = sum(p["after"][key] for p in result["partitions"])
    failed = [p for p in result["partitions"] if p["status"] == "failed"]
    return {**result, "status": "failed" if failed else "compacted"}


def run(spark, settings: Settings, args: argparse.Namespace) -> dict:
    now = args.now or utc_now()
    tables = [compact_table(spark, settings, entity, layer, now)
              for entity in args.entities for layer in args.layers]
    return {"job": "compact", "now": now.isoformat(),
            "settings": {key: settings.maintenance[key] for key in
                         ("closed_hour_grace_minutes", "compaction_lookback_hours", "compaction_min_files")},
            "tables": tables, "ok": all(t["status"] != "failed" for t in tables)}


def summary_line(table: dict, settings: Settings) -> str:
    name = f"compact {table['layer']}/{table['entity']}:"
    if table["status"] == "missing":
        return f"{name} skipped, no Delta table at {table['table']}"
    if table["status"] == "nothing_to_do":
        return (f"{name} nothing to do (no closed hour among the last "
                f"{settings.maintenance.compaction_lookback_hours} h with >= "
                f"{settings.maintenance.compaction_min_files} files)")
    if "files_before" not in table:
        return f"{name} FAILED: {table.get('error')}"
    done = [p for p in table["partitions"] if p["status"] == "compacted"]
    failed = [p for p in table["partitions"] if p["status"] == "failed"]
    line = (f"{name} {len(done)} closed hour(s) compacted, files {table['files_before']:,} -> "
            f"{table['files_after']:,}, bytes {table['bytes_before']:,} -> {table['bytes_after']:,}")
    retried = sum(1 for p in table["partitions"] if p["conflicts"])
    if retried:
        line += f", {retried} retried after a write conflict"
    if failed:
        line += (f"; FAILED {len(failed)}: " + ", ".join(f"{p['date']}/{p['hour']}" for p in failed)
                 + f" ({failed[0]['error']})")
    return line


def main(argv: list[str], spark=None) -> int:
    """Entry point; pass `spark` to run in an existing session (tests), which is then left running."""
    return job_main("compact", parse_args(argv), spark, run, summary_line)

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
