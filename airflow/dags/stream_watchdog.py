"""Every 5 minutes: are the streaming job and the producers alive, is the stream keeping up, and are trades reaching
Silver while the market is open? Alerts when not."""
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

It also reads the heartbeats on `kafka.heartbeats_topic` (compacted; the newest record per sender): the stream's
(per query: last batch, newest event time, batches, rows in, rows quarantined) and each producer's
(`producer:<source>`: last send, newest event time, sent, DLQ, delivered, failed). It fails when the stream's
heartbeat is missing or older than `watchdog.max_heartbeat_age_seconds`, and when a producer's heartbeat is that
old, unless it is the final heartbeat of a producer that stopped cleanly. The task log shows every sender's
heartbeat, its age and its counts.

`check_silver_freshness` runs `python -m spark_jobs.freshness`: Silver's newest trade (from the Delta log) against
the exchange's hours (`market_hours`). While the market is closed (nights, weekends, holidays, after a half day's
close) it passes; while it is open it fails, and alerts, when the newest trade is older than
`watchdog.max_silver_trade_age_seconds` (counted from the open when the session is younger).
""",
)
def stream_watchdog():
    python_job("check_stream", "spark_jobs.watchdog", timeout=timedelta(minutes=3))
    python_job("check_silver_freshness", "spark_jobs.freshness", timeout=timedelta(minutes=3))


stream_watchdog()
