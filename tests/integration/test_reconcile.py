"""reconcile on the shared lake (conftest.lake): the stream left the late events in Bronze only, the lake's reconcile
run (the default window, as Airflow's maintenance DAG runs it) put exactly those into Silver, and running it again,
in any way, changes nothing."""
from __future__ import annotations

import json

import pytest
from delta.tables import DeltaTable
from pyspark.sql import functions as F

from spark_jobs.reconcile import main, merge_missing
from spark_jobs.report import account
from spark_jobs.lib.transforms import TRADES
from tests.integration.stack import environment

pytestmark = pytest.mark.integration


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


def ids_at(lake, spark, step: str | None = None) -> list[str]:
    return [row["event_id"] for row in lake.table(spark, "silver", step).select("event_id").collect()]


def late_events(lake) -> set[str]:
    return {r.event_id for run in lake.late_runs for r in run if r.kind == "late"}


def silver_version(spark, lake) -> int:
    return DeltaTable.forPath(spark, lake.settings.lake_uri("silver/trades")).history(1).first()["version"]


def test_reconcile_moves_exactly_the_late_rows_with_their_first_delivery(lake, spark):
    valid = {r.event_id for r in lake.all_records() if r.kind != "malformed"}
    late = late_events(lake)
    ids_before = ids_at(lake, spark, "second_stream")
    assert late and set(ids_before) == valid - late, "the stream did not drop exactly the late events"
    assert any(r.kind == "duplicate" and r.event_id in late for run in lake.late_runs for r in run), \
        "no late event re-delivered"
    before = lake.accounted
    assert before["late_rows"] == len(late) and before["balanced"] is True

    # The default window (the last maintenance.reconcile_lookback_days days) moved exactly the late rows.
    (first,) = lake.reconciled["entities"]
    assert {k: first[k] for k in ("missing_rows", "pending_rows", "inserted_rows", "merge_retries")} == {
        "missing_rows": len(late), "pending_rows": 0, "inserted_rows": len(late), "merge_retries": 0}
    ids_after = ids_at(lake, spark, "reconcile")
    assert len(ids_after) == len(set(ids_after)) == len(ids_before) + len(late), "an event is in Silver twice"
    assert set(ids_after) - set(ids_before) == late
    assert set(ids_after) == valid
    silver_path = lake.settings.lake_uri("silver/trades")
    merge = (DeltaTable.forPath(spark, silver_path).history()
             .where(F.col("version") == lake.versions["reconcile"]["silver"])
             .select("version", "operation", "operationMetrics").first())
    assert merge["operation"] == "MERGE" and merge["operationMetrics"]["numTargetRowsInserted"] == str(len(late))
    assert first["silver_version"] == merge["version"] == lake.versions["second_stream"]["silver"] + 1

    # The inserted rows have Silver's schema, their first delivery's Kafka lineage and a fresh ingest_time.
    silver = lake.table(spark, "silver", "reconcile")
    assert silver.schema == lake.table(spark, "silver", "second_stream").schema
    inserted = silver.where(F.col("event_id").isin(*late))
    lineage = {r["event_id"]: (r["kafka_partition"], r["kafka_offset"])
               for r in inserted.select("event_id", "kafka_partition", "kafka_offset").collect()}
    late_payloads = {r.value: r.event_id for run in lake.late_runs for r in run if r.kind == "late"}
    assert lineage == first_deliveries(lake.table(spark, "bronze", "reconcile"), late_payloads)
    newest_old = silver.where(~F.col("event_id").isin(*late)).agg(F.max("ingest_time")).first()[0]
    assert inserted.agg(F.min("ingest_time")).first()[0] > newest_old


def test_reconcile_again_finds_nothing_and_leaves_silver_alone(lake, spark, tmp_path, capsys):
    late = late_events(lake)
    silver_path = lake.settings.lake_uri("silver/trades")
    ids_after = sorted(ids_at(lake, spark, "reconcile"))

    # Another run that found the same rows before this one committed: its MERGE matches them all.
    inserted = lake.table(spark, "silver", "reconcile").where(F.col("event_id").isin(*late))
    partitions = [(r["date"], r["hour"]) for r in inserted.select("date", "hour").distinct().collect()]
    assert merge_missing(spark, silver_path, inserted, partitions) == (0, 0)
    assert sorted(ids_at(lake, spark)) == ids_after
    version_settled = silver_version(spark, lake)

    with environment(lake.env):
        # An entity whose tables do not exist is a job-level failure, named.
        quotes_json = tmp_path / "quotes.json"
        assert main(["--entity", "quotes", "--json", str(quotes_json)]) == 1
        failed = json.loads(quotes_json.read_text())
        assert failed["ok"] is False and lake.settings.lake_uri("bronze/quotes") in failed["error"]

        # A window without the Bronze partitions (their date is the Kafka date: today) finds nothing.
        old_json = tmp_path / "old.json"
        assert main(["--entity", "trades", "--now", "2000-01-05T08:00:00Z", "--json", str(old_json)]) == 0
        old = json.loads(old_json.read_text())
        assert (old["from"], old["to"]) == ("2000-01-02", "2000-01-05")
        assert (old["entities"][0]["missing_rows"], old["entities"][0]["inserted_rows"]) == (0, 0)

        # Again as Airflow runs it, with explicit Bronze dates: nothing to do, Silver not even touched.
        bronze_dates = sorted(r["date"] for r in lake.table(spark, "bronze").select("date").distinct().collect())
        again_json = tmp_path / "again.json"
        capsys.readouterr()
        assert main(["--entity", "trades", "--from", bronze_dates[0], "--to", bronze_dates[-1],
                     "--json", str(again_json)]) == 0
    assert "trades: missing 0 (pending in stream 0), inserted 0, retries 0" in capsys.readouterr().out
    again = json.loads(again_json.read_text())
    assert again["ok"] is True and (again["from"], again["to"]) == (bronze_dates[0], bronze_dates[-1])
    assert {k: again["entities"][0][k] for k in ("missing_rows", "pending_rows", "inserted_rows")} == {
        "missing_rows": 0, "pending_rows": 0, "inserted_rows": 0}
    assert silver_version(spark, lake) == again["entities"][0]["silver_version"] == version_settled
    assert sorted(ids_at(lake, spark)) == ids_after

    # The books balance with nothing left late.
    after = account(spark, lake.settings, TRADES)
    assert after["late_rows"] == 0 and after["silver_duplicate_event_ids"] == 0 and after["balanced"] is True
    assert after["silver_rows"] == lake.accounted["silver_rows"] + len(late)
