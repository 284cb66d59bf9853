"""The running stream's Prometheus endpoint and metrics table, against real Kafka, Spark and MinIO."""
from __future__ import annotations

import os
import signal
import urllib.error
import urllib.request

from prometheus_client.parser import text_string_to_metric_families
from pyspark.sql import functions as F

from spark_jobs.listener import read_progress
from tests.integration.stack import free_port, producer_args, run_producer, start_stream, wait_for


def scrape(port: int) -> dict[tuple[str, str], float]:
    """(sample name, query) -> value of the stream's counters; empty while the endpoint is not up yet."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            text = response.read().decode()
    except (urllib.error.URLError, ConnectionError):
        return {}
    return {(sample.name, sample.labels["query"]): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples
            if sample.name.endswith("_total")}


def test_endpoint_and_metrics_table_count_every_record_and_every_quarantined_one(spark, isolated, tmp_path):
    settings, env = isolated
    summary = run_producer(env, producer_args(3000, seed=31, start_time="2026-01-05T15:30:00",
                                              malformed_ratio=0.05), tmp_path)
    produced = summary["sent_trades_topic"]
    quarantined = sum(summary["expected_quarantine_by_reason"].values())
    assert produced == summary["delivered"] == 3000 and quarantined > 0

    port = free_port()
    log = tmp_path / "stream.log"
    env = {**env, "STOCKLAKE_STREAM_METRICS_FLUSH_SECONDS": "2", "STOCKLAKE_STREAM_TRIGGER_INTERVAL": "1 second"}
    job = start_stream(env, log, extra_args=["--metrics-port", str(port)])
    expected = {("stocklake_stream_rows_in_total", "bronze_trades"): produced,
                ("stocklake_stream_rows_in_total", "silver_trades"): produced,
                ("stocklake_stream_rows_quarantined_total", "silver_trades"): quarantined}
    try:
        wait_for(lambda: {key: scrape(port).get(key) for key in expected} == expected or job.poll() is not None,
                 "the endpoint to count every record", timeout=240)
        assert job.poll() is None, log.read_text(errors="replace")[-5000:]
    finally:
        if job.poll() is None:
            os.killpg(job.pid, signal.SIGTERM)  # a clean stop: the last metrics flush happens on the way out
        job.wait(timeout=120)

    assert job.returncode == 0, log.read_text(errors="replace")[-5000:]
    events = read_progress(log.read_text(errors="replace"))
    assert {"event": "metrics_listening", "port": port} in events
    # Stopped by the signal, cleanly, with every batch's row written.
    assert [(e["stopped_by_signal"], e["failed"], e["metrics_rows_unflushed"])
            for e in events if e["event"] == "stream_finished"] == [(True, False, 0)]
    table = spark.read.format("delta").load(settings.lake_uri(settings.stream.metrics_table))
    per_query = {row["query"]: row for row in table.groupBy("query").agg(
        F.sum("rows_in").alias("rows_in"), F.sum("rows_quarantined").alias("rows_quarantined"),
        F.count("*").alias("batches"), F.countDistinct("batch_id").alias("batch_ids")).collect()}
    assert set(per_query) == {"bronze_trades", "silver_trades"}
    for query, row in per_query.items():
        assert row["rows_in"] == produced, query
        assert row["batches"] == row["batch_ids"], f"{query}: a batch was recorded twice"
    assert per_query["silver_trades"]["rows_quarantined"] == quarantined
    assert per_query["bronze_trades"]["rows_quarantined"] == 0
    # The table holds exactly the batches the job logged.
    logged = sorted((e["query"], e["batch_id"]) for e in events if e["event"] == "batch")
    assert sorted(tuple(row) for row in table.select("query", "batch_id").collect()) == logged
