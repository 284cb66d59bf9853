"""The shared lake: one streamed dataset per test run, built the way the pipeline runs, asserted on by many files.

    lake            In the order Airflow and the stream really run: two trading days of simulator trades (v1 and v2
                    events, duplicates, out-of-order and malformed records) -> Kafka -> stream run 1 -> Gold ->
                    three late runs (trades hours and days old behind the watermark, one crossing midnight UTC,
                    re-deliveries, malformed records) and 100 of day 2's trades delivered again byte for byte ->
                    stream run 2 -> Gold -> reconcile (the late events into Silver) -> Gold -> Gold again (nothing
                    new) -> reprocess of day 1 from Bronze -> Gold. The Delta versions after each step are recorded,
                    so a test reads any step's tables exactly (time travel) whatever ran after it; each Gold build
                    (spark_jobs/silver_changes.py, then dbt, as the Gold DAG runs them) is kept as it was built.
    gold_warehouse  the lake's Gold warehouse after its last build: the Gold tests and the dashboard's browser test.
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
import tempfile
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import duckdb
import pandas as pd
import pytest
from confluent_kafka import Producer

from conf.dbt_vars import dbt_vars
from conf.settings import Settings, load_settings
from producer.simulator import SimRecord
from tests.conftest import isolate, namespace_env
from tests.integration.secured_stream import secured_stream  # noqa: F401 (a session fixture of these tests)
from tests.integration.stack import (REPO, create_namespace, distinct_free_ports, environment, expected_records,
                                     producer_args, route_bucket, run_producer, run_stream_in_session)

DBT = str(REPO / ".venv" / "bin" / "dbt")
# Wednesday 25 and Friday 27 November 2026: Thursday is Thanksgiving (closed), so Friday's previous trading day is
# Wednesday, and Friday is a half day (the close at 13:00 New York, 18:00 UTC). Each day's 3,000 trades span 20
# minutes across a session's end: Wednesday's 16:00 close (20:50-21:10 UTC), Friday's 13:00 one (17:50-18:10 UTC).
GOLD_DAYS = ("2026-11-25T20:50:00", "2026-11-27T17:50:00")
DAY_RATE = 2.5
# Late runs just after Friday's trades: each stamps 10% of its trades late_by seconds before its clock, behind the
# watermark the first stream run left (Friday 18:10 - 10 minutes): hours old (Friday 16:11, the half day's
# session), days old (Wednesday 21:00, into minutes, hours and a day Gold has built), and across midnight UTC
# (Thursday 00:30 UTC, Wednesday 19:30 in New York: Wednesday's trading date). Their other trades are on time.
LATE_RUNS = (("2026-11-27T18:11:00", 7_200), ("2026-11-27T18:12:00", 162_720), ("2026-11-27T18:13:00", 150_180))
REDELIVERED = 100
REPROCESSED_DAY = "2026-11-25"
# The backfill's daily bars (a file, as a user loads history): every XNYS session from June to Wednesday 25 November,
# which the stream has too (its own trades win there).
BACKFILL_FROM, BACKFILL_TO = "2026-06-01", "2026-11-25"
LAYERS = ("bronze", "silver", "quarantine")
GOLD_TABLES = ("fct_candles_1m", "fct_candles_1h", "fct_candles_1d", "fct_session_candles_1d", "fct_symbol_kpi",
               "fct_daily_bars", "fct_daily_analytics", "fct_return_correlations")


@dataclass(frozen=True)
class GoldBuild:
    """One Gold build of the lake as it was: the change index run, then dbt."""
    after: str                          # the lake step it followed (a key of Lake.versions)
    indexed: dict                       # spark_jobs/silver_changes.py's result
    tables: dict[str, pd.DataFrame]     # GOLD_TABLES as built
    rewritten: dict[str, int]           # candle table -> rows this build wrote (a newer silver_version)
    stdout: str


@dataclass(frozen=True)
class Lake:
    settings: Settings
    env: dict[str, str]              # the namespace's environment (its topics and bucket)
    workdir: Path
    runs: tuple[list[str], ...]      # the producer runs' arguments: day 1, day 2, the late runs
    records: tuple[tuple[SimRecord, ...], ...]  # what each run sent, in order (stack.expected_records)
    redelivered: tuple[SimRecord, ...]          # day-2 trades delivered again before stream run 2
    versions: dict[str, dict[str, int]]         # step -> layer -> Delta version after it
    stream_logs: tuple[Path, Path]
    accounted: dict                  # report.account() of trades after stream run 2, before reconcile
    reconciled: dict                 # reconcile.py's summary (--json) of its run
    gold: tuple[GoldBuild, ...]      # every Gold build, in order
    gold_env: dict[str, str]         # env plus the warehouse file and dbt target folder
    backfilled: pd.DataFrame         # the daily bars the backfill loaded (symbol, date, open, high, low, close, volume)

    @property
    def late_runs(self) -> tuple[tuple[SimRecord, ...], ...]:
        return self.records[2:]

    def all_records(self) -> tuple[SimRecord, ...]:
        return tuple(record for run in self.records for record in run)

    def table(self, spark, layer: str, step: str | None = None):
        """The trades table of a layer as it was after `step` (first_stream, second_stream, reconcile, reprocess),
        or now."""
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


def late_run(env: dict[str, str], start: str, late_by_seconds: int, seed: int) -> tuple[dict, list[str]]:
    """(environment, producer arguments) of a late run: its late trades stamped late_by_seconds before the clock."""
    return ({**env, "STOCKLAKE_SIMULATOR_LATE_BY_SECONDS": str(late_by_seconds)},
            producer_args(300, seed=seed, start_time=start, late_ratio=0.1, duplicate_ratio=0.05,
                          malformed_ratio=0.02))


def produce(runs: list[tuple[dict, list[str]]], workdir: Path) -> tuple[tuple[SimRecord, ...], ...]:
    for run_env, args in runs:
        run_producer(run_env, args, workdir)
    return tuple(tuple(expected_records(run_env, args)) for run_env, args in runs)


@pytest.fixture(scope="session")
def lake(spark, run_id, tmp_path_factory) -> Lake:
    from spark_jobs.report import account
    from spark_jobs.lib.transforms import TRADES

    workdir = tmp_path_factory.mktemp("lake")
    env = {**os.environ, **namespace_env(run_id, "lake")}
    settings = load_settings(env)
    create_namespace(settings)
    gold_env = dbt_env(env, workdir)
    gold = []
    # Wednesday in trade schema v1, Friday in v2 (with the exchange): Silver and Gold hold both versions.
    runs = [(env, producer_args(3000, seed=seed, start_time=day, rate=DAY_RATE, out_of_order_ratio=0.05,
                                duplicate_ratio=0.02, malformed_ratio=0.02, schema_version=version))
            for version, (seed, day) in enumerate(enumerate(GOLD_DAYS, start=21), start=1)]
    records = produce(runs, workdir)
    logs = (workdir / "stream-1.log", workdir / "stream-2.log")
    run_stream_in_session(spark, env, logs[0])
    versions = {"first_stream": delta_versions(spark, settings)}
    gold.append(build_gold(gold_env, "first_stream", "build"))

    late = [late_run(env, start, late_by, seed) for seed, (start, late_by) in enumerate(LATE_RUNS, start=23)]
    records += produce(late, workdir)
    runs += late
    # Within the watermark (Friday's last on-time trades): the dedup state restored from the checkpoint must
    # recognise them.
    redelivered = tuple(r for r in records[1] if r.kind == "trade")[-REDELIVERED:]
    redeliver(settings, list(redelivered))
    run_stream_in_session(spark, env, logs[1])
    versions["second_stream"] = delta_versions(spark, settings)
    accounted = account(spark, settings, TRADES)
    gold.append(build_gold(gold_env, "second_stream", "run"))

    reconciled = reconcile_late_rows(env, workdir)
    versions["reconcile"] = delta_versions(spark, settings)
    gold.append(build_gold(gold_env, "reconcile", "run"))
    gold.append(build_gold(gold_env, "reconcile", "run"))  # nothing new in Silver

    backfilled = backfill_history(spark, env, settings, workdir)
    reprocess_day(env, workdir)
    versions["reprocess"] = delta_versions(spark, settings)
    gold.append(build_gold(gold_env, "reprocess", "build"))
    return Lake(settings, env, workdir, tuple(args for _, args in runs), records, redelivered, versions, logs,
                accounted, reconciled, tuple(gold), gold_env, backfilled)


def reconcile_late_rows(env: dict[str, str], workdir: Path) -> dict:
    """reconcile.py as Airflow's maintenance DAG runs it: the default window (the last
    maintenance.reconcile_lookback_days days of Bronze, whose date is the Kafka date: today)."""
    from spark_jobs.reconcile import main as reconcile

    summary = workdir / "reconcile.json"
    with environment(env):
        assert reconcile(["--entity", "trades", "--json", str(summary)]) == 0
    return json.loads(summary.read_text())


def backfill_history(spark, env: dict[str, str], settings: Settings, workdir: Path) -> pd.DataFrame:
    """backfill.py --file of seeded random-walk daily bars for every simulator symbol and XNYS session from
    BACKFILL_FROM to BACKFILL_TO, as the historical_backfill DAG runs it; the bars loaded."""
    import random

    from spark_jobs.backfill import main as backfill

    symbols = settings.simulator.symbols
    sessions = pd.read_csv(REPO / "dbt_project" / "seeds" / "exchange_sessions.csv")
    days = sessions[(sessions["exchange"] == "XNYS") & sessions["session_date"].between(BACKFILL_FROM, BACKFILL_TO)]
    generator, rows = random.Random(7), []
    for symbol in symbols:
        close = generator.uniform(50, 500)
        for day in days["session_date"]:
            open_ = round(close * (1 + generator.gauss(0, 0.01)), 2)
            close = round(open_ * (1 + generator.gauss(0, 0.02)), 2)
            high, low = round(max(open_, close) * 1.01, 2), round(min(open_, close) * 0.99, 2)
            rows.append((symbol, day, open_, high, low, close, float(generator.randint(10_000, 5_000_000))))
    bars = pd.DataFrame(rows, columns=["symbol", "date", "open", "high", "low", "close", "volume"])
    path = workdir / "daily-bars.csv"
    bars.to_csv(path, index=False)
    with environment(env):
        assert backfill(["--from", BACKFILL_FROM, "--to", BACKFILL_TO, "--symbols", ",".join(symbols),
                         "--file", str(path), "--json", str(workdir / "backfill.json")], spark) == 0
    return bars


def reprocess_day(env: dict[str, str], workdir: Path) -> dict:
    """reprocess.py of REPROCESSED_DAY from Bronze, as the reprocess DAG runs it (a day later: its hours closed)."""
    from spark_jobs.reprocess import main as reprocess

    summary = workdir / "reprocess.json"
    tomorrow = (datetime.now(timezone.utc) + timedelta(days=1)).isoformat()
    with environment(env):
        assert reprocess(["--from", REPROCESSED_DAY, "--to", REPROCESSED_DAY, "--entity", "trades",
                          "--json", str(summary), "--now", tomorrow]) == 0
    return json.loads(summary.read_text())


def build_gold(env: dict[str, str], after: str, command: str) -> GoldBuild:
    """What the Gold DAG runs: the change index, then dbt (`build`, or `run`: the models alone, when a build in
    between needs no data tests); the Gold tables as built, and the candle rows the build wrote."""
    warehouse = Path(env["DBT_DUCKDB_PATH"])
    before = gold_tables(warehouse) if warehouse.exists() else {}
    indexed = index_silver_changes(env)
    result = dbt(env, command, "--target", "local")
    tables = gold_tables(warehouse)
    rewritten = {name: int((table["silver_version"] > before[name]["silver_version"].max()).sum()
                           if name in before else len(table))
                 for name, table in tables.items() if "silver_version" in table}
    return GoldBuild(after, indexed, tables, rewritten, result.stdout)


def gold_tables(warehouse: Path) -> dict[str, pd.DataFrame]:
    with duckdb.connect(str(warehouse), read_only=True) as con:
        return {name: con.sql(f"select * from {name}").df() for name in GOLD_TABLES}


@dataclass(frozen=True)
class GoldWarehouse:
    """The lake's Gold DuckDB warehouse after its last build (`dbt build`, after the reprocess)."""
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
    """dbt in the environment `env` names, given the vars its settings make (conf/dbt_vars.py), as every dbt run is.
    These lakes' streams run trades only (run_stream_in_session's default): there is no silver/quotes to read."""
    variables = {**dbt_vars(load_settings(env)), "lake_quotes_enabled": False}
    result = subprocess.run([DBT, *args, "--project-dir", str(REPO / "dbt_project"), "--profiles-dir",
                             str(REPO / "dbt_project"), "--target-path", env["DBT_TARGET_PATH"],
                             "--vars", json.dumps(variables)], env=env, cwd=REPO, capture_output=True, text=True,
                            timeout=900)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
    return result


def index_silver_changes(env: dict[str, str]) -> dict:
    """spark_jobs/silver_changes.py in the environment `env` names (as the Gold DAG runs it before dbt); its result."""
    from spark_jobs.silver_changes import main

    with tempfile.TemporaryDirectory() as tmp, environment(env):
        summary = Path(tmp) / "changes.json"
        assert main(["--json", str(summary)]) == 0
        return json.loads(summary.read_text())


def dbt_env(env: dict[str, str], workdir: Path) -> dict[str, str]:
    """env plus a warehouse file and dbt target folder of the test's own."""
    return {**env, "DBT_DUCKDB_PATH": str(workdir / "gold.duckdb"), "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
            "DBT_TARGET_PATH": str(workdir / "dbt-target")}


@pytest.fixture(scope="session")
def gold_warehouse(lake) -> GoldWarehouse:
    return GoldWarehouse(lake, lake.gold_env, Path(lake.gold_env["DBT_DUCKDB_PATH"]), lake.gold[-1].stdout,
                         lake.workdir)


# ---- the fault tests' own stack ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class FaultStack:
    """A second Kafka broker and MinIO server on free ports with a runtime folder of their own: the fault tests
    stop and restart them under load while the rest of the suite keeps using the main stack."""
    overrides: dict[str, str]    # the STOCKLAKE_* settings that point at it
    kafka: object                # scripts.services.Kafka
    minio: object                # scripts.services.MinIO
    endpoint: str                # its S3 endpoint


# Module-scoped: only test_faults.py uses it, and its idle broker and object store would otherwise take CPU from the
# other worker until the session ends.
@pytest.fixture(scope="module")
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
