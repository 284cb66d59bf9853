"""Hostile payloads at the producer: every one is validated, and routed exactly once, never raising.

The raw-payload path is producer.sink.EventSink.publish_trade_payload (EventValidator.validate_payload), the
simulator's, which publishes valid payloads to the trades topic and invalid ones through publish_dlq with the
reason; the DLQ message itself is producer.kafka_sink.dlq_record. The live sources hand decoded events to the same
EventSink and raw WebSocket messages to producer.finnhub_ws.MessageHandler. Payloads come from tests/hostile_payloads.py,
each tagged with the reason the contract gives it. Derandomized: the same examples on every run.
"""
from __future__ import annotations

import base64
import hashlib
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conf.contracts.events import decode
from producer.finnhub_ws import MessageHandler
from producer.kafka_sink import DLQ_RAW_LIMIT_BYTES, dlq_record
from producer.replay import parse_line
from producer.sink import EventSink
from tests.hostile_payloads import (ANY, KINDS, PRODUCER_REASONS, Hostile, fixed_event, nested, pinned_payloads)
from tests.standins.memory_publisher import MemoryPublisher

NOW_MS = 1_767_605_400_000  # 2026-01-05 09:30 UTC; no producer rule depends on the clock
PROFILE = settings(derandomize=True, database=None, max_examples=30, deadline=None,
                   suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                          HealthCheck.large_base_example])
PINNED = pinned_payloads(NOW_MS, lambda i: fixed_event(NOW_MS, i))


def dlq_raw(message: bytes) -> tuple[dict, bytes]:
    record = json.loads(message)
    raw = record["raw"]
    return record, base64.b64decode(raw) if record.get("raw_encoding") == "base64" else raw.encode("utf-8")


def is_deeply_nested(h: Hostile) -> bool:
    return h.kind.startswith("nested:") and h.producer_reason == "malformed_json"


def check_raw_path(h: Hostile) -> None:
    """EventSink.publish_trade_payload (the simulator's path): one publish, to the trades topic or to the DLQ with
    the expected reason."""
    publisher = MemoryPublisher()
    sink = EventSink(publisher, "hostile")
    reason = sink.publish_trade_payload(h.value, b"key")
    stats = sink.stats
    assert stats.sent + stats.dlq == 1
    if h.producer_valid:
        assert reason is None
        assert publisher.messages == [(publisher.trades_topic, b"key", h.value)] and publisher.dlq == []
        return
    assert reason is not None and publisher.messages == []
    assert len(publisher.dlq) == 1
    reason = publisher.dlq[0]["reason"]
    assert isinstance(reason, str) and reason in PRODUCER_REASONS, reason
    if h.producer_reason != ANY:
        assert reason == h.producer_reason
    assert publisher.dlq[0]["raw"] == h.value and stats.dlq_by_reason == {reason: 1}
    # The DLQ message KafkaPublisher writes: JSON holding the reason and the payload byte for byte, or past
    # DLQ_RAW_LIMIT_BYTES its first bytes with the whole payload's length and sha256.
    message, raw = dlq_raw(dlq_record(h.value, reason, "hostile", "trades", 1))
    assert message["reason"] == reason
    if len(h.value) <= DLQ_RAW_LIMIT_BYTES:
        assert raw == h.value and "raw_truncated" not in message
    else:
        assert raw == h.value[:DLQ_RAW_LIMIT_BYTES]
        assert (message["raw_truncated"], message["raw_bytes"], message["raw_sha256"]) == (
            True, len(h.value), hashlib.sha256(h.value).hexdigest())


def check_sink_path(h: Hostile) -> None:
    """EventSink.publish_trade (the live sources) on the decoded event, when the payload decodes to an object."""
    event = decode(h.value)
    if event is None:
        return
    publisher = MemoryPublisher()
    reason = EventSink(publisher, "hostile").publish_trade(event)
    assert len(publisher.messages) + len(publisher.dlq) == 1
    if h.producer_valid:
        assert reason is None and len(publisher.messages) == 1
    else:
        assert reason in PRODUCER_REASONS and publisher.dlq_reasons() == [reason]
        if h.producer_reason != ANY:
            assert reason == h.producer_reason


def check_finnhub_handler(h: Hostile) -> None:
    """A raw WebSocket message: never raises; none of these is a Finnhub message, so each goes to the DLQ once."""
    publisher = MemoryPublisher()
    MessageHandler(EventSink(publisher, "finnhub")).handle(h.value)
    assert publisher.messages == []
    assert publisher.dlq_reasons() in (["malformed_json"], ["finnhub:unknown_type"])


@pytest.mark.parametrize("kind", KINDS, ids=lambda kind: kind.__name__)
@PROFILE
@given(data=st.data())
def test_every_hostile_payload_is_routed_once_with_its_reason(kind, data):
    h = data.draw(kind(NOW_MS), label="payload")
    check_raw_path(h)
    check_sink_path(h)
    if not is_deeply_nested(h):  # see test_finnhub_handler_survives_deep_nesting
        check_finnhub_handler(h)


@pytest.mark.parametrize("h", PINNED, ids=lambda h: h.kind)
def test_pinned_hostile_payloads(h):
    """The cases the issue names, explicitly: 1 MiB strings, 2,000 levels of nesting, NaN, 1e400, ..."""
    check_raw_path(h)
    check_sink_path(h)
    if not is_deeply_nested(h):
        check_finnhub_handler(h)


def test_dlq_record_keeps_any_bytes():
    for raw in (b"", b"\xff\xfe\x00", "caf\xe9 \u20ac\U0001d11e".encode(), b'"\\\n\x00', bytes(range(256))):
        message, back = dlq_raw(dlq_record(raw, "malformed_json", "hostile", "trades", 1))
        assert back == raw and message["reason"] == "malformed_json"


@pytest.mark.parametrize("where", ["finnhub_ws", "replay_line"])
def test_finnhub_handler_survives_deep_nesting(where):
    message = bytes(nested(2_000))
    publisher = MemoryPublisher()
    if where == "finnhub_ws":
        MessageHandler(EventSink(publisher, "finnhub")).handle(message)
        assert publisher.dlq_reasons() == ["malformed_json"]
    else:
        assert parse_line(message.decode()) is None
