"""Gold: dbt build on the configured warehouse, after fresh Silver (asset events) or every 30 minutes; then a
summary to Slack."""
from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import dag
from airflow.timetables.assets import AssetOrTimeSchedule
from airflow.timetables.trigger import CronTriggerTimetable

from stocklake_airflow.alerts import success_notice
from stocklake_airflow.assets import GOLD, SILVER_BARS, SILVER_TRADES, WAREHOUSE_SILVER
from stocklake_airflow.jobs import DEFAULT_ARGS, dbt_build, index_silver_changes
from stocklake_airflow.warehouse import grant_bi_select, refresh_warehouse_silver


@dag(
    dag_id="gold_dbt",
    # Data-aware: reconcile, compaction, a backfill or a Snowflake refresh changing Silver trigger a build; the cron
    # keeps Gold within half an hour of the stream, which writes Silver continuously without telling Airflow.
    schedule=AssetOrTimeSchedule(
        timetable=CronTriggerTimetable("7,37 * * * *", timezone="UTC"),
        assets=(SILVER_TRADES | SILVER_BARS | WAREHOUSE_SILVER),
    ),
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    dagrun_timeout=timedelta(minutes=50),
    tags=["gold", "dbt", "warehouse"],
    doc_md="""
### Gold (dbt)
`dbt build` of the dbt project (models, seeds, data tests, unit tests) on the target named by `warehouse.target`:
`local` builds DuckDB (`DBT_DUCKDB_PATH`, else the setting `warehouse.duckdb_path`) reading Silver from the lake;
`snowflake` builds the Gold schema in Snowflake from the external tables. First `index_silver_changes`
(`python -m spark_jobs.silver_changes`) records which (symbol, minute) buckets Silver's commits changed since its
last run (Delta's change data feed), and on Snowflake `refresh_warehouse_silver` refreshes the external tables
(the change index first; skipped on the local target, and the build runs after a skip); the candle models then rebuild exactly those buckets at every grain, however old:
late rows the stream writes, reconcile's inserts, a reprocessed day. Compaction changes no row and rebuilds
nothing.

On Snowflake, `grant_bi_select` then grants the BI role (`SNOWFLAKE_BI_ROLE`, docs/powerbi.md) SELECT on each
mart through the Snowflake provider (a mart dbt rebuilt keeps its grants: `copy_grants`); skipped locally or
without a BI role.

After a successful build, `gold_summary_notice` posts Gold's rows per candle table, the trades behind them and
the newest trade's age (`python -m dashboard.gold_summary`) to the `slack_alerts` connection, where failures go;
`alerts.success_notices: false` turns it off. An unreachable Slack is logged and never fails the run.
""",
)
def gold_dbt():
    build = dbt_build("dbt_build", timeout=timedelta(minutes=40), outlets=[GOLD])
    index_silver_changes() >> refresh_warehouse_silver() >> build
    build >> [grant_bi_select(),
              success_notice("gold_summary_notice", "dashboard.gold_summary", timeout=timedelta(minutes=5))]

gold_dbt()
