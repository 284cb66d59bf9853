"""What the Delta maintenance jobs (compact.py, vacuum.py, retention.py) share.

Pure helpers (closed hours, compaction candidates, the retention cutoff, per-partition file statistics, the
retry rule for Delta's write conflicts) are plain functions tested with exact values; the rest is the small
plumbing every job needs: its common options, reading a table's file list, JSON log lines and the JSON report.

Per-partition file statistics come from the `add` actions of the table's current snapshot, read with delta-rs
(`deltalake`, already the Gold layer's reader): it reads only the transaction log (last checkpoint plus the
commits after it), never a data file, and each `add` carries the file's size and, from its statistics, its row
count. That is exactly "the files the current version references", at the cost of a few small GETs whatever
the table's size. (inputFiles() has no sizes, a HEAD per file does not scale to thousands of streaming files,
and DESCRIBE DETAIL only totals the whole table.)
"""
from __future__ import annotations

import argparse
import json
import logging
import re
import sys
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, TypeVar

from conf.settings import ConfigError, Settings, load_settings

LOGGER_NAME = "stocklake.maintenance"
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"
HOUR = timedelta(hours=1)
# Delta's ConcurrentModificationException family (ConcurrentAppend, ConcurrentDeleteRead, ConcurrentDeleteDelete,
# ConcurrentTransaction, ConcurrentWrite, MetadataChanged, ProtocolChanged) all carry this SQLSTATE.
DELTA_CONFLICT_SQLSTATE = "2D521"
DELTA_CONFLICT_CLASSES = ("ConcurrentModificationException", "ConcurrentAppendException",
                          "ConcurrentDeleteReadException", "ConcurrentDeleteDeleteException",
                          "ConcurrentTransactionException", "ConcurrentWriteException", "MetadataChangedException",
                          "ProtocolChangedException")
# Partition values end up in SQL predicates (partition_predicate): ASCII digits only, and \Z so that no trailing
# newline passes.
DATE_VALUE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}\Z")
HOUR_VALUE = re.compile(r"[0-9]{2}\Z")

log = logging.getLogger(LOGGER_NAME)
T = TypeVar("T")


# ---------------------------------------------------------------------------------------------- time and hours

def parse_utc(text: str) -> datetime:
    """An ISO 8601 instant as an aware UTC datetime; one without an offset is taken as UTC (storage is UTC)."""
    try:
        value = datetime.fromisoformat(text.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {text!r} (e.g. 2026-01-05T15:20:00Z)") from None
    if value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc)


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def hour_start(partition_date: str, partition_hour: str) -> datetime | None:
    """Start (UTC) of the hour partition date=YYYY-MM-DD/hour=HH; None for a value that is not one."""
    if not (isinstance(partition_date, str) and DATE_VALUE.match(partition_date)
            and isinstance(partition_hour, str) and HOUR_VALUE.match(partition_hour)):
        return None
    try:
        day = date.fromisoformat(partition_date)
    except ValueError:
        return None
    if not 0 <= int(partition_hour) <= 23:
        return None
    return datetime(day.year, day.month, day.day, int(partition_hour), tzinfo=timezone.utc)


def is_closed(partition_date: str, partition_hour: str, now: datetime, grace_minutes: int) -> bool:
    """An hour is closed once it ended at least grace_minutes ago: no stream writes into it any more (Silver
    rows arrive up to the watermark delay after the hour ends, Bronze rows never after)."""
    start = hour_start(partition_date, partition_hour)
    return start is not None and now >= start + HOUR + timedelta(minutes=grace_minutes)


def in_lookback(partition_date: str, partition_hour: str, now: datetime, lookback_hours: int) -> bool:
    """The hour is one of the lookback_hours whole hours before the current one (older ones were handled by
    earlier runs)."""
    start = hour_start(partition_date, partition_hour)
    current = now.astimezone(timezone.utc).replace(minute=0, second=0, microsecond=0)
    return start is not None and current - lookback_hours * HOUR <= start < current


def retention_cutoff(now: datetime, days: int) -> str:
    """First date kept: partitions with date < this are past retention (now's UTC date minus `days`)."""
    return (now.astimezone(timezone.utc).date() - timedelta(days=days)).isoformat()


# ------------------------------------------------------------------------------------- per-partition statistics

@dataclass(frozen=True)
class PartitionStats:
    """The files of one hour partition in a table's current snapshot."""

    date: str
    hour: str
    files: int
    bytes: int
    rows: int | None  # None when a file has no row-count statistics

    @property
    def key(self) -> tuple[str, str]:
        return self.date, self.hour


def partition_stats(add_actions: Iterable[Mapping[str, Any]]) -> dict[tuple[str, str], PartitionStats]:
    """Files, bytes and rows per (date, hour) from `add` actions, each a mapping with `partition.date`,
    `partition.hour`, `size_bytes` and `num_records` (delta-rs get_add_actions(flatten=True) rows)."""
    totals: dict[tuple[str, str], list] = {}
    for action in add_actions:
        key = (action["partition.date"], action["partition.hour"])
        files, size, rows = totals.setdefault(key, [0, 0, 0])
        records = action.get("num_records")
        totals[key] = [files + 1, size + int(action["size_bytes"]),
                       None if rows is None or records is None else rows + int(records)]
    return {key: PartitionStats(key[0], key[1], files, size, rows)
            for key, (files, size, rows) in sorted(totals.items(), key=lambda item: tuple(map(str, item[0])))}


def compaction_candidates(stats: Mapping[tuple[str, str], PartitionStats], now: datetime, grace_minutes: int,
                          lookback_hours: int, min_files: int) -> list[PartitionStats]:
    """Closed hours within the look-back holding at least min_files files, oldest first. The open hour (and
    any hour not yet past its grace) is never a candidate."""
    return sorted((s for s in stats.values()
                   if s.files >= min_files
                   and in_lookback(s.date, s.hour, now, lookback_hours)
                   and is_closed(s.date, s.hour, now, grace_minutes)),
                  key=lambda s: s.key)


def expired_partitions(stats: Mapping[tuple[str, str], PartitionStats], cutoff: str) -> list[PartitionStats]:
    """Partitions whose date is before the cutoff date, oldest first (ISO dates compare as strings)."""
    return sorted((s for s in stats.values() if isinstance(s.date, str) and DATE_VALUE.match(s.date)
                   and s.date < cutoff), key=lambda s: s.key)


def partition_predicate(stats: PartitionStats) -> str:
    """SQL predicate selecting one hour partition; the values are checked, never pasted blindly."""
    if hour_start(stats.date, stats.hour) is None:
        raise ValueError(f"not an hour partition: date={stats.date!r} hour={stats.hour!r}")
    return f"date = '{stats.date}' AND hour = '{stats.hour}'"


# ------------------------------------------------------------------------------------------ conflicts and retry

def delta_conflict_types() -> tuple[type, ...]:
    """The Python exceptions delta-spark converts its conflicts to once `delta` is imported (it patches pyspark's
    conversion; since Delta 4.4 they keep no link to the JVM exception, so the checks below cannot see them)."""
    from delta.exceptions import base

    return (base.DeltaConcurrentModificationException, base.ConcurrentWriteException, base.MetadataChangedException,
            base.ProtocolChangedException, base.ConcurrentAppendException, base.ConcurrentDeleteReadException,
            base.ConcurrentDeleteDeleteException, base.ConcurrentTransactionException)


def is_concurrent_modification(exc: BaseException) -> bool:
    """Whether a Spark/Delta error is one of Delta's optimistic-concurrency conflicts (worth a retry): the JVM
    exception or any of its causes, its SQLSTATE, or (when the JVM side is gone) a conflict class in its text."""
    if isinstance(exc, delta_conflict_types()):
        return True
    java_exc = getattr(exc, "java_exception", None) or getattr(exc, "_origin", None)
    if java_exc is not None:
        from py4j.java_gateway import is_instance_of
        from pyspark import SparkContext

        gateway = SparkContext._gateway
        depth = 0
        # Every Delta conflict extends java.util.ConcurrentModificationException; MERGE wraps it in causes.
        while java_exc is not None and gateway is not None and depth < 10:
            if is_instance_of(gateway, java_exc, "java.util.ConcurrentModificationException"):
                return True
            java_exc, depth = java_exc.getCause(), depth + 1
    get_sql_state = getattr(exc, "getSqlState", None)
    if callable(get_sql_state):
        try:
            if get_sql_state() == DELTA_CONFLICT_SQLSTATE:
                return True
        except Exception as state_exc:  # a converted exception whose JVM side is gone: decide on the text below
            log.debug("no SQLSTATE from %s: %s", type(exc).__name__, state_exc)
    text = str(exc)
    return any(name in text for name in DELTA_CONFLICT_CLASSES)


def retry_once_on_conflict(action: Callable[[], T], on_conflict: Callable[[BaseException], None]) \
        -> tuple[T, int]:
    """Run action; after a Delta write conflict, report it and run it once more. Returns (result, attempts).
    Any other error, or a second conflict, propagates."""
    try:
        return action(), 1
    except Exception as exc:
        if not is_concurrent_modification(exc):
            raise
        on_conflict(exc)
    return action(), 2


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:500]


# ------------------------------------------------------------------------------------------------ Delta reading

def storage_options(settings: Settings) -> dict[str, str]:
    """delta-rs options for the lake's object store; credentials come from AWS_* in the environment."""
    lake = settings.lake
    return {
        "AWS_ENDPOINT_URL": lake.s3_endpoint,
        "AWS_REGION": lake.s3_region,
        "AWS_ALLOW_HTTP": str(lake.s3_endpoint.startswith("http://")).lower(),
        "AWS_VIRTUAL_HOSTED_STYLE_REQUEST": str(not lake.path_style_access).lower(),
    }


def credentialed_storage_options(settings: Settings) -> dict[str, str]:
    """storage_options plus the credentials from AWS_* in the environment, for readers that pass them explicitly;
    ConfigError when they are not set."""
    import os

    access_key, secret_key = os.environ.get("AWS_ACCESS_KEY_ID"), os.environ.get("AWS_SECRET_ACCESS_KEY")
    if not access_key or not secret_key:
        raise ConfigError("AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY must be set in the environment "
                          "(for the local stack: `source .lake/env.sh`)")
    options = {**storage_options(settings), "AWS_ACCESS_KEY_ID": access_key, "AWS_SECRET_ACCESS_KEY": secret_key}
    if os.environ.get("AWS_SESSION_TOKEN"):
        options["AWS_SESSION_TOKEN"] = os.environ["AWS_SESSION_TOKEN"]
    return options


def delta_rs_uri(settings: Settings, path: str) -> str:
    """The s3:// URI delta-rs reads a lake path at (Spark's Hadoop connector says s3a://: same bucket and key)."""
    return "s3://" + settings.lake_uri(path).removeprefix("s3a://")


def read_partition_stats(settings: Settings, uri: str) -> tuple[int, dict[tuple[str, str], PartitionStats]]:
    """(table version, files per hour partition) of a Delta table's current snapshot, from its log only."""
    import pyarrow as pa
    from deltalake import DeltaTable as LogReader

    table = LogReader(uri, storage_options=storage_options(settings))
    actions = pa.table(table.get_add_actions(flatten=True))
    columns = ["partition.date", "partition.hour", "size_bytes", "num_records"]
    return table.version(), partition_stats(actions.select(columns).to_pylist())


def is_delta_table(spark, uri: str) -> bool:
    from delta.tables import DeltaTable

    return DeltaTable.isDeltaTable(spark, uri)


@contextmanager
def session_conf(spark, values: Mapping[str, str]) -> Iterator[None]:
    """Set SQL confs for the duration of a job and put the previous values back (tests share one session)."""
    previous = {key: spark.conf.get(key, None) for key in values}
    for key, value in values.items():
        spark.conf.set(key, value)
    try:
        yield
    finally:
        for key, value in previous.items():
            if value is None:
                spark.conf.unset(key)
            else:
                spark.conf.set(key, value)


# -------------------------------------------------------------------------------------------- CLI and reporting

def add_common_arguments(parser: argparse.ArgumentParser, entities: Iterable[str]) -> None:
    parser.add_argument("--entity", choices=list(entities), action="append",
                        help="an event stream whose tables to maintain; repeat for several (default: all)")
    parser.add_argument("--json", type=Path, help="also write the result as JSON here")


def log_event(event: str, **fields: Any) -> None:
    log.info(json.dumps({"event": event, **fields}, default=str))


def stats_dict(stats: PartitionStats | None) -> dict[str, Any]:
    return {"files": 0, "bytes": 0, "rows": 0} if stats is None else \
        {key: value for key, value in asdict(stats).items() if key in ("files", "bytes", "rows")}


def write_json(path: Path | None, result: Mapping[str, Any]) -> None:
    if path is not None:
        path.write_text(json.dumps(result, indent=2, default=str))


def setup_logging() -> None:
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)


def job_main(job: str, args: argparse.Namespace, spark, run: Callable[[Any, Settings, argparse.Namespace], dict],
             summary_line: Callable[[dict, Settings], str],
             check: Callable[[Settings, argparse.Namespace], str | None] | None = None) -> int:
    """What every maintenance entry point does around its `run`: settings, the option check (`check` returns
    why the options are refused, exit 2), a session unless one is given (tests pass theirs, which is then left
    running), one summary line per table, the JSON file, the exit code (1 when a table failed)."""
    setup_logging()
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"{job}: configuration error: {exc}", file=sys.stderr)
        return 2
    refused = check(settings, args) if check else None
    if refused:
        print(f"{job}: {refused}", file=sys.stderr)
        return 2
    own_session = spark is None
    if own_session:
        from conf.preflight import preflight
        from spark_jobs.session import build_spark

        try:
            preflight(settings, object_store=True)  # credentials, endpoint and bucket, before the JVM starts
            spark = build_spark(f"stocklake-{job}", settings, {"spark.ui.enabled": "false"})
        except ConfigError as exc:
            print(f"{job}: configuration error: {exc}", file=sys.stderr)
            return 2
        spark.sparkContext.setLogLevel("WARN")
    try:
        result = run(spark, settings, args)
    finally:
        if own_session:
            spark.stop()
    for table in result["tables"]:
        print(summary_line(table, settings))
    write_json(args.json, result)
    return 0 if result["ok"] else 1
