"""The running stream's Prometheus endpoint and metrics table, on the secured run (tests/integration/secured_stream.py:
spark-submit, a processing-time trigger, stopped with SIGTERM once the endpoint counted every record)."""
from __future__ import annotations

import io
import socket
from contextlib import redirect_stderr

import pytest
from pyspark.sql import functions as F

from spark_jobs.lib.listener import read_progress
from spark_jobs.stream import run

pytestmark = pytest.mark.integration


def test_endpoint_and_metrics_table_count_every_record_and_every_quarantined_one(spark, secured_stream):
    run = secured_stream
    produced = run.summary["sent_trades_topic"]
    quarantined = sum(run.summary["expected_quarantine_by_reason"].values())
    assert produced == run.summary["delivered"] == 1000 and quarantined > 0
    assert run.returncode == 0, run.log.read_text(errors="replace")[-5000:]

    events = read_progress(run.log.read_text(errors="replace"))
    batches = [e for e in events if e["event"] == "batch"]
    assert {"event": "metrics_listening", "port": run.metrics_port} in events
    # What the endpoint counted: the real records' batches, as the job logged them.
    for query in ("bronze_trades", "silver_trades"):
        logged = [b for b in batches if b["query"] == query]
        assert run.metrics[("stocklake_stream_rows_in_total", query)] == produced == sum(b["rows_in"] for b in logged)
    assert run.metrics[("stocklake_stream_rows_quarantined_total", "silver_trades")] == quarantined == sum(
        b.get("rows_quarantined", 0) for b in batches if b["query"] == "silver_trades")
    assert run.metrics[("stocklake_stream_rows_dropped_by_watermark_total", "silver_trades")] == 0
    # Stopped by the signal, cleanly, with every batch's row written.
    assert [(e["stopped_by_signal"], e["failed"], e["metrics_rows_unflushed"])
            for e in events if e["event"] == "stream_finished"] == [(True, False, 0)]

    table = spark.read.format("delta").load(run.settings.lake_uri(run.settings.stream.metrics_table))
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
    logged = sorted((e["query"], e["batch_id"]) for e in batches)
    assert sorted(tuple(row) for row in table.select("query", "batch_id").collect()) == logged


# After the start-up checks of the brokers and the object store (so on the real stack), before any JVM.
def test_a_metrics_port_in_use_fails_at_start_up_naming_the_setting(monkeypatch):
    monkeypatch.setenv("STOCKLAKE_STREAM_METRICS_PORT", "0")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        stderr = io.StringIO()
        with redirect_stderr(stderr):
            assert run(["--metrics-port", str(port)]) == 2
    assert stderr.getvalue() == (f"stream: error: cannot serve metrics on 127.0.0.1:{port} "
                                 f"(stream.metrics_port / --metrics-port): Address already in use\n")
