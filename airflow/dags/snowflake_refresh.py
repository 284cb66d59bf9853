"""Every 15 minutes: ALTER EXTERNAL TABLE ... REFRESH for each Silver table, so Snowflake sees Spark's new files."""
from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import dag, task

from stocklake_airflow.assets import WAREHOUSE_SILVER
from stocklake_airflow.jobs import DEFAULT_ARGS, JOB_PYTHON, job_command, warehouse_target


@dag(
    dag_id="snowflake_refresh",
    schedule="*/15 * * * *",
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    dagrun_timeout=timedelta(minutes=14),
    tags=["snowflake", "warehouse"],
    doc_md="""
### Snowflake external-table refresh
Delta external tables in Snowflake never refresh by themselves. When `warehouse.target` is `snowflake`, this runs
`scripts/snowflake_setup.py refresh` (one `ALTER EXTERNAL TABLE ... REFRESH` per Silver table; connection settings
and secrets from the `SNOWFLAKE_*` environment, see docs/snowflake.md). When the target is `local` (DuckDB) the
refresh is skipped: the run succeeds with the task marked skipped.
""",
)
def snowflake_refresh():
    @task.short_circuit
    def warehouse_is_snowflake() -> bool:
        return warehouse_target() == "snowflake"

    refresh = job_command("refresh_external_tables",
                          f"{JOB_PYTHON} scripts/snowflake_setup.py refresh",
                          timeout=timedelta(minutes=10), outlets=[WAREHOUSE_SILVER])
    warehouse_is_snowflake() >> refresh


snowflake_refresh()
