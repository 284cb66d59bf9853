"""Running Airflow from tests: the test environment has no Airflow (it lives in .venv-airflow, see
airflow/pyproject.toml), so everything here runs Airflow's CLI or small scripts in that environment, as subprocesses,
with the environment scripts/airflow_env.py computes for `make airflow`.

    env = airflow_env(airflow_home)                    # airflow_home: the session fixture below (migrated once)
    result = airflow(["dags", "list"], env)
    report = dag_report(env)                           # airflow/check_dags.py: import errors and every DAG's shape
    runs, output = run_dags(plan, env, tmp_path)       # airflow/run_dags.py: DAGs run in order, in one process

The `airflow_home` fixture (import it into the test module: `from tests.integration.airflow_harness import
airflow_home  # noqa: F401`) is one AIRFLOW_HOME with a migrated SQLite database per test session, because
`airflow db migrate` takes ~15 s. Scripts run with `python -P` (no script folder or working directory on sys.path):
like every Airflow process, they see `stocklake_airflow` only once `import airflow` has put the plugins folder there.
"""
from __future__ import annotations

import json
import os
import subprocess
import tempfile
from pathlib import Path
from typing import Mapping, Sequence

import pytest

from scripts.airflow_env import airflow_environment

REPO = Path(__file__).resolve().parents[2]
AIRFLOW_VENV = REPO / ".venv-airflow"
AIRFLOW_BIN = AIRFLOW_VENV / "bin" / "airflow"
AIRFLOW_PYTHON = AIRFLOW_VENV / "bin" / "python"
CHECK_DAGS = REPO / "airflow" / "check_dags.py"
RUN_DAGS = REPO / "airflow" / "run_dags.py"
# Tests never start the API server; a port nobody listens on keeps a stray call from reaching a developer's Airflow.
TEST_PORT = 18099


def airflow_env(tmp_home: Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The Airflow environment with AIRFLOW_HOME = tmp_home, built (like `make airflow`'s) from this process's
    environment with `extra` on top: settings overrides (STOCKLAKE_*), DBT_DUCKDB_PATH, etc.

    Hermetic for Airflow: no AIRFLOW* variable of the developer's shell is used (an exported AIRFLOW_HOME, a real
    Slack webhook). `extra` may be a whole environment (the `isolated` fixture's): its PATH is reordered and its
    PYTHONPATH dropped as for `make airflow`, and of its AIRFLOW* variables only those that differ from this
    process's environment apply, i.e. the ones the test set (AIRFLOW__CORE__DAGS_FOLDER, AIRFLOW_CONN_SLACK_ALERTS).
    """
    extra = dict(extra or {})
    explicit = {key: value for key, value in extra.items()
                if key.startswith("AIRFLOW") and os.environ.get(key) != value}
    base = {key: value for key, value in {**os.environ, **extra}.items() if not key.startswith("AIRFLOW")}
    env = airflow_environment(REPO, airflow_home=Path(tmp_home), port=TEST_PORT, base=base)
    env.update(explicit)
    return env


def airflow(args: Sequence[str], env: Mapping[str, str], timeout: float = 300) -> subprocess.CompletedProcess:
    """.venv-airflow/bin/airflow <args> in env, from the checkout; output captured as text, exit code not checked."""
    return subprocess.run([str(AIRFLOW_BIN), *args], env=dict(env), cwd=REPO, capture_output=True, text=True,
                          timeout=timeout)


def airflow_python(script: str | Path, args: Sequence[str], env: Mapping[str, str],
                   timeout: float = 300) -> subprocess.CompletedProcess:
    """.venv-airflow/bin/python <script> <args> in env (script: a path, or code when it contains a newline)."""
    python = [str(AIRFLOW_PYTHON), "-P"]
    command = [*python, "-c", script] if "\n" in str(script) else [*python, str(script)]
    return subprocess.run([*command, *args], env=dict(env), cwd=REPO, capture_output=True, text=True,
                          timeout=timeout)


def dag_report(env: Mapping[str, str], dags_folder: Path | None = None, timeout: float = 300) -> dict:
    """airflow/check_dags.py's JSON for the DAG folder of env (or dags_folder): import errors and every DAG."""
    with tempfile.TemporaryDirectory(prefix="dag-report-") as tmp:
        out = Path(tmp) / "report.json"
        args = ["--json", str(out), *(["--dags-folder", str(dags_folder)] if dags_folder else [])]
        result = airflow_python(CHECK_DAGS, args, env, timeout)
        assert result.returncode in (0, 1) and out.exists(), \
            f"check_dags.py failed ({result.returncode}):\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}"
        return json.loads(out.read_text())


def run_dags(plan: Sequence[Mapping], env: Mapping[str, str], folder: Path,
             timeout: float = 1800) -> tuple[list[dict], str]:
    """airflow/run_dags.py on plan (its JSON list of runs) in one Airflow process: each run's result, and the
    process's output (the task logs, also kept in folder/dag-runs.log). Asserts the process finished with the
    results written (exit 0 or 1)."""
    plan_file, results_file = folder / "dag-plan.json", folder / "dag-runs.json"
    plan_file.write_text(json.dumps(list(plan)))
    results_file.unlink(missing_ok=True)
    result = airflow_python(RUN_DAGS, [str(plan_file), "--json", str(results_file)], env, timeout)
    output = result.stdout + result.stderr
    with (folder / "dag-runs.log").open("a") as log:
        log.write(output)
    assert result.returncode in (0, 1) and results_file.exists(), \
        f"run_dags.py failed ({result.returncode}):\n{output[-6000:]}"
    return json.loads(results_file.read_text()), output


def migrate(env: Mapping[str, str]) -> None:
    result = airflow(["db", "migrate"], env, timeout=600)
    assert result.returncode == 0, f"airflow db migrate failed:\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}"


@pytest.fixture(scope="session")
def airflow_home(tmp_path_factory) -> Path:
    """An AIRFLOW_HOME with a migrated database, shared by the session's Airflow tests."""
    if not AIRFLOW_BIN.exists():
        pytest.fail(f"{AIRFLOW_BIN} is missing: run `make airflow-setup`")
    home = tmp_path_factory.mktemp("airflow-home")
    migrate(airflow_env(home))
    return home
