"""VACUUM the lake's Delta tables: delete files no table version younger than the retention still needs.

    spark-submit spark_jobs/vacuum.py [--entity trades|quotes ...] [--retention-hours N] [--json PATH]

Bronze, Silver and quarantine of each entity (all entities by default). The retention defaults to
maintenance.vacuum_retention_hours (168 h = 7 days). Less than 168 h is refused (exit 2): a reader, a running
query or a stream's uncommitted write may still need younger files, and Delta's safety check
(spark.databricks.delta.retentionDurationCheck.enabled) is never switched off here. VACUUM only deletes files the
current version does not reference (removed by OPTIMIZE, DELETE or a failed write) once they are older than the
retention, so no row of the current version is ever lost.

Counting: VACUUM's own result is only the table path, so the job turns on Delta's vacuum logging for its run
(spark.databricks.delta.vacuum.logging.enabled): each VACUUM then commits a `VACUUM START` entry (files and bytes
to delete) and a `VACUUM END` entry (files deleted) to the table's history, which the report reads back. The
listing parallelism is set to the cluster's default parallelism: Spark's default (10,000 tasks) is sized for huge
clusters and makes every VACUUM of a small table take minutes.

Exit 0 when every table was vacuumed or skipped (a missing table is skipped with a line), 1 when one failed,
2 on bad configuration or arguments.
"""
from __future__ import annotations

import argparse
import sys

from conf.settings import Settings
from spark_jobs.lib.delta import is_delta_table, session_conf
from spark_jobs.lib.jobs import add_common_arguments, job_main, log_event
from conf.errors import first_line
from spark_jobs.lib.transforms import ENTITIES

LAYERS = ("bronze", "silver", "quarantine")
# Delta's default minimum (delta.deletedFileRetentionDuration = 7 days) that its safety check enforces.
MIN_RETENTION_HOURS = 168


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="spark_jobs/vacuum.py", description=__doc__.splitlines()[0])
    add_common_arguments(parser, ENTITIES)
    parser.add_argument("--retention-hours", type=int, default=None,
                        help="keep files younger than this (default: maintenance.vacuum_retention_hours; "
                             f"at least {MIN_RETENTION_HOURS})")
    args = parser.parse_args(argv)
    args.entities = list(dict.fromkeys(args.entity or ENTITIES))
    return args


def retention_error(hours: int) -> str | None:
    """Why a retention is refused, or None when it is allowed."""
    if hours < MIN_RETENTION_HOURS:
        return (f"--retention-hours {hours} is below {MIN_RETENTION_HOURS} hours (7 days), Delta's retention "
                f"safety minimum: younger files may still be read; this job never disables "
                f"spark.databricks.delta.retentionDurationCheck.enabled")
    return None


def latest_version(table) -> int:
    return table.history(1).select("version").first()[0]


def vacuum_entries(table, since_version: int) -> dict[str, dict]:
    """The VACUUM START and END history entries committed after since_version (the first of each)."""
    newest = latest_version(table)
    rows = (table.history(max(1, newest - since_version))
            .where(f"version > {since_version} AND operation IN ('VACUUM START', 'VACUUM END')")
            .orderBy("version").select("version", "operation", "operationMetrics").collect())
    entries: dict[str, dict] = {}
    for row in rows:
        entries.setdefault(row["operation"], {"version": row["version"], **(row["operationMetrics"] or {})})
    return entries


def vacuum_table(spark, settings: Settings, entity: str, layer: str, hours: int) -> dict:
    from delta.tables import DeltaTable

    uri = settings.lake_uri(ENTITIES[entity].table(layer))
    result = {"entity": entity, "layer": layer, "table": uri, "retention_hours": hours}
    if not is_delta_table(spark, uri):
        log_event("vacuum_skipped", table=uri, reason="no Delta table")
        return {**result, "status": "missing"}
    try:
        table = DeltaTable.forPath(spark, uri)
        version_before = latest_version(table)
        log_event("vacuum_table", table=uri, version=version_before, retention_hours=hours)
        table.vacuum(float(hours))
        entries = vacuum_entries(table, version_before)
    except Exception as exc:
        log_event("vacuum_failed", table=uri, error=first_line(exc))
        return {**result, "status": "failed", "error": first_line(exc)}
    start, end = entries.get("VACUUM START", {}), entries.get("VACUUM END", {})
    if not end:
        error = "VACUUM finished but its VACUUM END history entry is missing"
        log_event("vacuum_failed", table=uri, error=error)
        return {**result, "status": "failed", "error": error}
    result.update({
        "status": "vacuumed",
        "version_before": version_before,
        "files_deleted": int(end.get("numDeletedFiles", 0)),
        "bytes_deleted": int(start.get("sizeOfDataToDelete", 0)),
        "directories_vacuumed": int(end.get("numVacuumedDirectories", 0)),
    })
    log_event("vacuum_done", table=uri, files_deleted=result["files_deleted"],
              bytes_deleted=result["bytes_deleted"])
    return result


def run(spark, settings: Settings, args: argparse.Namespace) -> dict:
    hours = args.retention_hours
    confs = {
        "spark.databricks.delta.vacuum.logging.enabled": "true",
        # Delta 4.4 ignores a VACUUM's retention (other than 0) by default and uses the table's property instead:
        # maintenance.vacuum_retention_hours must be the retention applied.
        "spark.databricks.delta.vacuum.retentionWindowIgnore.enabled": "false",
        "spark.sql.sources.parallelPartitionDiscovery.parallelism":
            str(max(1, spark.sparkContext.defaultParallelism)),
    }
    with session_conf(spark, confs):
        tables = [vacuum_table(spark, settings, entity, layer, hours)
                  for entity in args.entities for layer in LAYERS]
    return {"job": "vacuum", "retention_hours": hours, "tables": tables,
            "ok": all(t["status"] != "failed" for t in tables)}


def summary_line(table: dict, settings: Settings | None = None) -> str:
    name = f"vacuum {table['layer']}/{table['entity']}:"
    if table["status"] == "missing":
        return f"{name} skipped, no Delta table at {table['table']}"
    if table["status"] == "failed":
        return f"{name} FAILED: {table['error']}"
    return (f"{name} {table['files_deleted']:,} files deleted ({table['bytes_deleted']:,} bytes), "
            f"retention {table['retention_hours']} h")


def check_retention(settings: Settings, args: argparse.Namespace) -> str | None:
    if args.retention_hours is None:
        args.retention_hours = settings.maintenance.vacuum_retention_hours
    return retention_error(args.retention_hours)


def main(argv: list[str], spark=None) -> int:
    """Entry point; pass `spark` to run in an existing session (tests), which is then left running."""
    return job_main("vacuum", parse_args(argv), spark, run, summary_line, check_retention)

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
