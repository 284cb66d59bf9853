"""Reprocess: rebuild Silver and quarantine for a date range from Bronze, with the stream's own transforms.

    spark-submit spark_jobs/reprocess.py --from YYYY-MM-DD --to YYYY-MM-DD [--entity trades|quotes (repeatable)]
                                         [--now ISO8601-UTC] [--json PATH]

When validation or parsing changes (a contract rule, a new schema version, a parser fix), the rows already in Silver
and quarantine were judged by the old logic. Bronze holds every record as received, so this job judges them again:
for each entity it reads Bronze from the day before --from on (an event is stamped at most
stream.max_future_skew_seconds after its Kafka time, and may arrive any time later), parses it with
transforms.parse_events against the current contract, and replaces
- Silver's partitions of the range (event date and hour) with the valid events, each once: its first delivery by
  (Kafka timestamp, partition, offset), as reconcile picks it, with the Bronze row's ingest time;
- quarantine's partitions of the range (Kafka date and hour) with the records that break the contract.
Each replacement is one atomic Delta commit (replaceWhere): readers see the old partitions or the new ones, never a
mix, and rows outside the range are not touched. The same Bronze gives the same rows, so running it twice leaves
the tables as one run left them.

Only closed hours are replaced (ended maintenance.closed_hour_grace_minutes before --now, as compaction counts
them): the stream keeps appending to the current hour meanwhile, and Delta's conflict check sees that it touches
none of the replaced partitions. A commit that loses a race with another job on those partitions (compaction,
reconcile) is retried. Gold follows on its next build: the replacement's deletes and inserts are in Silver's change
data feed, so spark_jobs/silver_changes.py names the buckets and dbt rebuilds exactly those (the `reprocess` DAG
runs both right after).

Exit codes: 0 done, 1 job-level failure (a table missing or without the current contract's columns, a commit still
conflicting after its retries), 2 bad configuration or arguments (including a range with no closed hour).
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

from delta.tables import DeltaTable
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from conf.contracts.schemas import load_contract
from conf.settings import ConfigError, Settings, load_settings
from spark_jobs.lib.logs import LOG_FORMAT
from spark_jobs.lib.hours import parse_utc
from spark_jobs.lib.delta import delta_table, with_retries
from spark_jobs.lib.jobs import JobError, OneLineParser, open_session, parse_day
from spark_jobs.lib.tables import require_contract_columns
from spark_jobs.lib.transforms import ENTITIES, Entity, first_deliveries, judged_rows, parse_events, silver_rows

LOGGER_NAME = "stocklake.reprocess"
log = logging.getLogger(LOGGER_NAME)


# -- pure helpers -------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Partitions:
    """The partitions a run replaces: whole days first..last_full_day, then hours 00..before_hour-1 of
    partial_day (the day the closed hours end in), when there is one."""
    first: date
    last_full_day: date | None
    partial_day: date | None
    before_hour: int
    open_from: datetime      # the first hour not closed at the run's `now`: the stream may still write from here

    def predicate(self) -> str:
        """The replaceWhere condition on the date/hour partition columns (literals of dates and hours only)."""
        parts = []
        if self.last_full_day is not None:
            parts.append(f"(date >= '{self.first.isoformat()}' AND date <= '{self.last_full_day.isoformat()}')")
        if self.partial_day is not None:
            parts.append(f"(date = '{self.partial_day.isoformat()}' AND hour < '{self.before_hour:02d}')")
        return " OR ".join(parts)

    def column(self, date_column: Column, hour_column: Column) -> Column:
        """The same condition on any pair of date (yyyy-MM-dd) and hour (HH) columns."""
        condition = F.lit(False)
        if self.last_full_day is not None:
            condition = condition | date_column.between(self.first.isoformat(), self.last_full_day.isoformat())
        if self.partial_day is not None:
            condition = condition | ((date_column == self.partial_day.isoformat())
                                     & (hour_column < f"{self.before_hour:02d}"))
        return condition


def closed_window(first: date, last: date, now: datetime, grace_minutes: int) -> Partitions:
    """The closed hours of the days first..last at `now`: an hour is closed once it ended grace_minutes ago.
    ValueError when none is."""
    # The first hour not yet closed (spark_jobs/lib/hours.py is_closed): hours starting before it are closed.
    open_from = (now.astimezone(timezone.utc) - timedelta(minutes=grace_minutes)).replace(
        minute=0, second=0, microsecond=0)
    if open_from.date() > last:
        return Partitions(first, last, None, 0, open_from)
    if open_from.date() < first or (open_from.date() == first and open_from.hour == 0):
        raise ValueError(f"no closed hour in {first}..{last} at {now.isoformat()}: an hour is closed "
                         f"{grace_minutes} min (maintenance.closed_hour_grace_minutes) after it ends")
    last_full = open_from.date() - timedelta(days=1)
    return Partitions(first, last_full if last_full >= first else None,
                      open_from.date() if open_from.hour > 0 else None, open_from.hour, open_from)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = OneLineParser(prog="spark_jobs/reprocess.py", description=__doc__.splitlines()[0])
    parser.add_argument("--from", dest="from_date", type=parse_day, required=True, metavar="YYYY-MM-DD",
                        help="first date to rebuild (Silver: event date; quarantine: Kafka date)")
    parser.add_argument("--to", dest="to_date", type=parse_day, required=True, metavar="YYYY-MM-DD",
                        help="last date to rebuild, inclusive (only its closed hours when it is today)")
    parser.add_argument("--entity", choices=list(ENTITIES), action="append",
                        help="an event stream to rebuild; repeat for several (default: all)")
    parser.add_argument("--now", type=parse_utc, metavar="ISO8601-UTC",
                        help="the clock that decides which hours are closed (default: the current time)")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the result as JSON here")
    args = parser.parse_args(argv)
    if args.from_date > args.to_date:
        parser.error(f"--from {args.from_date} is after --to {args.to_date}")
    args.entities = [ENTITIES[name] for name in dict.fromkeys(args.entity or ENTITIES)]
    return args


# -- the job ------------------------------------------------------------------------------------------------

def count_in(table: DataFrame, window: Partitions) -> int:
    return table.where(window.column(F.col("date"), F.col("hour"))).count()


def replace_partitions(rows: DataFrame, path: str, window: Partitions, what: str) -> int:
    """Overwrite the window's partitions of the Delta table at path with rows, atomically; returns retries."""
    def write() -> None:
        (rows.write.format("delta").mode("overwrite")
         .option("replaceWhere", window.predicate())
         .save(path))

    _, retries = with_retries(write, f"replace {what} {window.predicate()}")
    return retries


def update_quarantine(spark: SparkSession, path: str, parsed: DataFrame, bronze_from: date) -> tuple[dict, int]:
    """In one MERGE on (topic, partition, offset): the records' quarantine rows become what the current contract
    says: updated where still broken, deleted where now valid, inserted where newly broken. Returns the MERGE's
    counts and its retries."""
    judged = judged_rows(parsed)
    condition = ("t.topic = s.topic AND t.partition = s.partition AND t.offset = s.offset "
                 f"AND t.date >= '{bronze_from.isoformat()}'")

    def merge() -> dict:
        result = (DeltaTable.forPath(spark, path).alias("t")
                  .merge(judged.alias("s"), condition)
                  .whenMatchedDelete(condition="s.reason IS NULL")
                  .whenMatchedUpdateAll(condition="s.reason IS NOT NULL")
                  .whenNotMatchedInsertAll(condition="s.reason IS NOT NULL")
                  .execute()).first()
        return {"deleted": int(result["num_deleted_rows"]), "updated": int(result["num_updated_rows"]),
                "inserted": int(result["num_inserted_rows"])}

    return with_retries(merge, f"MERGE into {path}")


def reprocess_entity(spark: SparkSession, settings: Settings, entity: Entity, window: Partitions) -> dict:
    started = time.monotonic()
    silver_path = settings.lake_uri(entity.table("silver"))
    quarantine_path = settings.lake_uri(entity.table("quarantine"))
    bronze = delta_table(spark, settings.lake_uri(entity.table("bronze")), "bronze").toDF()
    silver_table = delta_table(spark, silver_path, "silver")
    silver = silver_table.toDF()
    delta_table(spark, quarantine_path, "quarantine")  # exists

    # An event of day D reaches Kafka at the earliest max_future_skew_seconds before its own time: on D - 1 at
    # most (the skew is minutes), and later at any time: every Bronze date from there on.
    skew = settings.stream.max_future_skew_seconds
    bronze_from = window.first - timedelta(days=1 + skew // 86400)
    parsed = parse_events(bronze.where(F.col("date") >= bronze_from.isoformat()), entity,
                          load_contract(entity.schema_name), skew)
    rows = silver_rows(parsed, entity)
    require_contract_columns(silver_path, silver, rows)
    # The records this run judges again: those whose event falls in the window, and those without an event time
    # (not JSON, no valid timestamp) received in it. Quarantine is partitioned by Kafka time, so its rows of
    # these records are updated by key (topic, partition, offset), not by partition.
    event_time = F.timestamp_millis(F.col("event")[entity.event_ts_field])
    in_scope = F.when(event_time.isNotNull(),
                      window.column(F.date_format(event_time, "yyyy-MM-dd"), F.date_format(event_time, "HH")))
    in_scope = F.coalesce(in_scope, window.column(F.col("date"), F.col("hour")))
    parsed = parsed.where(in_scope).persist()  # parsed once, read by both writes
    # Quarantine: only records received in closed hours. Later ones the running stream may be writing right now
    # (its Bronze and quarantine appends are two commits): taking them here too could quarantine one twice.
    received = parsed.where(F.col("kafka_timestamp") < F.lit(window.open_from))
    try:
        before = {"silver_rows": count_in(silver, window)}
        new_silver = (first_deliveries(silver_rows(parsed, entity).where(window.column(F.col("date"), F.col("hour"))))
                      .select(*silver.columns))
        silver_retries = replace_partitions(new_silver, silver_path, window, "silver")
        merged, quarantine_retries = update_quarantine(spark, quarantine_path, received, bronze_from)
    finally:
        parsed.unpersist()
    after_silver = spark.read.format("delta").load(silver_path)
    result = {
        "entity": entity.name, "bronze_from": bronze_from.isoformat(), "partitions": window.predicate(),
        "silver_rows_before": before["silver_rows"], "silver_rows_after": count_in(after_silver, window),
        "quarantine": merged, "retries": silver_retries + quarantine_retries,
        "silver_version": silver_table.history(1).select("version").first()["version"],
        "seconds": round(time.monotonic() - started, 1),
    }
    log.info(json.dumps({"event": "reprocessed", **result}))
    return result


def render(summary: dict) -> str:
    parts = [f"{r['entity']}: Silver {r['silver_rows_before']:,} -> {r['silver_rows_after']:,} rows, quarantine "
             f"{r['quarantine']['inserted']:,} added, {r['quarantine']['deleted']:,} removed, "
             f"{r['quarantine']['updated']:,} re-judged" for r in summary["entities"]]
    return f"reprocess {summary['partitions']}: " + "; ".join(parts)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    now = args.now or datetime.now(timezone.utc)
    try:
        settings = load_settings()
        window = closed_window(args.from_date, args.to_date, now, settings.maintenance.closed_hour_grace_minutes)
    except (ConfigError, ValueError) as exc:
        print(f"reprocess: error: {exc}", file=sys.stderr)
        return 2
    try:
        spark, owns_session = open_session("stocklake-reprocess", settings)
    except ConfigError as exc:
        print(f"reprocess: configuration error: {exc}", file=sys.stderr)
        return 2
    summary = {"from": args.from_date.isoformat(), "to": args.to_date.isoformat(), "now": now.isoformat(),
               "partitions": window.predicate(), "entities": [], "ok": True}
    log.info(json.dumps({"event": "reprocess_started", "partitions": summary["partitions"],
                         "entities": [e.name for e in args.entities]}))
    try:
        for entity in args.entities:
            summary["entities"].append(reprocess_entity(spark, settings, entity, window))
    except JobError as exc:
        summary.update(ok=False, error=str(exc))
        log.error(json.dumps({"event": "reprocess_failed", "error": str(exc)}))
        print(f"reprocess: {exc}", file=sys.stderr)
    finally:
        if owns_session:
            spark.stop()
    if summary["ok"]:
        print(render(summary))
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2))
    return 0 if summary["ok"] else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
