"""Fixtures shared by integration tests that need the same expensive build."""
from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from conf.settings import Settings, load_settings
from tests.conftest import namespace_env
from tests.integration.stack import (REPO, create_namespace, producer_args, run_producer,
                                     run_stream_available_now)

DBT = str(REPO / ".venv" / "bin" / "dbt")
# Two trading days (Thursday and Friday) so the daily candles, the previous close and the KPI change exist.
GOLD_DAYS = ("2026-11-19T15:00:00", "2026-11-20T15:00:00")


@dataclass(frozen=True)
class GoldWarehouse:
    """A Gold DuckDB warehouse built by `dbt build` from simulator data streamed into Silver on the real stack."""
    settings: Settings
    env: dict[str, str]      # the namespace's environment (its topics and bucket) plus the dbt variables
    path: Path               # the DuckDB file
    build_stdout: str
    workdir: Path


def dbt(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    result = subprocess.run([DBT, *args, "--project-dir", str(REPO / "dbt_project"), "--profiles-dir",
                             str(REPO / "dbt_project"), "--target-path", env["DBT_TARGET_PATH"]], env=env,
                            cwd=REPO, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
    return result


@pytest.fixture(scope="session")
def gold_warehouse(run_id, tmp_path_factory) -> GoldWarehouse:
    """Simulator (two trading days, 5 % out of order, 2 % duplicates) -> Kafka -> stream -> Silver -> dbt build.

    Built once per run: the Gold tests and the dashboard's browser test read the same warehouse.
    """
    workdir = tmp_path_factory.mktemp("gold")
    overrides = namespace_env(run_id, "gold-warehouse")
    env = {**os.environ, **overrides}
    settings = load_settings(env)
    create_namespace(settings)
    for seed, day in enumerate(GOLD_DAYS, start=21):
        run_producer(env, producer_args(3000, seed=seed, start_time=day, out_of_order_ratio=0.05,
                                        duplicate_ratio=0.02), workdir)
    run_stream_available_now(env, workdir / "stream.log")

    path = workdir / "gold.duckdb"
    env = {**env, "DBT_DUCKDB_PATH": str(path), "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
           "DBT_TARGET_PATH": str(workdir / "dbt-target")}
    build = dbt(env, "build", "--target", "local")
    return GoldWarehouse(settings, env, path, build.stdout, workdir)
