"""Delete Bronze (and quarantine) hour partitions past their retention.

    spark-submit spark_jobs/retention.py [--entity trades|quotes ...] [--days N] [--now ISO8601-UTC]
                                         [--json PATH]

Deletes the partitions of bronze/<entity> and quarantine/<entity> whose `date` is before now's UTC date minus N
days (default maintenance.bronze_retention_days, 730). Quarantine gets the same retention as Bronze: it holds
raw records too (those that broke the contract), partitioned the same way by Kafka time, and keeping them longer
than Bronze itself would serve nothing. Silver is never touched: it is the curated history Gold is built from.

The DELETE's predicate is on the partition column only (`date < 'YYYY-MM-DD'`, the date parsed first), so Delta
removes whole files in one metadata-only commit and rewrites nothing; the files themselves disappear at the next
VACUUM past its retention (spark_jobs/vacuum.py). The table's location is spelled into the statement (a Delta
path cannot be a parameter), so it is checked as a plain s3a:// lake path first (conf.identifiers.lake_uri). N
must be greater than maintenance.reconcile_lookback_days, or the reconcile job would lose the Bronze rows it
reads. The report lists each partition deleted (files, bytes and rows from the table's snapshot before the
DELETE) and the rows the DELETE says it removed.

`--now` (default: the real UTC now) is for tests and backfills. Exit 0 when every table was handled (a missing
table is skipped with a line), 1 when one failed, 2 on bad configuration or arguments.
"""
from __future__ import annotations

import argparse
import sys
from datetime import date

from conf.identifiers import IdentifierError, lake_uri
from conf.settings import Settings
from spark_jobs.lib.delta import is_delta_table, read_partition_stats, retry_once_on_conflict
from spark_jobs.lib.hours import expired_partitions, parse_utc, retention_cutoff, utc_now
from spark_jobs.lib.jobs import add_common_arguments, job_main, log_event, stats_dict
from conf.errors import first_line
from spark_jobs.lib.transforms import ENTITIES

# Raw layers only; never silver.
LAYERS = ("bronze", "quarantine")


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="spark_jobs/retention.py", description=__doc__.splitlines()[0])
    add_common_arguments(parser, ENTITIES)
    parser.add_argument("--days", type=int, default=None,
                        help="keep this many days before today (UTC) (default: maintenance.bronze_retention_days)")
    parser.add_argument("--now", type=parse_utc, default=None,
                        help="the time the retention counts back from, ISO 8601 (default: now, UTC)")
    args = parser.parse_args(argv)
    args.entities = list(dict.fromkeys(args.entity or ENTITIES))
    return args


def days_error(days: int, reconcile_lookback_days: int) -> str | None:
    """Why a retention in days is refused, or None when it is allowed."""
    if days <= reconcile_lookback_days:
        return (f"--days {days} would delete Bronze partitions the reconcile job still reads "
                f"(maintenance.reconcile_lookback_days = {reconcile_lookback_days}); use more than "
                f"{reconcile_lookback_days}")
    return None


def table_uri(settings: Settings, entity: str, layer: str) -> str:
    """The table's s3a:// location, checked: it is spelled into the DELETE (a Delta path cannot be a parameter)."""
    return lake_uri(settings.lake_uri(ENTITIES[entity].table(layer)), "lake.bucket (STOCKLAKE_LAKE_BUCKET)")


def delete_before(spark, uri: str, cutoff: str) -> list:
    """DELETE the rows dated before `cutoff` (YYYY-MM-DD) from the Delta table at `uri`; the result rows.
    The location is checked again here and the date is rebuilt from a parsed date: nothing unchecked reaches the
    SQL. (Not a bound parameter: Delta 4.4 on Spark 4.2 leaves a named parameter in DELETE unbound.)"""
    table = lake_uri(uri, "table")
    day = date.fromisoformat(cutoff).isoformat()  # ValueError for anything but a date; only digits and dashes
    statement = f"DELETE FROM delta.`{table}` WHERE date < '{day}'"  # noqa: S608 - checked location, parsed date
    return spark.sql(statement).collect()


def apply_retention(spark, settings: Settings, entity: str, layer: str, cutoff: str) -> dict:
    uri = table_uri(settings, entity, layer)
    result = {"entity": entity, "layer": layer, "table": uri, "cutoff_date": cutoff, "partitions_deleted": []}
    if not is_delta_table(spark, uri):
        log_event("retention_skipped", table=uri, reason="no Delta table")
        return {**result, "status": "missing"}
    conflicts: list[str] = []

    def on_conflict(exc: BaseException) -> None:
        conflicts.append(first_line(exc))
        log_event("retention_conflict", table=uri, error=conflicts[-1])

    try:
        version_before, stats = read_partition_stats(settings, uri)
        expired = expired_partitions(stats, cutoff)
        result["version_before"] = version_before
        if not expired:
            log_event("retention_nothing_to_do", table=uri, cutoff_date=cutoff)
            return {**result, "status": "nothing_to_do", "rows_deleted": 0}
        log_event("retention_delete", table=uri, cutoff_date=cutoff, partitions=len(expired))
        # Only the partition column in the predicate: Delta drops whole files without reading or rewriting any.
        rows, attempts = retry_once_on_conflict(lambda: delete_before(spark, uri, cutoff), on_conflict)
    except Exception as exc:
        log_event("retention_failed", table=uri, error=first_line(exc))
        return {**result, "status": "failed", "conflicts": conflicts, "error": first_line(exc)}
    result.update({
        "status": "deleted",
        "partitions_deleted": [{"date": s.date, "hour": s.hour, **stats_dict(s)} for s in expired],
        "files_deleted": sum(s.files for s in expired),
        "bytes_deleted": sum(s.bytes for s in expired),
        "rows_deleted": int(rows[0]["num_affected_rows"]) if rows else 0,
        "attempts": attempts,
        "conflicts": conflicts,
    })
    log_event("retention_done", table=uri, partitions=len(expired), rows_deleted=result["rows_deleted"])
    return result


def run(spark, settings: Settings, args: argparse.Namespace) -> dict:
    now = args.now or utc_now()
    cutoff = retention_cutoff(now, args.days)
    tables = [apply_retention(spark, settings, entity, layer, cutoff)
              for entity in args.entities for layer in LAYERS]
    return {"job": "retention", "now": now.isoformat(), "days": args.days, "cutoff_date": cutoff,
            "tables": tables, "ok": all(t["status"] != "failed" for t in tables)}


def summary_line(table: dict, settings: Settings | None = None) -> str:
    name = f"retention {table['layer']}/{table['entity']}:"
    if table["status"] == "missing":
        return f"{name} skipped, no Delta table at {table['table']}"
    if table["status"] == "failed":
        return f"{name} FAILED: {table['error']}"
    if table["status"] == "nothing_to_do":
        return f"{name} nothing before {table['cutoff_date']}"
    return (f"{name} {len(table['partitions_deleted']):,} hour partitions before {table['cutoff_date']} deleted, "
            f"{table['rows_deleted']:,} rows ({table['files_deleted']:,} files, removed at the next VACUUM)")


def check_days(settings: Settings, args: argparse.Namespace) -> str | None:
    if args.days is None:
        args.days = settings.maintenance.bronze_retention_days
    return days_error(args.days, settings.maintenance.reconcile_lookback_days)


def check_options(settings: Settings, args: argparse.Namespace) -> str | None:
    """Why the job is refused before Spark starts: a table location that is not a plain lake path, or --days."""
    try:
        for entity in args.entities:
            for layer in LAYERS:
                table_uri(settings, entity, layer)
    except IdentifierError as exc:
        return f"configuration error: {exc}"
    return check_days(settings, args)


def main(argv: list[str], spark=None) -> int:
    """Entry point; pass `spark` to run in an existing session (tests), which is then left running."""
    return job_main("retention", parse_args(argv), spark, run, summary_line, check_options)

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
