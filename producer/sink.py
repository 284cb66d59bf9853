"""The publish path every live source shares (Finnhub WebSocket, Finnhub REST, replay).

A source hands over events it built (trade or quote dicts) or raw payloads it could not make sense of; the sink
validates events against their contract and publishes valid ones to their topic keyed by symbol, and everything
else to the DLQ with the reason. Nothing is dropped: every call ends in exactly one publish. It also keeps the
counts for the run summary and feeds the Prometheus metrics.
"""
from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Mapping, Protocol

from conf.contracts.events import QUOTE_SCHEMA_NAME, SCHEMA_NAME, EventValidator, encode
from producer.metrics import ProducerMetrics

log = logging.getLogger(__name__)


class Publisher(Protocol):
    """What the sink needs from producer.kafka_sink.KafkaPublisher."""

    trades_topic: str
    quotes_topic: str
    dlq_topic: str
    errors: list[str]

    @property
    def delivered_total(self) -> int: ...

    @property
    def failed_total(self) -> int: ...

    def publish(self, topic: str, key: bytes | None, value: bytes) -> None: ...

    def publish_dlq(self, key: bytes | None, raw: bytes, reason: str, source: str,
                    intended_topic: str | None = None) -> None: ...

    def poll(self, timeout: float = 0) -> int: ...

    def flush(self, timeout: float) -> int: ...


@dataclass
class SinkStats:
    received: int = 0                       # messages from the source (a Finnhub message may hold many trades)
    trades: int = 0                         # valid trade events published
    quotes: int = 0                         # valid quote events published
    dlq_by_reason: Counter[str] = field(default_factory=Counter)
    trade_event_ids: set[str] = field(default_factory=set)
    quote_event_ids: set[str] = field(default_factory=set)

    @property
    def dlq(self) -> int:
        return sum(self.dlq_by_reason.values())


class EventSink:
    def __init__(self, publisher: Publisher, source: str, metrics: ProducerMetrics | None = None,
                 keep_event_ids: bool = True):
        self.publisher = publisher
        self.source = source
        self.metrics = metrics
        self.stats = SinkStats()
        self._keep_ids = keep_event_ids
        self._trades = EventValidator(SCHEMA_NAME)
        self._quotes = EventValidator(QUOTE_SCHEMA_NAME)

    def received(self, count: int = 1) -> None:
        """The source got `count` messages (pings included): feeds the received counter and last-message age."""
        self.stats.received += count
        if self.metrics is not None:
            self.metrics.message_received(self.source, count)

    def publish_trade(self, event: Mapping[str, Any]) -> str | None:
        """Publish a trade event to the trades topic, or to the DLQ if it breaks trade.v1; returns the reason."""
        return self._publish(event, self._trades, self.publisher.trades_topic, "trades")

    def publish_quote(self, event: Mapping[str, Any]) -> str | None:
        """Publish a quote event to the quotes topic, or to the DLQ if it breaks quote.v1; returns the reason."""
        return self._publish(event, self._quotes, self.publisher.quotes_topic, "quotes")

    def reject(self, raw: bytes, reason: str, intended_topic: str, key: bytes | None = None) -> None:
        """Send what the source gave us to the DLQ, as received, with the reason."""
        self.stats.dlq_by_reason[reason] += 1
        self.publisher.publish_dlq(key, raw, reason, self.source, intended_topic)

    def _publish(self, event: Mapping[str, Any], validator: EventValidator, topic: str, kind: str) -> str | None:
        symbol = event.get("symbol")
        key = symbol.encode("utf-8") if isinstance(symbol, str) else None
        try:
            payload = encode(event)
        except (TypeError, ValueError):  # NaN/Infinity or a value JSON cannot hold
            self.reject(repr(dict(event)).encode("utf-8"), "malformed_json", topic, key)
            return "malformed_json"
        reason = validator.reason(dict(event))
        if reason is not None:
            self.reject(payload, reason, topic, key)
            return reason
        self.publisher.publish(topic, key, payload)
        if kind == "trades":
            self.stats.trades += 1
            if self._keep_ids:
                self.stats.trade_event_ids.add(event["event_id"])
        else:
            self.stats.quotes += 1
            if self._keep_ids:
                self.stats.quote_event_ids.add(event["event_id"])
        return None

    def summary(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "messages_received": self.stats.received,
            "trades_published": self.stats.trades,
            "distinct_trade_event_ids": len(self.stats.trade_event_ids),
            "quotes_published": self.stats.quotes,
            "distinct_quote_event_ids": len(self.stats.quote_event_ids),
            "sent_dlq": self.stats.dlq,
            "dlq_by_reason": dict(sorted(self.stats.dlq_by_reason.items())),
            "delivered": self.publisher.delivered_total,
            "delivery_failures": self.publisher.failed_total,
            "delivery_errors": list(self.publisher.errors),
        }
