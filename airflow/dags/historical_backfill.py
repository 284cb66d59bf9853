"""On demand: daily bars per symbol for a date range, from Finnhub candles or a CSV/Parquet file, into the lake."""
from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import Param, dag, task

from stocklake_airflow.assets import SILVER_BARS
from stocklake_airflow.jobs import DEFAULT_ARGS, spark_job


@dag(
    dag_id="historical_backfill",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    dagrun_timeout=timedelta(hours=3),
    tags=["lakehouse", "backfill", "spark"],
    params={
        "start": Param(type="string", format="date", description="first trading date (YYYY-MM-DD)"),
        "end": Param(type="string", format="date", description="last trading date (YYYY-MM-DD), inclusive"),
        "source": Param("file", enum=["file", "finnhub"],
                        description="file: a CSV/Parquet of daily bars; finnhub: /stock/candle (needs a key with "
                                    "candle access in FINNHUB_API_KEY)"),
        "file": Param("", type="string", description="with source=file: path of the CSV/Parquet file"),
        "symbols": Param("", type="string", description="comma-separated symbols; empty: finnhub.symbols"),
    },
    doc_md="""
### Historical backfill (triggered by hand, with parameters)
Runs `spark_jobs/backfill.py`: daily bars for `start`..`end`, from Finnhub's candle endpoint or from a file
(columns symbol, date, open, high, low, close, volume), validated against the bar.v1 contract like streamed events:
valid bars MERGE into `silver/bars`, invalid ones go to `quarantine/bars` with the reason, every record to
`bronze/bars`. Re-running the same range changes nothing; a corrected bar is updated.
""",
)
def historical_backfill():
    @task
    def backfill_arguments(params: dict) -> list[str]:
        # Only turns the form into the job's command line; the job validates dates, files and symbols.
        args = ["--from", params["start"], "--to", params["end"]]
        if params["symbols"].strip():
            args += ["--symbols", params["symbols"].strip()]
        if params["source"] == "finnhub":
            return args + ["--finnhub"]
        if not params["file"].strip():
            raise ValueError("source=file needs the file parameter (a CSV or Parquet path)")
        return args + ["--file", params["file"].strip()]

    spark_job("backfill", "backfill.py", backfill_arguments(), timeout=timedelta(hours=2),
              outlets=[SILVER_BARS])


historical_backfill()
