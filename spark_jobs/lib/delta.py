"""Delta Lake helpers of the jobs: the write-conflict rule and its retries, delta-rs storage options with the
credentials, reading a table's file statistics from its log, and session confs set for the length of a job. (The
delta-rs options and table URIs themselves are conf.lake's: dbt's vars are made from them too.)

Per-partition file statistics are read with delta-rs (`deltalake`, already the Gold layer's reader): it reads only
the transaction log (last checkpoint plus the commits after it), never a data file. That is exactly "the files the
current version references", at the cost of a few small GETs whatever the table's size. (inputFiles() has no sizes,
a HEAD per file does not scale to thousands of streaming files, and DESCRIBE DETAIL only totals the whole table.)
"""
from __future__ import annotations

import json
import logging
import time
from contextlib import contextmanager
from typing import Callable, Iterator, Mapping, TypeVar

from delta.tables import DeltaTable
from pyspark.sql import SparkSession

from conf.errors import first_line
from conf.lake import storage_options  # imported from here by the jobs that read a Delta log
from conf.settings import ConfigError, Settings
from spark_jobs.lib.hours import PartitionStats, partition_stats
from spark_jobs.lib.jobs import JobError

log = logging.getLogger("stocklake.delta")
T = TypeVar("T")


# Delta's ConcurrentModificationException family (ConcurrentAppend, ConcurrentDeleteRead, ConcurrentDeleteDelete,
# ConcurrentTransaction, ConcurrentWrite, MetadataChanged, ProtocolChanged) all carry this SQLSTATE.
DELTA_CONFLICT_SQLSTATE = "2D521"


DELTA_CONFLICT_CLASSES = ("ConcurrentModificationException", "ConcurrentAppendException",
                          "ConcurrentDeleteReadException", "ConcurrentDeleteDeleteException",
                          "ConcurrentTransactionException", "ConcurrentWriteException", "MetadataChangedException",
                          "ProtocolChangedException")


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


# Waits before the 2nd, 3rd, ... MERGE attempt after a concurrent-modification conflict.
MERGE_BACKOFF_SECONDS = (1.0, 2.0, 4.0, 8.0)


def error_line(exc: BaseException) -> str:
    """The JVM exception's class and message (a Py4JJavaError's own first line names only the call)."""
    java_exc = getattr(exc, "java_exception", None)
    return first_line(java_exc.toString() if java_exc is not None else exc)


def with_retries(action: Callable[[], T], what: str, backoff: tuple[float, ...] = MERGE_BACKOFF_SECONDS,
                 sleep: Callable[[float], None] = time.sleep) -> tuple[T, int]:
    """(result, retries) of `action`, retried after each wait in `backoff` while it fails on a Delta commit
    conflict; any other failure, or a conflict after the last wait, is raised (the conflict as JobError)."""
    for retries, wait in enumerate((*backoff, None)):
        try:
            return action(), retries
        except Exception as exc:
            if not is_concurrent_modification(exc):
                raise
            first_line = error_line(exc)
            if wait is None:
                raise JobError(f"{what}: still conflicting with concurrent commits after {retries + 1} attempts: "
                               f"{first_line}") from exc
            log.warning(json.dumps({"event": "merge_conflict", "what": what, "retry_in_seconds": wait,
                                    "error": first_line[:300]}))
            sleep(wait)
    raise AssertionError("unreachable")


def delta_table(spark: SparkSession, path: str, layer: str) -> DeltaTable:
    if not DeltaTable.isDeltaTable(spark, path):
        raise JobError(f"{layer} table {path} is not a Delta table (has the stream run for this entity?)")
    return DeltaTable.forPath(spark, path)
