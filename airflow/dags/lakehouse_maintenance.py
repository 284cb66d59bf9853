"""Daily: put late events into Silver, delete Bronze past its retention, then VACUUM old files."""
from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import chain, dag

from stocklake_airflow.assets import SILVER_TABLES
from stocklake_airflow.jobs import DEFAULT_ARGS, spark_job


@dag(
    dag_id="lakehouse_maintenance",
    schedule="40 2 * * *",
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    dagrun_timeout=timedelta(hours=4),
    tags=["lakehouse", "maintenance", "spark"],
    doc_md="""
### Lakehouse maintenance (daily, 02:40 UTC)
1. `reconcile` (`spark_jobs/reconcile.py`): valid Bronze events missing from Silver (late arrivals the stream's
   watermark dropped) are MERGEd into Silver; idempotent. Updates the Silver assets, so Gold rebuilds.
2. `retention` (`spark_jobs/retention.py`): deletes Bronze (and quarantine) partitions older than
   `maintenance.bronze_retention_days` (730).
3. `vacuum` (`spark_jobs/vacuum.py`): removes files no table version younger than
   `maintenance.vacuum_retention_hours` (168) needs.
""",
)
def lakehouse_maintenance():
    chain(
        spark_job("reconcile", "reconcile.py", timeout=timedelta(hours=1), outlets=SILVER_TABLES),
        spark_job("retention", "retention.py", timeout=timedelta(hours=1)),
        spark_job("vacuum", "vacuum.py", timeout=timedelta(hours=1)),
    )


lakehouse_maintenance()
