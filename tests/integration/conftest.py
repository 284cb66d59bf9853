"""The shared lake: one streamed dataset per test run, built the way the pipeline runs, asserted on by many files.

    lake            two trading days of simulator trades (v1 and v2 events, duplicates, out-of-order and malformed
                    records) -> Kafka -> stream run 1 -> a late run (events behind the watermark, re-deliveries,
                    malformed records) and 100 of day 2's trades delivered again byte for byte -> stream run 2 ->
                    reconcile (the late events into Silver). The Delta versions after each step are recorded, so
                    a test reads any step's tables exactly (time travel) whatever ran after it.
    gold_warehouse  `dbt build` (local target) on the lake's Silver: the Gold tests and the dashboard's browser test.
    secured_stream  one spark-submit run of the stream as production runs it (SASL, the lake user, metrics, INFO
                    logs, SIGTERM): the tests about the job's process (tests/integration/secured_stream.py).
    fault_stack     a second Kafka and MinIO for the fault tests that stop them.

The stream runs on the session's warm SparkSession (stack.run_stream_in_session); what it writes is what
spark-submit writes. Tests using one of these fixtures share one pytest-xdist worker (a load group, given by
tests/conftest.py from the fixtures a test uses), so each is built once per run.
"""
from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from confluent_kafka import Producer

from conf.settings import Settings, load_settings
from producer.simulator import SimRecord
from tests.conftest import isolate, namespace_env
from tests.integration.secured_stream import secured_stream  # noqa: F401 (a session fixture of these tests)
from tests.integration.stack import (REPO, create_namespace, distinct_free_ports, environment, expected_records,
                                     producer_args, route_bucket, run_producer, run_stream_in_session)

DBT = str(REPO / ".venv" / "bin" / "dbt")
# Two trading days (Thursday and Friday) so the daily candles, the previous close and the KPI change exist.
GOLD_DAYS = ("2026-11-19T15:00:00", "2026-11-20T15:00:00")
# A third run a minute after Friday's: its late trades are stamped 30 minutes before the clock (14:31 UTC, the
# Friday session's first minutes), behind the watermark the first stream run left (Friday 15:00 - 10 minutes).
LATE_RUN_START = "2026-11-20T15:01:00"
REDELIVERED = 100
LAYERS = ("bronze", "silver", "quarantine")


@dataclass(frozen=True)
class Lake:
    settings: Settings
    env: dict[str, str]              # the namespace's environment (its topics and bucket)
    workdir: Path
    runs: tuple[list[str], ...]      # the producer runs' arguments: day 1, day 2, the late run
    records: tuple[tuple[SimRecord, ...], ...]  # what each run sent, in order (stack.expected_records)
    redelivered: tuple[SimRecord, ...]          # day-2 trades delivered again before stream run 2
    versions: dict[str, dict[str, int]]         # step -> layer -> Delta version after it
    stream_logs: tuple[Path, Path]
    accounted: dict                  # report.account() of trades after stream run 2, before reconcile
    reconciled: dict                 # reconcile.py's summary (--json) of its run

    def all_records(self) -> tuple[SimRecord, ...]:
        return tuple(record for run in self.records for record in run)

    def table(self, spark, layer: str, step: str | None = None):
        """The trades table of a layer as it was after `step` (first_stream, second_stream, reconcile), or now."""
        reader = spark.read.format("delta")
        if step is not None:
            reader = reader.option("versionAsOf", self.versions[step][layer])
        return reader.load(self.settings.lake_uri(f"{layer}/trades"))


def delta_versions(spark, settings: Settings) -> dict[str, int]:
    from delta.tables import DeltaTable

    return {layer: DeltaTable.forPath(spark, settings.lake_uri(f"{layer}/trades")).history(1).first()["version"]
            for layer in LAYERS}


def redeliver(settings: Settings, records: list[SimRecord]) -> None:
    producer = Producer({"bootstrap.servers": settings.kafka.bootstrap_servers, "enable.idempotence": True})
    for record in records:
        producer.produce(settings.kafka.trades_topic, key=record.key, value=record.value)
    assert producer.flush(30) == 0


@pytest.fixture(scope="session")
def lake(spark, run_id, tmp_path_factory) -> Lake:
    from spark_jobs.reconcile import main as reconcile
    from spark_jobs.report import account
    from spark_jobs.transforms import TRADES

    workdir = tmp_path_factory.mktemp("lake")
    env = {**os.environ, **namespace_env(run_id, "lake")}
    settings = load_settings(env)
    create_namespace(settings)
    # Thursday in trade schema v1, Friday in v2 (with the exchange): Silver and Gold hold both versions.
    runs = [producer_args(3000, seed=seed, start_time=day, out_of_order_ratio=0.05, duplicate_ratio=0.02,
                          malformed_ratio=0.02, schema_version=version)
            for version, (seed, day) in enumerate(enumerate(GOLD_DAYS, start=21), start=1)]
    for args in runs:
        run_producer(env, args, workdir)
    logs = (workdir / "stream-1.log", workdir / "stream-2.log")
    run_stream_in_session(spark, env, logs[0])
    versions = {"first_stream": delta_versions(spark, settings)}

    runs.append(producer_args(1000, seed=23, start_time=LATE_RUN_START, late_ratio=0.08, duplicate_ratio=0.05,
                              malformed_ratio=0.02))
    run_producer(env, runs[-1], workdir)
    records = tuple(tuple(expected_records(env, args)) for args in runs)
    # Within the watermark: the dedup state restored from the checkpoint must recognise them.
    redelivered = tuple(r for r in records[1] if r.kind == "trade")[:REDELIVERED]
    redeliver(settings, list(redelivered))
    run_stream_in_session(spark, env, logs[1])
    versions["second_stream"] = delta_versions(spark, settings)
    accounted = account(spark, settings, TRADES)

    # As Airflow's maintenance DAG runs it: the default window (the last maintenance.reconcile_lookback_days days
    # of Bronze, whose date is the Kafka date: today).
    summary = workdir / "reconcile.json"
    with environment(env):
        assert reconcile(["--entity", "trades", "--json", str(summary)]) == 0
    versions["reconcile"] = delta_versions(spark, settings)
    return Lake(settings, env, workdir, tuple(runs), records, redelivered, versions, logs, accounted,
                json.loads(summary.read_text()))


@dataclass(frozen=True)
class GoldWarehouse:
    """A Gold DuckDB warehouse built by `dbt build` on the lake's Silver (the late events reconciled into it)."""
    lake: Lake
    env: dict[str, str]      # the lake's environment plus the dbt variables
    path: Path               # the DuckDB file
    build_stdout: str
    workdir: Path

    @property
    def settings(self) -> Settings:
        return self.lake.settings

    @property
    def records(self) -> tuple[SimRecord, ...]:
        """Every record the producer runs sent (the re-deliveries are the same events again)."""
        return self.lake.all_records()


def dbt(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    result = subprocess.run([DBT, *args, "--project-dir", str(REPO / "dbt_project"), "--profiles-dir",
                             str(REPO / "dbt_project"), "--target-path", env["DBT_TARGET_PATH"]], env=env,
                            cwd=REPO, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
    return result


def dbt_env(env: dict[str, str], workdir: Path) -> dict[str, str]:
    """env plus a warehouse file and dbt target folder of the test's own."""
    return {**env, "DBT_DUCKDB_PATH": str(workdir / "gold.duckdb"), "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
            "DBT_TARGET_PATH": str(workdir / "dbt-target")}


@pytest.fixture(scope="session")
def gold_warehouse(lake, tmp_path_factory) -> GoldWarehouse:
    workdir = tmp_path_factory.mktemp("gold")
    env = dbt_env(lake.env, workdir)
    build = dbt(env, "build", "--target", "local")
    return GoldWarehouse(lake, env, Path(env["DBT_DUCKDB_PATH"]), build.stdout, workdir)


# ---- the fault tests' own stack ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class FaultStack:
    """A second Kafka broker and MinIO server on free ports with a runtime folder of their own: the fault tests
    stop and restart them under load while the rest of the suite keeps using the main stack."""
    overrides: dict[str, str]    # the STOCKLAKE_* settings that point at it
    kafka: object                # scripts.services.Kafka
    minio: object                # scripts.services.MinIO
    endpoint: str                # its S3 endpoint


@pytest.fixture(scope="session")
def fault_stack(tmp_path_factory):
    from scripts.services import Kafka, MinIO

    home = tmp_path_factory.mktemp("fault-stack")
    kafka_port, controller, sasl, minio_port, console = distinct_free_ports(5)
    endpoint = f"http://127.0.0.1:{minio_port}"
    overrides = {"STOCKLAKE_KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{kafka_port}",
                 "STOCKLAKE_SERVICES_KAFKA_CONTROLLER_PORT": str(controller),
                 "STOCKLAKE_SERVICES_KAFKA_SASL_PORT": str(sasl), "STOCKLAKE_LAKE_S3_ENDPOINT": endpoint,
                 "STOCKLAKE_SERVICES_MINIO_CONSOLE_PORT": str(console)}
    settings = load_settings({**os.environ, **overrides})
    kafka, minio = Kafka(settings, home), MinIO(settings, home)
    try:
        minio.up()
        kafka.up()
        yield FaultStack(overrides, kafka, minio, endpoint)
    finally:
        kafka.down()
        minio.down()


@pytest.fixture
def isolated_on_fault_stack(fault_stack, spark, run_id, request, monkeypatch):
    """`isolated`, on the fault stack: fresh topics and bucket there, the settings pointing at them, and the tests'
    SparkSession reading that bucket from the fault stack's MinIO."""
    settings, env = isolate(run_id, request, monkeypatch, fault_stack.overrides)
    route_bucket(spark, settings.lake.bucket, fault_stack.endpoint)
    return settings, env
