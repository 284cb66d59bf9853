"""Upgrading the trade event schema on a running lake, end to end on the real Kafka, MinIO, Spark and Delta.

Before the upgrade, the stream knows only trade.v1 (this checkout's schemas without trade.v2.json: an older
release) and creates Silver and its checkpoints. After it, producers send v2 events (with the exchange) next to v1
ones on the same topic, plus an event of a version no release knows; the upgraded stream restarts from the old
checkpoints. Silver gains the exchange column by Delta schema evolution (the v1 rows read null), every event lands
once, and the unknown version is quarantined with its reason instead of failing the job.
"""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from confluent_kafka import Producer

from tests.integration.code_copy import contract_copy, contract_of
from tests.integration.stack import (batch_records, expected_records, producer_args, run_producer,
                                     run_stream_in_session)

pytestmark = pytest.mark.integration


def without_v2(schemas) -> None:
    (schemas / "trade.v2.json").unlink()


def silver_batch_ids(log: Path) -> list[int]:
    return [record["batch_id"] for record in batch_records(log, "silver_trades")]


def test_v2_events_evolve_silver_and_the_old_checkpoint_resumes(spark, isolated, tmp_path):
    settings, env = isolated
    silver_path = settings.lake_uri("silver/trades")

    # Before: an older release, trade.v1 only, streams v1 events (duplicates, malformed records sent raw).
    old_release = contract_copy(tmp_path / "old-release", without_v2)
    args_v1 = producer_args(1500, seed=31, start_time="2026-01-06T14:30:00", duplicate_ratio=0.05,
                            malformed_ratio=0.02, schema_version=1)
    assert run_producer(env, args_v1, tmp_path)["delivered"] == 1500
    old_log = tmp_path / "stream-old.log"
    with contract_of(old_release):
        run_stream_in_session(spark, env, old_log)
    assert "exchange" not in spark.read.format("delta").load(silver_path).columns
    old_batches = silver_batch_ids(old_log)
    assert old_batches

    # The upgrade: v2 producers start; one upstream sends a version nobody knows, another a v1 event with v2's field.
    args_v2 = producer_args(1500, seed=32, start_time="2026-01-06T15:00:00", duplicate_ratio=0.05,
                            malformed_ratio=0.02, schema_version=2)
    assert run_producer(env, args_v2, tmp_path)["delivered"] == 1500
    records_v1, records_v2 = expected_records(env, args_v1), expected_records(env, args_v2)
    template = next(json.loads(r.value) for r in records_v2 if r.kind == "trade")
    v3 = {**template, "event_id": "3" * 64, "schema_version": 3, "venue_fee": 0.001}
    v1_with_exchange = {**template, "event_id": "1" * 64, "schema_version": 1}
    producer = Producer({"bootstrap.servers": settings.kafka.bootstrap_servers})
    for event in (v3, v1_with_exchange):
        producer.produce(settings.kafka.trades_topic, key=b"AAPL", value=json.dumps(event).encode())
    assert producer.flush(30) == 0

    # The upgraded release restarts from the old release's checkpoints.
    new_log = tmp_path / "stream-new.log"
    run_stream_in_session(spark, env, new_log)
    new_batches = silver_batch_ids(new_log)
    assert new_batches and min(new_batches) == max(old_batches) + 1   # resumed, not restarted from batch 0
    assert "table_columns_added" in new_log.read_text(errors="replace")

    silver = spark.read.format("delta").load(silver_path)
    assert silver.schema["exchange"].dataType.simpleString() == "string" and silver.schema["exchange"].nullable
    rows = [(r["event_id"], r["schema_version"], r["exchange"])
            for r in silver.select("event_id", "schema_version", "exchange").collect()]
    expected = {(r.event_id, 1, None) for r in records_v1 if r.kind != "malformed"}
    expected |= {(r.event_id, 2, json.loads(r.value)["exchange"]) for r in records_v2 if r.kind != "malformed"}
    assert len(rows) == len(set(rows)) == len(expected)          # each event once
    assert set(rows) == expected
    assert {exchange for _, version, exchange in rows if version == 2} == {"XNAS", "XNYS", "ARCX", "BATS", "IEXG"}

    bronze = spark.read.format("delta").load(settings.lake_uri("bronze/trades"))
    assert bronze.count() == 1500 + 1500 + 2
    quarantine = spark.read.format("delta").load(settings.lake_uri("quarantine/trades"))
    reasons = Counter(row["reason"] for row in quarantine.select("reason").collect())
    malformed = Counter(r.expected_reason for r in (*records_v1, *records_v2) if r.kind == "malformed")
    assert reasons == malformed + Counter({"schema_version:unsupported": 1, "additionalProperties": 1})
    unsupported = quarantine.where("reason = 'schema_version:unsupported'").first()
    assert json.loads(unsupported["value"])["event_id"] == "3" * 64

    operations = [row["operation"] for row in
                  spark.sql(f"DESCRIBE HISTORY delta.`{silver_path}`").select("operation").collect()]
    assert operations.count("ADD COLUMNS") == 1
