"""Where the DAGs' tasks run, in one place: the checkout, the job environment's python, the pipeline's settings read
through it, and the warehouse target. Airflow lives in its own environment (.venv-airflow), so nothing here imports
the pipeline: settings are read by running the job environment's `python -m conf.settings NAME` (dbt's vars:
`python -m conf.dbt_vars`) in the checkout.

scripts/airflow_env.py sets STOCKLAKE_REPO and STOCKLAKE_JOB_PYTHON for every Airflow process.
"""
from __future__ import annotations

import os
import shlex
import subprocess
from pathlib import Path

REPO = Path(os.environ.get("STOCKLAKE_REPO") or Path(__file__).resolve().parents[3])
JOB_PYTHON = os.environ.get("STOCKLAKE_JOB_PYTHON") or str(REPO / ".venv" / "bin" / "python")
JOB_BIN = Path(JOB_PYTHON).parent
SETTING_TIMEOUT_SECONDS = 60
MAX_ERROR_CHARS = 300


def run_job(argv: list[str], timeout: float) -> str:
    """stdout of a command of the job environment (its python, a script of the checkout), run in the checkout;
    RuntimeError with its last error line when it fails (the jobs print one line naming what is wrong, never a
    secret)."""
    # S603: an argv list (no shell) of the job environment's python.
    result = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, check=False,  # noqa: S603
                            timeout=timeout)
    if result.returncode != 0:
        errors = [line for line in result.stderr.strip().splitlines() if line.strip()]
        what = argv[2] if len(argv) > 2 and argv[1] == "-m" else Path(argv[1]).name
        raise RuntimeError(f"{what} exited with {result.returncode}: "
                           f"{first_line(errors[-1]) if errors else 'no error output'}")
    return result.stdout


def first_line(value: object) -> str:
    """The first line of a message or an error, cut at MAX_ERROR_CHARS: what an alert or a log line shows."""
    lines = str(value).strip().splitlines()
    line = lines[0].strip() if lines else ""
    return line if len(line) <= MAX_ERROR_CHARS else line[:MAX_ERROR_CHARS - 1] + "…"


def job_setting(name: str) -> str:
    """One pipeline setting (conf/pipeline.yaml plus overrides) as the job environment sees it, read now."""
    return run_job([JOB_PYTHON, "-m", "conf.settings", name], SETTING_TIMEOUT_SECONDS).strip()


def setting_in_shell(name: str) -> str:
    """The same setting as a shell fragment, read when a bash task runs."""
    return f"$({shlex.quote(JOB_PYTHON)} -m conf.settings {shlex.quote(name)})"


def dbt_vars_in_shell() -> str:
    """The Gold dbt project's vars, made from the settings (conf/dbt_vars.py), as a shell fragment read when a bash
    task runs: one JSON object for `dbt --vars`."""
    return f"$({shlex.quote(JOB_PYTHON)} -m conf.dbt_vars)"


def warehouse_target() -> str:
    """warehouse.target: local (DuckDB) or snowflake."""
    return job_setting("warehouse.target")
