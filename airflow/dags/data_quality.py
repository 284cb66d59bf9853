"""Hourly: the Great Expectations suite on the newest closed Silver hour; a failure fails the task and alerts."""
from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import dag

from stocklake_airflow.jobs import DEFAULT_ARGS, python_job


@dag(
    dag_id="data_quality",
    # Minute 25: the previous hour has closed (maintenance.closed_hour_grace_minutes after its end).
    schedule="25 * * * *",
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    # A failed expectation does not heal on retry: alert at once.
    default_args={**DEFAULT_ARGS, "retries": 0},
    dagrun_timeout=timedelta(minutes=30),
    tags=["quality", "silver"],
    doc_md="""
### Data quality (Great Expectations)
Runs `python -m spark_jobs.data_quality` on the newest closed Silver hour partitions (`quality.latest_hours`):
schema, no nulls, price > 0, volume >= 0, symbols in the allowed set, every timestamp inside its partition's hour,
no duplicate event ids. Any failed expectation fails the task (and posts the Slack alert); the log lists each
expectation with its unexpected count and examples.
""",
)
def data_quality():
    python_job("check_silver_trades", "spark_jobs.data_quality", "--entity trades",
               timeout=timedelta(minutes=20))


data_quality()
