"""The plumbing every job's entry point shares: its common options, one-line usage errors, the session it opens
(after the start-up checks) or is given, JSON log lines, the JSON report and the exit code."""
from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import asdict
from datetime import date
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from pyspark import SparkContext
from pyspark.sql import SparkSession

from conf.preflight import preflight
from conf.settings import ConfigError, Settings, load_settings
from spark_jobs.lib.hours import PartitionStats
from spark_jobs.lib.logs import setup_logging
from spark_jobs.lib.session import build_spark

LOGGER_NAME = "stocklake.maintenance"

log = logging.getLogger(LOGGER_NAME)


# ------------------------------------------------------------------------------------- per-partition statistics


# ------------------------------------------------------------------------------------------ conflicts and retry


# ------------------------------------------------------------------------------------------------ Delta reading


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
        from spark_jobs.lib.session import build_spark

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
class JobError(RuntimeError):
    """The job cannot do its work (a table is missing, a MERGE keeps conflicting): exit code 1."""


class OneLineParser(argparse.ArgumentParser):
    """A usage error is one clear line on stderr (exit 2), with `hint` after the message."""

    def __init__(self, *args: Any, hint: str = "", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.hint = hint

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message}{self.hint}\n")


def parse_day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date: {text!r} (use YYYY-MM-DD)") from None


def open_session(app_name: str, settings: Settings) -> tuple[SparkSession, bool]:
    """(session, owned): a new session after the start-up checks, or the caller's (tests, a notebook), which the
    job must then leave running. ConfigError when a check fails."""
    owned = SparkContext._active_spark_context is None
    if owned:  # credentials, endpoint and bucket, before the JVM starts
        preflight(settings, object_store=True)
    spark = build_spark(app_name, settings, {"spark.ui.enabled": "false"})
    if owned:
        spark.sparkContext.setLogLevel("WARN")
    return spark, owned
