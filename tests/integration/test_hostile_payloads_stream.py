"""Hostile payloads straight into Kafka, past the producer, through one run of spark_jobs/stream.py (in the tests'
warm SparkSession: the same queries as spark-submit's): the job never crashes and every record is accounted for,
exactly.

The sample is fixed (tests/hostile_payloads.py, derandomized): every hostile kind, the pinned cases the issue names
(a 1 MiB string, 2,000 levels of nesting, non-UTF-8 bytes, NaN/Infinity, 1e400, 10**400, negative and zero prices,
wrong symbols, far past and future timestamps, missing/extra fields, wrong types), valid events, and duplicates
(byte for byte, and the same event written differently). The trades topic's max.message.bytes is raised to 8 MiB
for the megabyte payloads (the broker's default is 1 MiB + 12 bytes). Every record is held to the exact expectation.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
import uuid
from collections import Counter
from dataclasses import dataclass

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource, ResourceType

from conf.settings import Settings, load_settings
from producer.sink import EventSink
from producer.kafka_sink import DLQ_RAW_LIMIT_BYTES, KafkaPublisher, dlq_record
from spark_jobs.report import account
from spark_jobs.lib.transforms import TRADES
from tests.conftest import namespace_env
from tests.hostile_payloads import (ANY, PRODUCER_REASONS, STREAM_REASONS, Hostile, fixed_event, pinned_payloads,
                                    render, stratified_sample, valid_payloads, valid_variants)
from tests.integration.stack import create_namespace, run_stream_in_session

pytestmark = pytest.mark.integration

TOPIC_MAX_MESSAGE_BYTES = 8 << 20
PER_KIND = 12
# librdkafka's default message.max.bytes, which the producer's config (producer/kafka_sink.py) keeps.
PRODUCER_MAX_MESSAGE_BYTES = 1_000_000


N_PINNED = len(pinned_payloads(0, lambda i: fixed_event(0, i)))


def build_sample(now_ms: int) -> list[Hostile]:
    """Pinned cases first (N_PINNED of them), then the stratified sample, then duplicates of valid events."""
    records = pinned_payloads(now_ms, lambda i: fixed_event(now_ms, i))
    records += stratified_sample(now_ms, PER_KIND, {valid_payloads: 48, valid_variants: 24})
    plain_valid = [h for h in records if h.stream_valid]
    # The same bytes again, and the same event written differently (same event id): both are duplicates.
    records += [Hostile("duplicate:bytes", h.value, None, None, h.event) for h in plain_valid[::4]]
    records += [Hostile("duplicate:rewritten", render(dict(reversed(list(h.event.items())))), None, None, h.event)
                for h in plain_valid[1::9]]
    return records


def raise_topic_limit(settings: Settings, topic: str) -> None:
    admin = AdminClient({"bootstrap.servers": settings.kafka.bootstrap_servers})
    resource = ConfigResource(ResourceType.TOPIC, topic, incremental_configs=[
        ConfigEntry("max.message.bytes", str(TOPIC_MAX_MESSAGE_BYTES),
                    incremental_operation=AlterConfigOpType.SET)])
    for future in admin.incremental_alter_configs([resource]).values():
        future.result(timeout=30)


def produce_raw(settings: Settings, records: list[Hostile]) -> None:
    """Each record's bytes as they are, key = its index in `records`: no validation on the way."""
    errors = []
    producer = Producer({"bootstrap.servers": settings.kafka.bootstrap_servers, "enable.idempotence": True,
                         "message.max.bytes": TOPIC_MAX_MESSAGE_BYTES, "linger.ms": 20})
    for index, h in enumerate(records):
        producer.produce(settings.kafka.trades_topic, key=str(index).encode(), value=h.value,
                         on_delivery=lambda err, msg: err and errors.append(err))
        producer.poll(0)
    assert producer.flush(60) == 0 and errors == []


@dataclass
class StreamRun:
    records: list[Hostile]
    returncode: int
    seconds: float
    log: str
    bronze: dict[int, tuple[int, int, bytes]]      # index -> (partition, offset, value)
    index_at: dict[tuple[int, int], int]           # (partition, offset) -> index
    silver: list[dict]                             # Silver rows, plus "_index" of the record they came from
    quarantine: dict[int, tuple[str, list[str]]]   # index -> (reason, reasons)
    report: dict
    bronze_count: int
    quarantine_count: int

    def silver_ids(self) -> list[str]:
        return [row["event_id"] for row in self.silver]


@pytest.fixture(scope="module")
def stream_run(run_id, request, tmp_path_factory) -> StreamRun:
    env = {**os.environ, **namespace_env(run_id, "hostile-stream")}
    settings = load_settings(env)
    create_namespace(settings)
    raise_topic_limit(settings, settings.kafka.trades_topic)
    records = build_sample(int(time.time() * 1000))
    produce_raw(settings, records)

    log = tmp_path_factory.mktemp("hostile") / "stream.log"
    spark = request.getfixturevalue("spark")
    started = time.monotonic()
    returncode = run_stream_in_session(spark, env, log, expect=None)
    seconds = time.monotonic() - started

    read = lambda layer: spark.read.format("delta").load(settings.lake_uri(f"{layer}/trades"))  # noqa: E731
    bronze_rows = read("bronze").select("key", "partition", "offset", "value").collect()
    bronze = {int(r["key"]): (r["partition"], r["offset"], bytes(r["value"])) for r in bronze_rows}
    index_at = {(p, o): i for i, (p, o, _) in bronze.items()}
    silver = [{**row.asDict(), "_index": index_at.get((row["kafka_partition"], row["kafka_offset"]))}
              for row in read("silver").collect()]
    quarantine = {int(r["key"]): (r["reason"], list(r["reasons"]))
                  for r in read("quarantine").select("key", "reason", "reasons").collect()}
    run = StreamRun(records, returncode, seconds, log.read_text(errors="replace"), bronze, index_at, silver,
                    quarantine, account(spark, settings, TRADES), len(bronze_rows), read("quarantine").count())
    print(f"\nhostile stream: {len(records)} records, job {seconds:.0f} s, exit {returncode}; "
          f"report {run.report}")
    return run


def silver_matches(row: dict, event: dict) -> bool:
    return all(row[name] == event.get(name) for name in
               ("event_id", "schema_version", "source", "symbol", "price", "volume", "trade_ts", "conditions",
                "sequence"))


# -- the stream --------------------------------------------------------------------------------------------

def test_job_exits_0_and_bronze_holds_every_record_as_sent(stream_run):
    run = stream_run
    assert run.returncode == 0, run.log[-5000:]
    assert run.bronze_count == len(run.records)
    assert len(run.index_at) == len(run.records)  # distinct (partition, offset)
    assert {i: value for i, (_, _, value) in run.bronze.items()} == dict(enumerate(h.value for h in run.records))


def test_silver_and_quarantine_hold_exactly_what_the_contract_says(stream_run):
    run = stream_run
    records = run.records
    checked = range(len(records))
    # Quarantine: exactly the invalid records, each with a reason of the vocabulary, the expected one where known.
    assert set(run.quarantine) == {i for i in checked if not records[i].stream_valid}
    for i, (reason, reasons) in run.quarantine.items():
        assert reason and reason in STREAM_REASONS and reasons[0] == reason and set(reasons) <= STREAM_REASONS
    mismatched = {i: (records[i].kind, run.quarantine[i][0], records[i].stream_reason) for i in checked
                  if not records[i].stream_valid and records[i].stream_reason != ANY
                  and run.quarantine[i][0] != records[i].stream_reason}
    assert mismatched == {}
    # Silver: each distinct valid event once, as sent; nothing else.
    ids = run.silver_ids()
    assert len(ids) == len(set(ids)), "an event landed in Silver twice"
    expected = {records[i].event_id for i in checked if records[i].stream_valid}
    assert expected <= set(ids)
    strays = [(records[row["_index"]].kind, row["event_id"]) for row in run.silver if row["event_id"] not in expected]
    assert strays == []
    by_id = {row["event_id"]: row for row in run.silver}
    assert [records[i].kind for i in checked if records[i].stream_valid
            and not silver_matches(by_id[records[i].event_id], records[i].event)] == []


def test_books_balance_exactly(stream_run):
    report = stream_run.report
    assert report["bronze_rows"] == len(stream_run.records)
    assert report["late_rows"] == 0 and report["silver_duplicate_event_ids"] == 0
    assert report["silver_rows"] == len(stream_run.silver)
    assert report["quarantined_rows"] == stream_run.quarantine_count == len(stream_run.quarantine)
    assert report["bronze_rows"] == (report["silver_rows"] + report["quarantined_rows"]
                                     + report["duplicates_removed"])
    assert report["balanced"] is True
    # The duplicates this sample holds on purpose (same bytes, or the same event rewritten) are among them.
    deliberate = sum(1 for h in stream_run.records if h.kind.startswith("duplicate:"))
    assert report["duplicates_removed"] >= deliberate > 0


SPOT_CHECKS = {
    "non_utf8:in_symbol": "malformed_json", "non_utf8:garbage": "malformed_json",
    "nested:top_array": "malformed_json", "nested:extra_object": "malformed_json",
    "non_finite:price": "malformed_json", "non_finite:volume": "malformed_json",
    "huge:price": "price:maximum", "bad_value:price": "price:exclusiveMinimum", "bad_symbol": "symbol:pattern",
    "timestamp:far_past": "trade_ts:minimum", "timestamp:far_future": "trade_ts:maximum",
    "timestamp:future": "trade_ts:future", "missing": "price:required", "extra": "additionalProperties",
    "wrong_type:price": "price:type", "wrong_type:trade_ts": "trade_ts:type",
    "big_string:symbol": "symbol:pattern", "big_string:extra_value": "additionalProperties",
}


def test_spot_checked_reasons(stream_run):
    pinned = [(i, h) for i, h in enumerate(stream_run.records[:N_PINNED]) if h.kind in SPOT_CHECKS]
    assert len({h.kind for _, h in pinned}) == len(SPOT_CHECKS)
    assert {(i, h.kind): stream_run.quarantine.get(i, (None,))[0] for i, h in pinned} == {
        (i, h.kind): SPOT_CHECKS[h.kind] for i, h in pinned}
    assert max(len(h.value) for _, h in pinned) > 1 << 20


def test_every_record_accounted_as_the_contract_says(stream_run):
    """The whole tables: every invalid record quarantined, every valid event in Silver once."""
    records = stream_run.records
    assert set(stream_run.quarantine) == {i for i, h in enumerate(records) if not h.stream_valid}
    expected_ids = {h.event_id for h in records if h.stream_valid}
    assert set(stream_run.silver_ids()) == expected_ids
    assert stream_run.report["duplicates_removed"] == sum(1 for h in records if h.stream_valid) - len(expected_ids)


# -- the producer's DLQ on the real broker ----------------------------------------------------------------

def dlq_too_big(h: Hostile) -> bool:
    reason = h.producer_reason if h.producer_reason not in (None, ANY) else "malformed_json"
    return len(dlq_record(h.value, reason, "hostile", "trades", 0)) > PRODUCER_MAX_MESSAGE_BYTES


def consume_all(settings: Settings, topic: str, expected: int, timeout: float = 90) -> list:
    consumer = Consumer({"bootstrap.servers": settings.kafka.bootstrap_servers, "group.id": f"hostile-{uuid.uuid4()}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    metadata = consumer.list_topics(topic, timeout=30)
    consumer.assign([TopicPartition(topic, p, 0) for p in metadata.topics[topic].partitions])
    messages, deadline, quiet_until = [], time.monotonic() + timeout, None
    try:
        while time.monotonic() < deadline:
            batch = consumer.consume(500, timeout=1)
            messages += [m for m in batch if m.error() is None]
            if len(messages) >= expected:  # then a little longer, to see any extra
                quiet_until = quiet_until or time.monotonic() + 3
                if time.monotonic() >= quiet_until:
                    break
    finally:
        consumer.close()
    return messages


@pytest.fixture(scope="module")
def dlq_run(run_id):
    env = {**os.environ, **namespace_env(run_id, "hostile-dlq")}
    settings = load_settings(env)
    create_namespace(settings)
    records = build_sample(int(time.time() * 1000))
    publisher = KafkaPublisher(settings, client_id="hostile-dlq")
    sink = EventSink(publisher, "hostile")
    started = time.monotonic()
    for index, h in enumerate(records):
        sink.received()
        sink.publish_trade_payload(h.value, str(index).encode())
    assert publisher.flush(60) == 0
    stats = sink.stats
    dlq = consume_all(settings, settings.kafka.dlq_topic, publisher.delivered[settings.kafka.dlq_topic])
    trades = consume_all(settings, settings.kafka.trades_topic, publisher.delivered[settings.kafka.trades_topic])
    print(f"\nhostile dlq: {len(records)} records, {stats.sent} to trades, {stats.dlq} to the DLQ, "
          f"delivered {publisher.delivered_total}, failed {publisher.failed_total}, "
          f"{time.monotonic() - started:.1f} s")
    return records, publisher, stats, dlq, trades


def test_producer_dlq_gets_every_invalid_payload_once_with_its_reason(dlq_run):
    records, publisher, stats, dlq, trades = dlq_run
    # Nothing silent: every record was either acknowledged by Kafka or counted as a delivery failure.
    assert publisher.delivered_total + publisher.failed_total == len(records) == stats.received
    assert {int(m.key()) for m in trades} == {i for i, h in enumerate(records) if h.producer_valid}
    assert len(trades) == publisher.delivered[publisher.trades_topic]
    assert all(m.value() == records[int(m.key())].value for m in trades)
    by_key = Counter(int(m.key()) for m in dlq)
    assert max(by_key.values()) == 1
    expected = {i for i, h in enumerate(records) if not h.producer_valid and not dlq_too_big(h)}
    assert set(by_key) - {i for i, h in enumerate(records) if dlq_too_big(h)} == expected
    for m in dlq:
        h, message = records[int(m.key())], json.loads(m.value())
        assert message["reason"] in PRODUCER_REASONS
        assert message["reason"] == h.producer_reason or h.producer_reason == ANY
        assert message["source"] == "hostile" and message["intended_topic"] == publisher.trades_topic


def test_producer_dlq_takes_megabyte_payloads(dlq_run):
    """Payloads over DLQ_RAW_LIMIT_BYTES reach the DLQ cut there, with the whole payload's length and sha256."""
    records, publisher, _, dlq, _ = dlq_run
    big = {i for i, h in enumerate(records) if not h.producer_valid and len(h.value) > DLQ_RAW_LIMIT_BYTES}
    assert big
    by_key = {int(m.key()): json.loads(m.value()) for m in dlq}
    assert big <= set(by_key)
    for i in big:
        message = by_key[i]
        assert (message["raw_truncated"], message["raw_bytes"], message["raw_sha256"]) == (
            True, len(records[i].value), hashlib.sha256(records[i].value).hexdigest())
    assert publisher.failed_total == 0