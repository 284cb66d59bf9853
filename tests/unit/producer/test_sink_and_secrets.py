"""producer.sink (the publish path of the live sources), producer.secrets and producer.backoff."""
from __future__ import annotations

import json
import logging
import math

import pytest

from producer.backoff import Backoff
from conf.contracts.events import make_quote_event
from producer.metrics import ProducerMetrics
from producer.secrets import MissingApiKey, RedactingAdapter, RedactingFilter, api_key, redact
from producer.sink import EventSink
from tests.standins.memory_publisher import MemoryPublisher

SECRET = "s3cr3t-finnhub-key"  # pragma: allowlist secret


def quote(**changes):
    fields = dict(current=190.5, change=1.5, percent_change=0.79, high=191.0, low=188.2, open=189.0,
                  previous_close=189.0)
    fields.update(changes)
    return make_quote_event("finnhub", "AAPL", 1_795_185_000_000, **fields)


def test_valid_quotes_go_to_the_quotes_topic_and_invalid_ones_to_the_dlq_with_the_reason():
    publisher, metrics = MemoryPublisher(), ProducerMetrics()
    publisher.metrics = metrics
    sink = EventSink(publisher, "finnhub-rest", metrics)
    assert sink.publish_quote(quote()) is None
    assert sink.publish_quote(quote(change=None, percent_change=None)) is None
    assert sink.publish_quote(quote(current=0.0)) == "current:exclusiveMinimum"
    assert sink.publish_quote(quote(high=math.nan)) == "malformed_json"
    assert [(t, k) for t, k, _ in publisher.messages] == [("market.quotes.v1", b"AAPL")] * 2
    assert publisher.events("market.quotes.v1")[0] == quote()
    assert [(r["reason"], r["intended_topic"], r["key"]) for r in publisher.dlq] == [
        ("current:exclusiveMinimum", "market.quotes.v1", b"AAPL"), ("malformed_json", "market.quotes.v1", b"AAPL")]
    assert json.loads(publisher.dlq[0]["raw"])["current"] == 0.0
    summary = sink.summary()
    assert (summary["quotes_published"], summary["distinct_quote_event_ids"], summary["sent_dlq"]) == (2, 2, 2)


def test_quote_event_ids_are_deterministic():
    assert quote()["event_id"] == quote()["event_id"]
    assert quote()["event_id"] != quote(current=190.51)["event_id"]
    assert quote(change=None)["event_id"] != quote(change=0.0)["event_id"]


def test_received_feeds_the_metrics():
    now = [100.0]
    metrics = ProducerMetrics(clock=lambda: now[0])
    assert math.isnan(metrics.registry.get_sample_value("stocklake_producer_last_message_age_seconds"))
    EventSink(MemoryPublisher(), "replay", metrics).received(4)
    now[0] = 112.5
    assert metrics.registry.get_sample_value("stocklake_producer_messages_received_total",
                                             {"source": "replay"}) == 4
    assert metrics.registry.get_sample_value("stocklake_producer_last_message_age_seconds") == 12.5


def test_api_key_comes_from_the_environment_only():
    assert api_key({"FINNHUB_API_KEY": f"  {SECRET}\n"}) == SECRET
    for environ in ({}, {"FINNHUB_API_KEY": "  "}):
        with pytest.raises(MissingApiKey, match="^FINNHUB_API_KEY is not set: export your Finnhub API key"):
            api_key(environ)


def test_redacting_filter_masks_messages_arguments_and_tracebacks(caplog):
    logger = logging.getLogger("test.redaction")
    caplog.set_level(logging.DEBUG)
    redactor = RedactingFilter(SECRET)
    caplog.handler.addFilter(redactor)
    try:
        logger.info("url wss://ws.finnhub.io?token=%s", SECRET)
        try:
            raise ConnectionError(f"cannot reach ?token={SECRET}")
        except ConnectionError:
            logger.exception("failed")
    finally:
        caplog.handler.removeFilter(redactor)
    assert SECRET not in caplog.text
    assert "url wss://ws.finnhub.io?token=***" in caplog.text
    assert "ConnectionError: cannot reach ?token=***" in caplog.text


def test_redacting_adapter_masks_what_a_library_logs(caplog):
    caplog.set_level(logging.DEBUG)
    adapter = RedactingAdapter(logging.getLogger("test.library"), SECRET)
    adapter.debug("> GET /?token=%s HTTP/1.1", SECRET)
    try:
        raise OSError(f"reset by peer {SECRET}")
    except OSError:
        adapter.error("connection failed", exc_info=True)
    assert [r.getMessage().splitlines()[0] for r in caplog.records] == ["> GET /?token=*** HTTP/1.1",
                                                                       "connection failed"]
    assert SECRET not in caplog.text and "OSError: reset by peer ***" in caplog.text
    assert redact("a-b-a", "a") == "***-b-***" and redact("text", "") == "text"


def test_backoff_bounds_and_reset():
    backoff = Backoff(0.5, 4.0, rand=lambda: 1.0)
    assert [backoff.next_delay() for _ in range(6)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    backoff.reset()
    assert backoff.next_delay() == 0.5
    assert Backoff(1, 8, rand=lambda: 0.0).next_delay() == 0.5
    assert Backoff(1, 8).step(10_000) == 8
    with pytest.raises(ValueError, match="0 < initial <= maximum"):
        Backoff(2, 1)
