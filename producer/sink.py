"""The publish path every source shares (the simulator, Finnhub WebSocket, Finnhub REST, replay).

A source hands over events it built (trade or quote dicts), trade payloads as it produced them (the simulator's
records), or raw payloads it could not make sense of; the sink validates them against their contract and
publishes valid ones to their topic keyed by symbol, and everything else to the DLQ with the reason. Nothing is
dropped: every call ends in exactly one publish. It also keeps the counts for the run summary and feeds the
Prometheus metrics.
"""
from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Mapping, Protocol

from conf.contracts.events import MALFORMED_JSON, QUOTE_SCHEMA_NAME, SCHEMA_NAME, EventValidator, encode
from conf.settings import Settings
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


# Past delivery.timeout.ms every message has been delivered or failed; the margin covers the callbacks' arrival.
FLUSH_MARGIN_SECONDS = 10.0


def flush_at_end(publisher: Publisher, settings: Settings) -> int:
    """Wait for every outstanding message of a run to be delivered or failed; how many stayed undelivered."""
    return publisher.flush(settings.producer.delivery_timeout_ms / 1000 + FLUSH_MARGIN_SECONDS)


@dataclass
class SinkStats:
    received: int = 0                       # messages from the source (a Finnhub message may hold many trades)
    trades: int = 0                         # valid trade events published
    quotes: int = 0                         # valid quote events published
    dlq_by_reason: Counter[str] = field(default_factory=Counter)
    # Invalid trade payloads published to the trades topic on purpose (the simulator's --malformed-target topic).
    unvalidated_by_reason: Counter[str] = field(default_factory=Counter)
    # 64-bit prefixes of the sha256 ids: exact in practice, and a fraction of the memory of the full strings.
    trade_event_ids: set[int] = field(default_factory=set)
    quote_event_ids: set[int] = field(default_factory=set)

    @property
    def dlq(self) -> int:
        return sum(self.dlq_by_reason.values())

    @property
    def sent(self) -> int:
        """Everything published to an event topic (not the DLQ)."""
        return self.trades + self.quotes + sum(self.unvalidated_by_reason.values())


class EventSink:
    def __init__(self, publisher: Publisher, source: str, metrics: ProducerMetrics | None = None):
        self.publisher = publisher
        self.source = source
        self.metrics = metrics
        self.stats = SinkStats()
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

    def publish_trade_payload(self, raw: bytes, key: bytes | None, unvalidated: bool = False) -> str | None:
        """Publish a trade payload as the source produced it: to the trades topic byte for byte when it keeps the
        contract, else to the DLQ with the reason, or, when `unvalidated`, to the trades topic all the same (a
        misbehaving upstream on purpose: the stream must quarantine it with that reason). Returns the reason."""
        event, reason = self._trades.validate_payload(raw)
        topic = self.publisher.trades_topic
        if reason is not None and not unvalidated:
            self.reject(raw, reason, topic, key)
            return reason
        self.publisher.publish(topic, key, raw)
        if reason is None:
            self._published("trades", event["event_id"])
        else:
            self.stats.unvalidated_by_reason[reason] += 1
        return reason

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
            self.reject(repr(dict(event)).encode("utf-8"), MALFORMED_JSON, topic, key)
            return MALFORMED_JSON
        reason = validator.reason(dict(event))
        if reason is not None:
            self.reject(payload, reason, topic, key)
            return reason
        self.publisher.publish(topic, key, payload)
        self._published(kind, event["event_id"])
        return None

    def _published(self, kind: str, event_id: str) -> None:
        if kind == "trades":
            self.stats.trades += 1
            self.stats.trade_event_ids.add(int(event_id[:16], 16))
        else:
            self.stats.quotes += 1
            self.stats.quote_event_ids.add(int(event_id[:16], 16))

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
