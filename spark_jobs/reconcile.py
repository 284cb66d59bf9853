"""Late-data reconciliation: valid Bronze events missing from Silver are MERGEd into Silver, idempotently.

    spark-submit spark_jobs/reconcile.py [--entity trades|quotes (repeatable, default all)]
                                         [--from YYYY-MM-DD --to YYYY-MM-DD] [--now ISO8601-UTC] [--json PATH]

The stream's watermark drops events that arrive too late; they stay in Bronze (report.py counts them as late).
For each entity this job reads the Bronze partitions of the window (Bronze `date` is the Kafka date; default:
the last maintenance.reconcile_lookback_days days before --now, today included), parses them with the stream's
own transforms, keeps the valid events, takes the first delivery of each event id, anti-joins Silver (only the
event dates those rows fall in) and MERGEs what is missing into Silver on event_id and its date/hour partition
with insert-only semantics. Running it twice inserts nothing the second time, and an id the stream or another
run inserted meanwhile is matched, not duplicated. A MERGE that loses a commit race (Delta's concurrent
modification exceptions: compaction, another reconcile) is retried with a short backoff.

Missing events the stream may still write are left alone ("pending"): those newer than the stream's watermark
horizon (newest Silver event time - stream.watermark_delay). The stream drops only rows at or behind its
watermark, so every row this job inserts is one the stream will never append, and Silver keeps each event once.

Exit codes: 0 done, 1 job-level failure (a table missing, a MERGE still conflicting after its retries),
2 bad configuration or arguments.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Callable

from delta.tables import DeltaTable
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from conf.contracts.schemas import load_contract
from conf.settings import ConfigError, Settings, interval_seconds, load_settings
from spark_jobs.lib.logs import LOG_FORMAT
from spark_jobs.lib.delta import delta_table, with_retries
from spark_jobs.lib.hours import DATE_VALUE, HOUR_VALUE
from spark_jobs.lib.hours import parse_utc as parse_now
from spark_jobs.lib.transforms import ENTITIES, Entity, missing_from_silver, parse_events, silver_rows
from spark_jobs.lib.jobs import JobError, OneLineParser, open_session, parse_day
from spark_jobs.lib.tables import require_contract_columns

# Spelled into the MERGE condition as literals: ASCII digits only, \Z (spark_jobs/lib/hours.py).
PARTITION_VALUE = {"date": DATE_VALUE, "hour": HOUR_VALUE}
LOGGER_NAME = "stocklake.reconcile"
log = logging.getLogger(LOGGER_NAME)




# -- pure helpers -------------------------------------------------------------------------------------------


def lookback_window(now: datetime, days: int) -> tuple[date, date]:
    """Bronze dates (UTC Kafka dates) touched by the last `days` days before `now`, today included."""
    return (now - timedelta(days=days)).date(), now.date()


def parse_args(argv: list[str]) -> argparse.Namespace:
    """Options; adds `entities` (Entity objects, each once, all by default)."""
    parser = OneLineParser(prog="spark_jobs/reconcile.py", description=__doc__.splitlines()[0])
    parser.add_argument("--entity", choices=list(ENTITIES), action="append",
                        help="an event stream to reconcile; repeat for several (default: all)")
    parser.add_argument("--from", dest="from_date", type=parse_day, metavar="YYYY-MM-DD",
                        help="first Bronze date to read (with --to; default: the date "
                             "maintenance.reconcile_lookback_days days before now)")
    parser.add_argument("--to", dest="to_date", type=parse_day, metavar="YYYY-MM-DD",
                        help="last Bronze date to read, inclusive (with --from; default: the date of now)")
    parser.add_argument("--now", type=parse_now, metavar="ISO8601-UTC",
                        help="the clock the default window counts back from (default: the current time; "
                             "--from/--to take precedence)")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the result as JSON here")
    args = parser.parse_args(argv)
    if (args.from_date is None) != (args.to_date is None):
        parser.error("--from and --to go together (or leave both out for the look-back window)")
    if args.from_date is not None and args.from_date > args.to_date:
        parser.error(f"--from {args.from_date} is after --to {args.to_date}")
    args.entities = [ENTITIES[name] for name in dict.fromkeys(args.entity or ENTITIES)]
    return args


def watermark_horizon_ms(newest_event_ms: int | None, watermark_delay: str) -> int | None:
    """The stream's watermark as far as Silver shows it: newest event time in Silver - the watermark delay.

    The newest event the stream has seen is always in Silver (it cannot be behind the watermark), so this is
    the watermark the stream's next micro-batch uses; it only moves forward. None: Silver is empty there.
    """
    if newest_event_ms is None:
        return None
    return newest_event_ms - round(interval_seconds(watermark_delay) * 1000)


def behind_watermark(entity: Entity, horizon_ms: int | None) -> Column:
    """True for rows the stream drops if it meets them (event time <= watermark, as Spark decides): safe to insert.
    The rest may still arrive through the stream, which appends blindly: inserting them could duplicate them."""
    if horizon_ms is None:
        return F.lit(False)
    return F.unix_millis(F.col(entity.event_time_column)) <= F.lit(horizon_ms)


def merge_condition(partitions: list[tuple[str, str]]) -> str:
    """MERGE condition on event_id and the event's partition, with the target's partitions spelled out as
    literals so Delta reads (and conflict-checks) only those partitions."""
    hours: dict[str, list[str]] = {}
    for day, hour in sorted(set(partitions)):
        for column, value in (("date", day), ("hour", hour)):
            if not PARTITION_VALUE[column].match(value):
                raise ValueError(f"unexpected {column} partition value {value!r}")
        hours.setdefault(day, []).append(hour)
    if not hours:
        raise ValueError("no partitions to merge into")
    pruning = " OR ".join(f"(t.date = '{day}' AND t.hour IN ({', '.join(repr(h) for h in hs)}))"
                          for day, hs in hours.items())
    return f"t.event_id = s.event_id AND t.date = s.date AND t.hour = s.hour AND ({pruning})"


# -- the job ------------------------------------------------------------------------------------------------


def schema_mismatch(rows: DataFrame, target: DataFrame) -> str | None:
    """How the rows' columns differ from the target's (names, order, types; nullability aside), or None."""
    ours = [(f.name, f.dataType.simpleString()) for f in rows.schema]
    theirs = [(f.name, f.dataType.simpleString()) for f in target.schema]
    return None if ours == theirs else f"rows have {ours}, Silver has {theirs}"


def merge_missing(spark: SparkSession, silver_path: str, rows: DataFrame, partitions: list[tuple[str, str]],
                  sleep: Callable[[float], None] = time.sleep) -> tuple[int, int]:
    """Insert the rows whose event id the Silver partitions do not hold: (rows inserted, retries).

    Insert-only MERGE: an id already there (the stream, another run) is matched and left alone, so running it
    again with the same rows inserts nothing."""
    condition = merge_condition(partitions)

    def merge() -> int:
        result = (DeltaTable.forPath(spark, silver_path).alias("t")
                  .merge(rows.alias("s"), condition)
                  .whenNotMatchedInsertAll()
                  .execute())
        return int(result.first()["num_inserted_rows"])

    return with_retries(merge, f"MERGE into {silver_path}", sleep=sleep)


def reconcile_entity(spark: SparkSession, settings: Settings, entity: Entity, from_date: date,
                     to_date: date) -> dict:
    started = time.monotonic()
    bronze_path = settings.lake_uri(entity.table("bronze"))
    silver_path = settings.lake_uri(entity.table("silver"))
    bronze = delta_table(spark, bronze_path, "bronze").toDF()
    silver_table = delta_table(spark, silver_path, "silver")
    silver = silver_table.toDF()

    in_window = bronze.where(F.col("date").between(from_date.isoformat(), to_date.isoformat()))
    parsed = parse_events(in_window, entity, load_contract(entity.schema_name),
                          settings.stream.max_future_skew_seconds)
    require_contract_columns(silver_path, silver, silver_rows(parsed, entity))
    # Parsing is the expensive part: do it once for the valid rows, without the raw bytes.
    valid = parsed.where(F.size("reasons") == 0).drop("key", "value").persist()
    missing = None
    try:
        event_dates = sorted(row["date"] for row in silver_rows(valid, entity).select("date").distinct().collect())
        result = {"entity": entity.name, "event_dates": event_dates, "missing_rows": 0, "pending_rows": 0,
                  "inserted_rows": 0, "merge_retries": 0, "partitions": [], "watermark_horizon": None}
        if event_dates:
            # Silver is partitioned by event date: read only the dates these events fall in.
            silver_there = silver.where(F.col("date").isin(event_dates))
            missing = missing_from_silver(valid, silver_there, entity).persist()
            # Newest event from the first event date on: same verdict as over all of Silver (were the newest
            # older, every row here would be ahead of the watermark either way), fewer partitions read.
            newest = (silver.where(F.col("date") >= event_dates[0])
                      .agg(F.max(F.unix_millis(F.col(entity.event_time_column)))).first()[0])
            horizon_ms = watermark_horizon_ms(newest, settings.stream.watermark_delay)
            # ingest_time: when the row enters Silver, i.e. this MERGE.
            settled = (missing.where(behind_watermark(entity, horizon_ms))
                       .withColumn("ingest_time", F.current_timestamp())
                       .select(*silver.columns))
            mismatch = schema_mismatch(settled, silver)
            if mismatch:
                raise JobError(f"{silver_path}: reconciled rows do not match Silver's schema: {mismatch}")
            by_partition = settled.groupBy("date", "hour").count().collect()
            partitions = sorted((row["date"], row["hour"]) for row in by_partition)
            settled_rows = sum(row["count"] for row in by_partition)
            result.update(missing_rows=missing.count(), partitions=[f"{d}/{h}" for d, h in partitions],
                          watermark_horizon=None if horizon_ms is None else
                          datetime.fromtimestamp(horizon_ms / 1000, timezone.utc).isoformat())
            result["pending_rows"] = result["missing_rows"] - settled_rows
            if settled_rows:
                inserted, retries = merge_missing(spark, silver_path, settled, partitions)
                result.update(inserted_rows=inserted, merge_retries=retries)
    finally:
        valid.unpersist()
        if missing is not None:
            missing.unpersist()
    result["silver_version"] = silver_table.history(1).select("version").first()["version"]
    result["seconds"] = round(time.monotonic() - started, 1)
    log.info(json.dumps({"event": "reconciled", **result}))
    return result


def render(summary: dict) -> str:
    window = f"{summary['from']}..{summary['to']}"
    parts = [f"{r['entity']}: missing {r['missing_rows']:,} (pending in stream {r['pending_rows']:,}), "
             f"inserted {r['inserted_rows']:,}, retries {r['merge_retries']}" for r in summary["entities"]]
    return f"reconcile Bronze {window}: " + "; ".join(parts)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    now = args.now or datetime.now(timezone.utc)
    try:
        settings = load_settings()
        if args.from_date is None:
            args.from_date, args.to_date = lookback_window(now, settings.maintenance.reconcile_lookback_days)
        spark, owns_session = open_session("stocklake-reconcile", settings)
    except ConfigError as exc:
        print(f"reconcile: configuration error: {exc}", file=sys.stderr)
        return 2
    summary = {"from": args.from_date.isoformat(), "to": args.to_date.isoformat(), "now": now.isoformat(),
               "entities": [], "ok": True}
    log.info(json.dumps({"event": "reconcile_started", "from": summary["from"], "to": summary["to"],
                         "entities": [e.name for e in args.entities]}))
    try:
        for entity in args.entities:
            summary["entities"].append(reconcile_entity(spark, settings, entity, args.from_date, args.to_date))
    except JobError as exc:
        summary.update(ok=False, error=str(exc))
        log.error(json.dumps({"event": "reconcile_failed", "error": str(exc)}))
        print(f"reconcile: {exc}", file=sys.stderr)
    finally:
        if owns_session:
            spark.stop()
    summary["inserted_rows"] = sum(r["inserted_rows"] for r in summary["entities"])
    if summary["ok"]:
        print(render(summary))
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2))
    return 0 if summary["ok"] else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
