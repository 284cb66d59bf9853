"""Producer -> real Kafka -> spark-submit stream.py -> Delta on real MinIO, counted exactly."""
from __future__ import annotations

from collections import Counter
from datetime import datetime, timezone

from confluent_kafka import Producer

from spark_jobs.listener import read_progress
from spark_jobs.report import account
from spark_jobs.transforms import TRADES
from tests.integration.stack import expected_records, producer_args, run_producer, run_stream_available_now, s3_client

WATERMARK_MS = 10 * 60 * 1000


def table(spark, settings, layer):
    return spark.read.format("delta").load(settings.lake_uri(f"{layer}/trades"))


def silver_ids(spark, settings) -> list[str]:
    return [row["event_id"] for row in table(spark, settings, "silver").select("event_id").collect()]


def quarantine_reasons(spark, settings) -> Counter:
    rows = table(spark, settings, "quarantine").groupBy("reason").count().collect()
    return Counter({row["reason"]: row["count"] for row in rows})


def state_files(settings, query: str) -> list[str]:
    """Names of the files in the query's state-store checkpoint on the object store."""
    s3 = s3_client(settings)
    prefix = f"_checkpoints/{query}/state/"
    return [item["Key"].rsplit("/", 1)[1]
            for page in s3.get_paginator("list_objects_v2").paginate(Bucket=settings.lake.bucket, Prefix=prefix)
            for item in page.get("Contents", [])]


def valid_ids(records) -> set[str]:
    return {r.event_id for r in records if r.kind != "malformed"}


def ms(iso: str) -> int:
    return int(datetime.fromisoformat(iso).replace(tzinfo=timezone.utc).timestamp() * 1000)


def test_stream_lands_every_record_once_and_a_second_run_duplicates_nothing(spark, isolated, tmp_path):
    settings, env = isolated
    log = tmp_path / "stream.log"

    # Run 1: duplicates, out-of-order and malformed records (sent raw to the topic, as a bad upstream would).
    args_a = producer_args(4000, seed=7, start_time="2026-01-05T14:30:00", duplicate_ratio=0.05,
                           out_of_order_ratio=0.05, malformed_ratio=0.02)
    summary_a = run_producer(env, args_a, tmp_path)
    records_a = expected_records(env, args_a)
    assert summary_a["sent_trades_topic"] == summary_a["delivered"] == 4000
    run_stream_available_now(env, log)

    bronze = table(spark, settings, "bronze")
    assert bronze.count() == 4000
    assert bronze.select("partition", "offset").distinct().count() == 4000
    ids = silver_ids(spark, settings)
    assert len(ids) == len(set(ids))
    assert set(ids) == valid_ids(records_a)
    assert quarantine_reasons(spark, settings) == Counter(
        r.expected_reason for r in records_a if r.kind == "malformed")
    assert Counter(r.kind for r in records_a)["duplicate"] == 4000 - len(ids) - sum(
        quarantine_reasons(spark, settings).values())

    # Run 2: new events, some stamped 30 minutes late (behind the 10-minute watermark), plus 100 of run 1's
    # events delivered again byte for byte.
    args_b = producer_args(3000, seed=8, start_time="2026-01-05T14:31:00", duplicate_ratio=0.05,
                           late_ratio=0.05, malformed_ratio=0.02)
    summary_b = run_producer(env, args_b, tmp_path)
    records_b = expected_records(env, args_b)
    redelivered = [r for r in records_a if r.kind == "trade"][:100]
    producer = Producer({"bootstrap.servers": settings.kafka.bootstrap_servers, "enable.idempotence": True})
    for record in redelivered:
        producer.produce(settings.kafka.trades_topic, key=record.key, value=record.value)
    assert producer.flush(30) == 0
    run_stream_available_now(env, log)

    watermark_ms = max(r.trade_ts for r in records_a if r.kind != "malformed") - WATERMARK_MS
    late = {r.event_id for r in records_b if r.kind == "late"}
    assert late and all(r.trade_ts < watermark_ms for r in records_b if r.kind == "late")
    assert table(spark, settings, "bronze").count() == 4000 + summary_b["sent_trades_topic"] + 100
    ids = silver_ids(spark, settings)
    assert len(ids) == len(set(ids)), "an event landed in Silver twice"
    assert set(ids) == (valid_ids(records_a) | valid_ids(records_b)) - late
    assert quarantine_reasons(spark, settings) == Counter(
        r.expected_reason for r in records_a + records_b if r.kind == "malformed")

    # Run 2 knew run 1's events from the dedup state restored out of the checkpoint, which RocksDB keeps as
    # changelog files (spark_jobs/session.py: only the changed keys are uploaded per batch).
    assert any(name.endswith(".changelog") for name in state_files(settings, "silver_trades"))

    # Late rows are not lost: they are in Bronze, counted by the stream, and balance the books.
    report = account(spark, settings, TRADES)
    assert report["late_rows"] == len(late)
    assert report["balanced"] is True
    dropped = sum(record["rows_dropped_by_watermark"] for record in read_progress(log.read_text())
                  if record["event"] == "batch" and record["query"] == "silver_trades")
    # Every delivery of a late event was dropped, re-deliveries of late events included.
    assert dropped == sum(1 for r in records_b if r.event_id in late)
