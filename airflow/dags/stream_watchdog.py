"""Every 5 minutes: is the streaming job alive and keeping up? Alerts when not."""
from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import dag

from stocklake_airflow.jobs import DEFAULT_ARGS, python_job


@dag(
    dag_id="stream_watchdog",
    schedule="*/5 * * * *",
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    # The next run is 5 minutes away: retrying would only delay the alert.
    default_args={**DEFAULT_ARGS, "retries": 0},
    dagrun_timeout=timedelta(minutes=4),
    tags=["stream", "monitoring"],
    doc_md="""
### Stream watchdog
Runs `python -m spark_jobs.watchdog`: for each streaming query, the age of its newest committed micro-batch (from
its checkpoint on the object store) and its Kafka lag (end offsets minus the checkpointed offsets). It fails, and so
alerts, when there is lag but no recent batch (`watchdog.max_batch_age_seconds`), when the lag exceeds
`watchdog.max_consumer_lag`, or when a query has no checkpoint.
""",
)
def stream_watchdog():
    python_job("check_stream", "spark_jobs.watchdog", timeout=timedelta(minutes=3))


stream_watchdog()
