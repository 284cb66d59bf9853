"""reconcile against the real stack: producer -> Kafka -> stream.py -> Delta on MinIO, then late rows into Silver."""
from __future__ import annotations

import json
import subprocess

import pytest
from delta.tables import DeltaTable
from pyspark.sql import functions as F

from spark_jobs.reconcile import main, merge_missing
from spark_jobs.report import account
from spark_jobs.transforms import TRADES
from tests.integration.stack import (REPO, SPARK_SUBMIT, expected_records, producer_args, run_producer,
                                     run_stream_available_now)

# Two stream runs, four reconcile runs and two accountings: more than the default limit on a shared 2-core box.
pytestmark = [pytest.mark.integration, pytest.mark.timeout(2400)]


def first_deliveries(bronze, payloads: dict[bytes, str]) -> dict[str, tuple[int, int]]:
    """(partition, offset) of each event's first delivery by (Kafka time, partition, offset), worked out in
    Python from the raw Bronze records carrying one of `payloads` (exact bytes -> event id)."""
    first: dict[str, tuple] = {}
    for row in bronze.select("value", "partition", "offset", "kafka_timestamp").collect():
        event_id = payloads.get(bytes(row["value"]))
        if event_id is not None:
            key = (row["kafka_timestamp"], row["partition"], row["offset"])
            first[event_id] = min(first.get(event_id, key), key)
    return {event_id: (key[1], key[2]) for event_id, key in first.items()}


def test_reconcile_moves_exactly_the_late_rows_and_twice_is_once(spark, isolated, tmp_path):
    settings, env = isolated
    log = tmp_path / "stream.log"
    # Run 1 gives the stream its watermark; run 2 brings events stamped 30 minutes late (behind the 10-minute
    # watermark), re-deliveries (of late events too) and malformed records. As in test_pipeline.py.
    args_a = producer_args(1500, seed=31, start_time="2026-01-05T14:30:00", duplicate_ratio=0.05)
    run_producer(env, args_a, tmp_path)
    run_stream_available_now(env, log)
    args_b = producer_args(1500, seed=32, start_time="2026-01-05T14:31:00", duplicate_ratio=0.1, late_ratio=0.08,
                           malformed_ratio=0.02)
    run_producer(env, args_b, tmp_path)
    run_stream_available_now(env, log)

    records_a, records_b = expected_records(env, args_a), expected_records(env, args_b)
    valid = {r.event_id for r in records_a + records_b if r.kind != "malformed"}
    late = {r.event_id for r in records_b if r.kind == "late"}
    silver_uri, bronze_uri = settings.lake_uri("silver/trades"), settings.lake_uri("bronze/trades")
    read = lambda uri: spark.read.format("delta").load(uri)  # noqa: E731
    silver_ids = lambda: [r["event_id"] for r in read(silver_uri).select("event_id").collect()]  # noqa: E731
    ids_before = silver_ids()
    assert late and set(ids_before) == valid - late, "the stream did not drop exactly the late events"
    assert any(r.kind == "duplicate" and r.event_id in late for r in records_b), "no late event re-delivered"
    before = account(spark, settings, TRADES)
    assert before["late_rows"] == len(late) and before["balanced"] is True
    silver_table = DeltaTable.forPath(spark, silver_uri)
    version = lambda: silver_table.history(1).select("version").first()["version"]  # noqa: E731
    version_before, schema_before = version(), read(silver_uri).schema

    # An entity whose tables do not exist is a job-level failure, named.
    quotes_json = tmp_path / "quotes.json"
    assert main(["--entity", "quotes", "--json", str(quotes_json)]) == 1
    failed = json.loads(quotes_json.read_text())
    assert failed["ok"] is False and settings.lake_uri("bronze/quotes") in failed["error"]

    # A window without the Bronze partitions (their date is the Kafka date: today) finds nothing.
    old_json = tmp_path / "old.json"
    assert main(["--entity", "trades", "--now", "2000-01-05T08:00:00Z", "--json", str(old_json)]) == 0
    old = json.loads(old_json.read_text())
    assert (old["from"], old["to"]) == ("2000-01-02", "2000-01-05")
    assert (old["entities"][0]["missing_rows"], old["entities"][0]["inserted_rows"]) == (0, 0)
    assert version() == version_before

    # The default window (the last maintenance.reconcile_lookback_days days) moves exactly the late rows.
    first_json = tmp_path / "first.json"
    assert main(["--entity", "trades", "--json", str(first_json)]) == 0
    first = json.loads(first_json.read_text())["entities"][0]
    assert {k: first[k] for k in ("missing_rows", "pending_rows", "inserted_rows", "merge_retries")} == {
        "missing_rows": len(late), "pending_rows": 0, "inserted_rows": len(late), "merge_retries": 0}
    ids_after = silver_ids()
    assert len(ids_after) == len(set(ids_after)) == len(ids_before) + len(late), "an event is in Silver twice"
    assert set(ids_after) - set(ids_before) == late
    assert set(ids_after) == valid
    merge = silver_table.history(1).select("version", "operation", "operationMetrics").first()
    assert merge["operation"] == "MERGE" and merge["operationMetrics"]["numTargetRowsInserted"] == str(len(late))
    assert first["silver_version"] == merge["version"]

    # The inserted rows have Silver's schema, their first delivery's Kafka lineage and a fresh ingest_time.
    silver = read(silver_uri)
    assert silver.schema == schema_before
    inserted = silver.where(F.col("event_id").isin(*late))
    lineage = {r["event_id"]: (r["kafka_partition"], r["kafka_offset"])
               for r in inserted.select("event_id", "kafka_partition", "kafka_offset").collect()}
    late_payloads = {r.value: r.event_id for r in records_b if r.kind == "late"}
    assert lineage == first_deliveries(read(bronze_uri), late_payloads)
    newest_old = silver.where(~F.col("event_id").isin(*late)).agg(F.max("ingest_time")).first()[0]
    assert inserted.agg(F.min("ingest_time")).first()[0] > newest_old

    # The books balance with nothing left late.
    after = account(spark, settings, TRADES)
    assert after["late_rows"] == 0 and after["silver_duplicate_event_ids"] == 0 and after["balanced"] is True
    assert after["silver_rows"] == before["silver_rows"] + len(late)

    # Another run that found the same rows before this one committed: its MERGE matches them all.
    same_rows = inserted.select(*schema_before.fieldNames())
    partitions = [(r["date"], r["hour"]) for r in same_rows.select("date", "hour").distinct().collect()]
    assert merge_missing(spark, silver_uri, same_rows, partitions) == (0, 0)
    assert sorted(silver_ids()) == sorted(ids_after)
    version_settled = version()

    # Run again, as Airflow does (spark-submit, explicit Bronze dates): nothing to do, Silver not even touched.
    bronze_dates = sorted(r["date"] for r in read(bronze_uri).select("date").distinct().collect())
    again_json = tmp_path / "again.json"
    result = subprocess.run(
        [SPARK_SUBMIT, "--master", "local[2]", "--conf", "spark.ui.enabled=false",
         str(REPO / "spark_jobs" / "reconcile.py"), "--entity", "trades", "--from", bronze_dates[0],
         "--to", bronze_dates[-1], "--json", str(again_json)],
        env=env, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-5000:]
    assert "trades: missing 0 (pending in stream 0), inserted 0, retries 0" in result.stdout
    again = json.loads(again_json.read_text())
    assert again["ok"] is True and (again["from"], again["to"]) == (bronze_dates[0], bronze_dates[-1])
    assert {k: again["entities"][0][k] for k in ("missing_rows", "pending_rows", "inserted_rows")} == {
        "missing_rows": 0, "pending_rows": 0, "inserted_rows": 0}
    assert version() == again["entities"][0]["silver_version"] == version_settled
    assert sorted(silver_ids()) == sorted(ids_after)
