"""Thin Kafka publisher: an idempotent confluent-kafka Producer with delivery accounting and a dead-letter queue.

Everything that decides *what* to send lives elsewhere (producer.cli); this module only sends and counts.
"""
from __future__ import annotations

import base64
import hashlib
import json
import logging
import socket
import time
from collections import Counter
from typing import TYPE_CHECKING, Any, Callable

from confluent_kafka import KafkaException, Producer

from conf.kafka_security import client_config
from conf.settings import Settings

if TYPE_CHECKING:
    from producer.metrics import ProducerMetrics

log = logging.getLogger(__name__)

MAX_KEPT_ERRORS = 5
# publish() serves delivery callbacks once per this many messages: a poll per message cost about a third of the
# publish path's throughput, and a thousand queued callbacks are far below librdkafka's queue limits. Sources that
# send slowly (Finnhub) poll between messages themselves; flush() serves whatever is left.
POLL_EVERY = 1000


def producer_config(settings: Settings, client_id: str | None = None) -> dict[str, Any]:
    """librdkafka configuration for the trades producer, from settings.kafka (with its security) and settings.producer."""
    return client_config(settings, **{
        "client.id": client_id or f"stocklake-producer-{socket.gethostname()}",
        # Idempotence (with acks=all) means librdkafka's retries never duplicate or reorder a partition.
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": settings.producer.linger_ms,
        "batch.size": settings.producer.batch_size_bytes,
        "compression.type": settings.producer.compression,
        "delivery.timeout.ms": settings.producer.delivery_timeout_ms,
    })


# A DLQ message must fit Kafka's default 1 MB message limit whatever was rejected: JSON escaping or base64 can
# double a payload, so raw payloads longer than this keep their first bytes, plus their length and sha256.
DLQ_RAW_LIMIT_BYTES = 256 * 1024


def dlq_record(raw: bytes, reason: str, source: str, intended_topic: str, received_at_ms: int) -> bytes:
    """The DLQ message for a rejected payload: raw kept as text if it is UTF-8, else base64; a payload over
    DLQ_RAW_LIMIT_BYTES is cut there (raw_truncated, with raw_bytes and raw_sha256 of the whole payload)."""
    record: dict[str, Any] = {"reason": reason, "source": source, "intended_topic": intended_topic}
    if len(raw) > DLQ_RAW_LIMIT_BYTES:
        record.update(raw_truncated=True, raw_bytes=len(raw), raw_sha256=hashlib.sha256(raw).hexdigest())
        raw = raw[:DLQ_RAW_LIMIT_BYTES]
    try:
        record["raw"] = raw.decode("utf-8")
    except UnicodeDecodeError:
        record["raw"] = base64.b64encode(raw).decode("ascii")
        record["raw_encoding"] = "base64"
    record["received_at_ms"] = received_at_ms
    return json.dumps(record, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


class KafkaPublisher:
    """Publishes to Kafka and counts deliveries per topic; never drops a record on a full local queue."""

    def __init__(self, settings: Settings, trades_topic: str | None = None, client_id: str | None = None,
                 wall_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000,
                 metrics: "ProducerMetrics | None" = None):
        self.trades_topic: str = trades_topic or settings.kafka.trades_topic
        self.quotes_topic: str = settings.kafka.quotes_topic
        self.dlq_topic: str = settings.kafka.dlq_topic
        self.metrics = metrics
        self.sent: Counter[str] = Counter()       # produce() accepted, per topic
        self.delivered: Counter[str] = Counter()  # broker acknowledged, per topic
        self.failed: Counter[str] = Counter()     # delivery (or produce) failed, per topic
        self.errors: list[str] = []               # the first few error strings
        self._wall_ms = wall_ms
        self._unpolled = 0
        self._published_by_topic: dict[str, Any] = {}  # the metric's child per topic: labels() is a dict lookup
        config = producer_config(settings, client_id)
        # Log where we connect, not the config dict (a future SASL config would carry credentials).
        log.info("kafka producer %s -> %s (trades topic %s, dlq %s)", config["client.id"],
                 config["bootstrap.servers"], self.trades_topic, self.dlq_topic)
        self._producer = Producer(config)

    @property
    def delivered_total(self) -> int:
        return sum(self.delivered.values())

    @property
    def failed_total(self) -> int:
        return sum(self.failed.values())

    def _record_error(self, topic: str, error: Any) -> None:
        self.failed[topic] += 1
        if self.metrics is not None:
            self.metrics.delivery_failures.labels(topic).inc()
        if len(self.errors) < MAX_KEPT_ERRORS:
            self.errors.append(f"{topic}: {error}")

    def _on_delivery(self, err: Any, msg: Any) -> None:
        # Called from poll()/flush() on this thread, once per message.
        if err is not None:
            self._record_error(msg.topic(), err)
        else:
            topic = msg.topic()
            self.delivered[topic] += 1
            if self.metrics is not None:
                child = self._published_by_topic.get(topic)
                if child is None:
                    child = self._published_by_topic[topic] = self.metrics.published.labels(topic)
                child.inc()

    def publish(self, topic: str, key: bytes | None, value: bytes) -> None:
        """Queue one message; when the local queue is full, serve callbacks and retry rather than drop."""
        while True:
            try:
                self._producer.produce(topic, value=value, key=key, on_delivery=self._on_delivery)
                break
            except BufferError:
                self._producer.poll(0.1)
            except KafkaException as exc:  # e.g. message larger than message.max.bytes: it can never be sent
                self._record_error(topic, exc.args[0] if exc.args else exc)
                return
        self.sent[topic] += 1
        self._unpolled += 1
        if self._unpolled >= POLL_EVERY:
            self._unpolled = 0
            self._producer.poll(0)

    def publish_dlq(self, key: bytes | None, raw: bytes, reason: str, source: str,
                    intended_topic: str | None = None) -> None:
        """Send a rejected payload to the DLQ topic with why it was rejected and where it was headed."""
        if self.metrics is not None:
            self.metrics.dlq.labels(reason).inc()
        self.publish(self.dlq_topic, key,
                     dlq_record(raw, reason, source, intended_topic or self.trades_topic, self._wall_ms()))

    def poll(self, timeout: float = 0) -> int:
        """Serve delivery callbacks; returns how many were served."""
        return self._producer.poll(timeout)

    def flush(self, timeout: float) -> int:
        """Wait up to timeout seconds for outstanding deliveries; returns how many are still undelivered."""
        return self._producer.flush(timeout)
