"""Every 15 minutes: ALTER EXTERNAL TABLE ... REFRESH for each Silver table, so Snowflake sees Spark's new files."""
from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import dag

from stocklake_airflow.assets import WAREHOUSE_SILVER
from stocklake_airflow.jobs import DEFAULT_ARGS
from stocklake_airflow.warehouse import refresh_warehouse_silver


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
one `ALTER EXTERNAL TABLE ... REFRESH` per Silver table (rendered by `scripts/snowflake_setup.py`) through the
Snowflake provider on the `snowflake_default` connection (built from the `SNOWFLAKE_*` environment, see
docs/snowflake.md); the log lists each statement and its query id. When the target is `local` (DuckDB) the refresh
is skipped: the run succeeds with the task marked skipped.
""",
)
def snowflake_refresh():
    refresh_warehouse_silver("refresh_external_tables", timeout=timedelta(minutes=10), outlets=[WAREHOUSE_SILVER])


snowflake_refresh()
