"""An in-memory publisher with KafkaPublisher's interface, for tests of what a source publishes where.

Tests that need Kafka itself use the real broker (tests/integration); this one only records, and 'delivers'
everything on flush.
"""
from __future__ import annotations

import json


class MemoryPublisher:
    trades_topic = "market.trades.v1"
    quotes_topic = "market.quotes.v1"
    dlq_topic = "market.dlq.v1"

    def __init__(self) -> None:
        self.messages: list[tuple[str, bytes | None, bytes]] = []
        self.dlq: list[dict] = []  # {key, raw, reason, source, intended_topic}
        self.errors: list[str] = []
        self.metrics = None
        self.flushes = 0

    @property
    def delivered_total(self) -> int:
        return len(self.messages) + len(self.dlq) if self.flushes else 0

    @property
    def failed_total(self) -> int:
        return 0

    def publish(self, topic: str, key: bytes | None, value: bytes) -> None:
        self.messages.append((topic, key, value))

    def publish_dlq(self, key, raw, reason, source, intended_topic=None) -> None:
        self.dlq.append({"key": key, "raw": raw, "reason": reason, "source": source,
                         "intended_topic": intended_topic or self.trades_topic})

    def poll(self, timeout: float = 0) -> int:
        return 0

    def flush(self, timeout: float) -> int:
        self.flushes += 1
        return 0

    def events(self, topic: str) -> list[dict]:
        return [json.loads(value) for t, _, value in self.messages if t == topic]

    def dlq_reasons(self) -> list[str]:
        return [record["reason"] for record in self.dlq]
