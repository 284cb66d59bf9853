"""Fixtures shared by integration tests that need the same expensive build."""
from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from conf.settings import Settings, load_settings
from producer.simulator import SimRecord
from tests.conftest import namespace_env
from tests.integration.stack import (REPO, create_namespace, expected_records, producer_args, run_producer,
                                     run_stream_available_now)

DBT = str(REPO / ".venv" / "bin" / "dbt")
# Two trading days (Thursday and Friday) so the daily candles, the previous close and the KPI change exist.
GOLD_DAYS = ("2026-11-19T15:00:00", "2026-11-20T15:00:00")
# A third run a minute after Friday's: its late trades are stamped 30 minutes before the clock (14:31 UTC, the
# Friday session's first minutes), behind the watermark the first stream run left (Friday 15:00 - 10 minutes).
LATE_RUN_START = "2026-11-20T15:01:00"


@dataclass(frozen=True)
class GoldWarehouse:
    """A Gold DuckDB warehouse built by `dbt build` from simulator data streamed into Silver on the real stack,
    the late events the watermark dropped put into Silver by the reconcile job first."""
    settings: Settings
    env: dict[str, str]      # the namespace's environment (its topics and bucket) plus the dbt variables
    path: Path               # the DuckDB file
    build_stdout: str
    workdir: Path
    records: tuple[SimRecord, ...]  # every record the producer runs sent, in order (stack.expected_records)
    accounted: dict          # report.account() of trades after the stream runs, before reconcile
    reconciled: dict         # reconcile.py's summary (--json) of its run before dbt build


def dbt(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    result = subprocess.run([DBT, *args, "--project-dir", str(REPO / "dbt_project"), "--profiles-dir",
                             str(REPO / "dbt_project"), "--target-path", env["DBT_TARGET_PATH"]], env=env,
                            cwd=REPO, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
    return result


@pytest.fixture(scope="session")
def gold_warehouse(spark, run_id, tmp_path_factory) -> GoldWarehouse:
    """Simulator (two trading days, 5 % out of order, 2 % duplicates) -> Kafka -> stream -> Silver; then a run
    with 8 % late events (beyond the watermark: the stream drops and counts them), re-deliveries and malformed
    records -> stream; reconcile.py puts the late events into Silver -> dbt build.

    Built once per run: the Gold tests and the dashboard's browser test read the same warehouse.
    """
    from spark_jobs.reconcile import main as reconcile
    from spark_jobs.report import account
    from spark_jobs.transforms import TRADES

    workdir = tmp_path_factory.mktemp("gold")
    overrides = namespace_env(run_id, "gold-warehouse")
    env = {**os.environ, **overrides}
    settings = load_settings(env)
    create_namespace(settings)
    # Thursday in trade schema v1, Friday in v2 (with the exchange): Gold is built over both versions.
    runs = [producer_args(3000, seed=seed, start_time=day, out_of_order_ratio=0.05, duplicate_ratio=0.02,
                          schema_version=version)
            for version, (seed, day) in enumerate(enumerate(GOLD_DAYS, start=21), start=1)]
    for args in runs:
        run_producer(env, args, workdir)
    run_stream_available_now(env, workdir / "stream.log")
    runs.append(producer_args(1000, seed=23, start_time=LATE_RUN_START, late_ratio=0.08, duplicate_ratio=0.05,
                              malformed_ratio=0.02))
    run_producer(env, runs[-1], workdir)
    run_stream_available_now(env, workdir / "stream.log")

    accounted = account(spark, settings, TRADES)
    # As test_reconcile.py runs it: in process on the session's Spark, the default window (the last
    # maintenance.reconcile_lookback_days days of Bronze, whose date is the Kafka date: today).
    summary_path = workdir / "reconcile.json"
    with pytest.MonkeyPatch.context() as patch:
        for key, value in overrides.items():
            patch.setenv(key, value)
        assert reconcile(["--entity", "trades", "--json", str(summary_path)]) == 0
    reconciled = json.loads(summary_path.read_text())

    path = workdir / "gold.duckdb"
    env = {**env, "DBT_DUCKDB_PATH": str(path), "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
           "DBT_TARGET_PATH": str(workdir / "dbt-target")}
    build = dbt(env, "build", "--target", "local")
    records = tuple(record for args in runs for record in expected_records(env, args))
    return GoldWarehouse(settings, env, path, build.stdout, workdir, records=records, accounted=accounted,
                         reconciled=reconciled)
