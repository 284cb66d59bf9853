"""On demand: rebuild Silver (then Gold) for a date range from Bronze after validation or parsing changed."""
from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import Param, dag, task

from stocklake_airflow.assets import GOLD, SILVER_TABLES
from stocklake_airflow.jobs import DEFAULT_ARGS, dbt_build, index_silver_changes, spark_job
from stocklake_airflow.warehouse import grant_bi_select, refresh_warehouse_silver


@dag(
    dag_id="reprocess",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    dagrun_timeout=timedelta(hours=6),
    tags=["gold", "lakehouse", "spark"],
    params={
        "from_date": Param(type="string", format="date", description="first date to rebuild (YYYY-MM-DD)"),
        "to_date": Param(type="string", format="date", description="last date to rebuild (YYYY-MM-DD), inclusive"),
        "entity": Param("", enum=["", "trades", "quotes"], description="one event stream; empty: all of them"),
    },
    doc_md="""
### Reprocess (triggered by hand, with parameters)
After a change to validation or parsing (a contract rule in `conf/schemas`, a new schema version, a parser fix),
runs `spark_jobs/reprocess.py --from from_date --to to_date`: Silver's partitions of those dates are rebuilt from
Bronze with the stream's own transforms and replaced atomically (Delta replaceWhere), and quarantine follows for
the same records. Only closed hours are touched, so the stream keeps running on the current hour. Running it twice
gives the same tables. Then the Silver change index records what the replacement changed, on Snowflake the
external tables are refreshed, and `dbt build` rebuilds exactly the Gold buckets of the changed rows, however old;
on Snowflake `grant_bi_select` then grants the BI role SELECT on each mart (through the Snowflake provider).
""",
)
def reprocess():
    @task
    def reprocess_arguments(params: dict) -> list[str]:
        # Only turns the form into the job's command line; the job validates the dates.
        args = ["--from", params["from_date"], "--to", params["to_date"]]
        return args + (["--entity", params["entity"]] if params["entity"] else [])

    rebuild = spark_job("rebuild_silver", "reprocess.py", reprocess_arguments(), timeout=timedelta(hours=4),
                        outlets=SILVER_TABLES)
    # Gold rebuilds the reprocessed buckets only: the change index names every row the replacement removed or
    # added, and Snowflake's external tables see them once refreshed (the index first).
    gold = dbt_build("rebuild_gold", timeout=timedelta(hours=1), outlets=[GOLD])
    rebuild >> index_silver_changes() >> refresh_warehouse_silver() >> gold >> grant_bi_select()


reprocess()
