"""Producer -> real Kafka -> the stream -> Delta on real MinIO, counted exactly, on the shared lake (conftest.lake):
each step's tables read as they were right after it (Delta time travel)."""
from __future__ import annotations

from collections import Counter, defaultdict

import pytest

from tests.integration.stack import batch_records, s3_client

pytestmark = pytest.mark.integration

WATERMARK_MS = 10 * 60 * 1000


def silver_ids(lake, spark, step: str) -> list[str]:
    return [row["event_id"] for row in lake.table(spark, "silver", step).select("event_id").collect()]


def quarantine_reasons(lake, spark, step: str) -> Counter:
    rows = lake.table(spark, "quarantine", step).groupBy("reason").count().collect()
    return Counter({row["reason"]: row["count"] for row in rows})


def valid_ids(records) -> set[str]:
    return {r.event_id for r in records if r.kind != "malformed"}


def state_files(settings, query: str) -> list[str]:
    """Names of the files in the query's state-store checkpoint on the object store."""
    s3 = s3_client(settings)
    prefix = f"_checkpoints/{query}/state/"
    return [item["Key"].rsplit("/", 1)[1]
            for page in s3.get_paginator("list_objects_v2").paginate(Bucket=settings.lake.bucket, Prefix=prefix)
            for item in page.get("Contents", [])]


def test_the_first_run_lands_every_record_once(lake, spark):
    day_1, day_2, *_ = lake.records
    sent = day_1 + day_2
    bronze = lake.table(spark, "bronze", "first_stream")
    assert bronze.count() == len(sent) == 6000
    assert bronze.select("partition", "offset").distinct().count() == 6000
    ids = silver_ids(lake, spark, "first_stream")
    assert len(ids) == len(set(ids))
    assert set(ids) == valid_ids(sent)
    quarantined = quarantine_reasons(lake, spark, "first_stream")
    assert quarantined == Counter(r.expected_reason for r in sent if r.kind == "malformed")
    assert Counter(r.kind for r in sent)["duplicate"] == 6000 - len(ids) - sum(quarantined.values()) > 0
    # Both event versions are in Silver: day 1 sent trade.v1, day 2 trade.v2 with the exchange.
    versions = {row["schema_version"]: row["count"] for row in lake.table(spark, "silver", "first_stream")
                .groupBy("schema_version").count().collect()}
    assert versions == {1: len(valid_ids(day_1)), 2: len(valid_ids(day_2))}


def test_the_topic_spreads_symbols_over_partitions_and_keeps_each_symbol_on_one(lake, spark):
    rows = lake.table(spark, "bronze", "second_stream").select("key", "partition").distinct().collect()
    partitions_of = defaultdict(set)
    for row in rows:
        partitions_of[row["key"]].add(row["partition"])
    assert len(partitions_of) == len(lake.settings.simulator.symbols)
    assert all(len(partitions) == 1 for partitions in partitions_of.values()), partitions_of
    used = set().union(*partitions_of.values())
    assert len(used) > 1 and used <= set(range(lake.settings.kafka.partitions)), used


def test_a_second_run_duplicates_nothing_and_keeps_late_events_in_bronze(lake, spark):
    day_1, day_2, *late_runs = lake.records
    late_run = [record for run in late_runs for record in run]
    watermark_ms = max(r.trade_ts for r in day_1 + day_2 if r.kind != "malformed") - WATERMARK_MS
    late = {r.event_id for r in late_run if r.kind == "late"}
    assert late and all(r.trade_ts < watermark_ms for r in late_run if r.kind == "late")
    assert lake.table(spark, "bronze", "second_stream").count() == 6000 + len(late_run) + len(lake.redelivered)
    ids = silver_ids(lake, spark, "second_stream")
    assert len(ids) == len(set(ids)), "an event landed in Silver twice"
    assert set(ids) == valid_ids(lake.all_records()) - late
    assert quarantine_reasons(lake, spark, "second_stream") == Counter(
        r.expected_reason for r in lake.all_records() if r.kind == "malformed")
    # The re-delivered day-2 trades were already in Silver: the second run knew them from the dedup state restored
    # out of the checkpoint, which RocksDB keeps as changelog files (spark_jobs/lib/session.py: only the changed keys
    # are uploaded per batch).
    assert {r.event_id for r in lake.redelivered} <= set(silver_ids(lake, spark, "first_stream"))
    assert any(name.endswith(".changelog") for name in state_files(lake.settings, "silver_trades"))

    # Late rows are not lost: they are in Bronze, counted by the stream, and balance the books.
    report = lake.accounted
    assert report["late_rows"] == len(late)
    assert report["balanced"] is True
    second_run = batch_records(lake.stream_logs[1], "silver_trades")
    dropped = sum(record["rows_dropped_by_watermark"] for record in second_run)
    # Every delivery of a late event was dropped, re-deliveries of late events included; the re-delivered day-2
    # trades (ahead of the watermark) were not.
    assert dropped == sum(1 for r in late_run if r.event_id in late)
    read = sum(record["rows_in"] for record in second_run)
    assert read == len(late_run) + len(lake.redelivered)
