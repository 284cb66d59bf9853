"""Hourly: compact the lake's closed hour partitions (Delta OPTIMIZE, Z-ORDER by symbol)."""
from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import dag

from stocklake_airflow.assets import BRONZE_TABLES, SILVER_TABLES
from stocklake_airflow.jobs import DEFAULT_ARGS, spark_job


@dag(
    dag_id="lakehouse_compaction",
    # Minute 20: an hour is closed once it ended maintenance.closed_hour_grace_minutes (15) ago.
    schedule="20 * * * *",
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    dagrun_timeout=timedelta(minutes=55),
    tags=["lakehouse", "maintenance", "spark"],
    doc_md="""
### Lakehouse compaction
Runs `spark_jobs/compact.py`: Delta OPTIMIZE with Z-ORDER by symbol of every **closed** hour partition of Bronze
and Silver (trades and quotes) that has accumulated several small files. The hour the stream is writing is never
touched. The task log shows files and bytes before and after per partition.
""",
)
def lakehouse_compaction():
    spark_job("compact", "compact.py", timeout=timedelta(minutes=45), outlets=[*BRONZE_TABLES, *SILVER_TABLES])


lakehouse_compaction()
