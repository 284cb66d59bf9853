"""How the DAGs call the pipeline's jobs: every task is a command of the job environment (.venv), never code of its
own. Spark jobs go through SparkSubmitOperator with the job environment's spark-submit and jars; plain Python jobs
and dbt run as bash commands in the checkout. Airflow lives in its own environment (.venv-airflow), so nothing here
imports the pipeline.

Where the checkout and the job environment are, and the settings read through it: stocklake_airflow.environment.
Secrets never appear here: S3 credentials and the Finnhub key are in
the environment the tasks inherit, Slack, Spark and Snowflake settings in Airflow connections. SQL on Snowflake goes
through the Snowflake provider (stocklake_airflow.warehouse), not through a command.
"""
from __future__ import annotations

import shlex
from datetime import timedelta

from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator
from airflow.providers.standard.operators.bash import BashOperator

from stocklake_airflow.alerts import slack_failure_alert
from stocklake_airflow.environment import JOB_BIN, JOB_PYTHON, REPO, dbt_vars_in_shell, setting_in_shell
# The Airflow connection naming the Spark master (local[2] locally; spark://, k8s://, yarn in production).
SPARK_CONN_ID = "spark_default"

OWNER = "data-platform"
DEFAULT_ARGS = {
    "owner": OWNER,
    "retries": 2,
    "retry_delay": timedelta(minutes=2),
    "retry_exponential_backoff": True,
    # Tasks that set no timeout of their own (the small decision tasks) still cannot hang a run.
    "execution_timeout": timedelta(minutes=10),
    "on_failure_callback": slack_failure_alert,
}


def spark_job(task_id: str, script: str, args: list[str] | None = None, *, timeout: timedelta,
              **kwargs) -> SparkSubmitOperator:
    """spark-submit spark_jobs/<script> with the job environment's Spark, on the spark_default connection's master."""
    return SparkSubmitOperator(
        task_id=task_id,
        conn_id=SPARK_CONN_ID,
        application=str(REPO / "spark_jobs" / script),
        application_args=[] if args is None else args,
        name=f"stocklake-{task_id}",
        driver_memory="2g",
        conf={"spark.ui.enabled": "false"},
        execution_timeout=timeout,
        **kwargs,
    )


def job_command(task_id: str, command: str, *, timeout: timedelta, **kwargs) -> BashOperator:
    """A shell command run in the checkout with the job environment first on PATH (python, dbt)."""
    return BashOperator(
        task_id=task_id,
        bash_command=f"set -euo pipefail; cd {shlex.quote(str(REPO))}; PATH={shlex.quote(str(JOB_BIN))}:$PATH; "
                     + command,
        execution_timeout=timeout,
        **kwargs,
    )


def python_job(task_id: str, module: str, args: str = "", *, timeout: timedelta, **kwargs) -> BashOperator:
    """python -m <module> <args> in the job environment."""
    return job_command(task_id, f"{shlex.quote(JOB_PYTHON)} -m {module} {args}".rstrip(), timeout=timeout,
                       **kwargs)


def index_silver_changes() -> BashOperator:
    """spark_jobs/silver_changes.py: what changed in Silver since the last index run, for Gold's incremental
    candles. Runs before every Gold build (and before the Snowflake refresh, which must register the index first:
    stocklake_airflow.warehouse)."""
    return python_job("index_silver_changes", "spark_jobs.silver_changes", timeout=timedelta(minutes=20))


def dbt_build(task_id: str, *, timeout: timedelta, **kwargs) -> BashOperator:
    """dbt build of the Gold project on the warehouse.target (incremental: each build rebuilds what changed), given
    its vars from the settings (read first, so a bad setting fails the task before dbt starts).

    It follows the warehouse refresh, which is skipped on the local target: none_failed runs it after a skip, never
    after a failure."""
    return job_command(
        task_id,
        "export DBT_SEND_ANONYMOUS_USAGE_STATS=false; "
        f"export DBT_DUCKDB_PATH=\"${{DBT_DUCKDB_PATH:-{setting_in_shell('warehouse.duckdb_path')}}}\"; "
        'mkdir -p "$(dirname "$DBT_DUCKDB_PATH")"; '
        f'dbt_vars="{dbt_vars_in_shell()}"; '
        f"dbt build --project-dir dbt_project --profiles-dir dbt_project --target {setting_in_shell('warehouse.target')} "
        '--vars "$dbt_vars"',
        timeout=timeout, trigger_rule="none_failed", **kwargs)
