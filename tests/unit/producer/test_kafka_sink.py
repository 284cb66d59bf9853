"""producer.kafka_sink: producer configuration and DLQ records (no broker needed)."""
from __future__ import annotations

import base64
import json

from conf.settings import load_settings
from producer.kafka_sink import KafkaPublisher, dlq_record, producer_config


def test_producer_config_comes_from_settings():
    settings = load_settings({"STOCKLAKE_KAFKA_BOOTSTRAP_SERVERS": "broker:9092", "STOCKLAKE_PRODUCER_LINGER_MS": "5"})
    assert producer_config(settings, "me") == {
        "bootstrap.servers": "broker:9092",
        "client.id": "me",
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 5,
        "batch.size": 1048576,
        "compression.type": "lz4",
        "delivery.timeout.ms": 120000,
    }
    assert producer_config(settings)["client.id"].startswith("stocklake-producer-")


def test_dlq_record_keeps_utf8_payloads_as_text():
    record = json.loads(dlq_record(b'{"price":0}', "price:exclusiveMinimum", "simulator", "market.trades.v1", 123))
    assert record == {"reason": "price:exclusiveMinimum", "source": "simulator",
                      "intended_topic": "market.trades.v1", "raw": '{"price":0}', "received_at_ms": 123}


def test_dlq_record_base64_encodes_other_payloads():
    raw = b"\xff\xfe{"
    record = json.loads(dlq_record(raw, "malformed_json", "simulator", "market.trades.v1", 5))
    assert record["raw_encoding"] == "base64"
    assert base64.b64decode(record["raw"]) == raw
    assert record["reason"] == "malformed_json"


def test_publisher_accepts_the_config_and_counts_what_is_still_queued():
    # No bootstrap servers: librdkafka validates the configuration but never connects, so nothing is delivered.
    settings = load_settings({"STOCKLAKE_KAFKA_BOOTSTRAP_SERVERS": ""})
    publisher = KafkaPublisher(settings, client_id="unit-test", wall_ms=lambda: 42)
    assert publisher.trades_topic == "market.trades.v1"
    publisher.publish("market.trades.v1", b"AAPL", b"{}")
    publisher.publish_dlq(b"AAPL", b"{", "malformed_json", "simulator")
    assert dict(publisher.sent) == {"market.trades.v1": 1, "market.dlq.v1": 1}
    assert publisher.flush(0.1) == 2
    assert (publisher.delivered_total, publisher.failed_total, publisher.errors) == (0, 0, [])
    assert KafkaPublisher(settings, trades_topic="other", client_id="unit-test").trades_topic == "other"
