"""Prometheus metrics of `python -m producer`: what arrived, what Kafka acknowledged, what went to the DLQ and why,
reconnects, and how long ago the source last said anything.

Each ProducerMetrics owns its registry, so two producers in one process (the tests) never share counters.
Labels never carry message content or secrets: sources, topics and reason strings only.
"""
from __future__ import annotations

import math
import threading
import time
from typing import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server


class ProducerMetrics:
    def __init__(self, clock: Callable[[], float] = time.time):
        self.registry = CollectorRegistry()
        self._clock = clock
        self._last_message_at: float | None = None
        self._lock = threading.Lock()
        self.received = Counter("stocklake_producer_messages_received", "Messages received from the source",
                                ["source"], registry=self.registry)
        self.published = Counter("stocklake_producer_messages_published",
                                 "Messages acknowledged by Kafka (delivery callbacks without error)", ["topic"],
                                 registry=self.registry)
        self.delivery_failures = Counter("stocklake_producer_delivery_failures",
                                         "Messages Kafka did not acknowledge", ["topic"], registry=self.registry)
        self.dlq = Counter("stocklake_producer_dlq_messages", "Messages sent to the DLQ, by reason", ["reason"],
                           registry=self.registry)
        self.reconnects = Counter("stocklake_producer_reconnects", "Reconnections to the source", ["source"],
                                  registry=self.registry)
        self.last_message_age = Gauge("stocklake_producer_last_message_age_seconds",
                                      "Seconds since the source last delivered a message (NaN before the first)",
                                      registry=self.registry)
        self.last_message_age.set_function(self._age)

    def message_received(self, source: str, count: int = 1) -> None:
        self.received.labels(source).inc(count)
        with self._lock:
            self._last_message_at = self._clock()

    def _age(self) -> float:
        with self._lock:
            last = self._last_message_at
        return math.nan if last is None else max(0.0, self._clock() - last)

    def serve(self, host: str, port: int):
        """Start the /metrics HTTP endpoint in a daemon thread; returns the server (server.server_port)."""
        server, _thread = start_http_server(port, addr=host, registry=self.registry)
        return server
