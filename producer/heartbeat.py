"""The producer's heartbeat on kafka.heartbeats_topic (record format: conf/heartbeat.py), keyed producer:<source>.

One when the run starts, one every producer.heartbeat_interval_seconds while it runs (0 = off), and a final one
("stopped": true) after the last flush, with the final counts. It goes out on the publisher's own confluent-kafka
Producer (one connection, one delivery thread) with its own delivery callback: it is never counted among the
events, and a heartbeat that cannot be sent is a warning, never a failure of the run.

Counts (cumulative): sent (events to their topic), dlq (records to the DLQ), delivered and failed (broker
acknowledgements and failures of both), and on the final heartbeat undelivered (what the last flush left).
"""
from __future__ import annotations

import json
import logging
import os
import socket
import time
from typing import Any, Callable, Mapping

from conf.heartbeat import (build_heartbeat, encode_heartbeat, from_epoch_ms, from_epoch_seconds, producer_sender,
                            topic_exists)
from conf.settings import Settings

log = logging.getLogger(__name__)

# The final heartbeat's own flush: long enough for a healthy broker, short enough not to hold up the exit.
FINAL_FLUSH_SECONDS = 10.0
TOPIC_CHECK_SECONDS = 10.0
EVENT_TIME_FIELDS = ("trade_ts", "quote_ts")  # the event time of trade.v1 and quote.v1, ms since the epoch


class ProducerHeartbeat:
    """Keeps the newest event time and last send, and publishes the heartbeat when tick() finds it due."""

    def __init__(self, producer: Any, topic: str, source: str, interval_seconds: float,
                 counts: Callable[[], Mapping[str, int]], *, wall: Callable[[], float] = time.time,
                 host: str | None = None, pid: int | None = None):
        self.enabled = producer is not None and interval_seconds > 0
        self.sender = producer_sender(source)
        self._producer, self._topic, self._interval = producer, topic, float(interval_seconds)
        self._counts, self._wall = counts, wall
        self._host = host or socket.gethostname()
        self._pid = os.getpid() if pid is None else pid
        self._due: float | None = None        # caller's monotonic clock; None: the first tick sends
        self._newest_event_ms: int | None = None
        self._last_send: float | None = None  # wall clock, seconds
        self.sent = self.delivered = self.failed = 0

    def event_sent(self, event_time_ms: int | None) -> None:
        """An event went to its topic (not the DLQ): its event time (ms) counts towards the newest."""
        if event_time_ms is not None and (self._newest_event_ms is None or event_time_ms > self._newest_event_ms):
            self._newest_event_ms = event_time_ms
        self._last_send = self._wall()

    def tick(self, now: float) -> None:
        """Send a heartbeat if one is due; `now` on the caller's monotonic clock."""
        if not self.enabled or (self._due is not None and now < self._due):
            return
        self._due = now + self._interval
        self.send()

    def record(self, stopped: bool = False, extra_counts: Mapping[str, int] | None = None) -> dict[str, Any]:
        return build_heartbeat(self.sender, host=self._host, pid=self._pid, sent_at=from_epoch_seconds(self._wall()),
                               last_event_time=from_epoch_ms(self._newest_event_ms),
                               last_batch_time=from_epoch_seconds(self._last_send),
                               counts={**self._counts(), **(extra_counts or {})}, stopped=stopped)

    def send(self, stopped: bool = False, extra_counts: Mapping[str, int] | None = None) -> None:
        if not self.enabled:
            return
        key, value = encode_heartbeat(self.record(stopped, extra_counts))
        try:
            self._producer.produce(self._topic, key=key, value=value, on_delivery=self._on_delivery)
        except Exception as exc:  # BufferError (queue full), KafkaException: liveness must never cost the run
            log.warning("heartbeat to %s not sent: %s", self._topic, exc)
            self.failed += 1
            return
        self.sent += 1

    def close(self, undelivered: int, timeout: float = FINAL_FLUSH_SECONDS) -> None:
        """The final heartbeat (stopped, with what the last flush left undelivered), flushed briefly."""
        if not self.enabled:
            return
        self.send(stopped=True, extra_counts={"undelivered": undelivered})
        if self._producer.flush(timeout):
            log.warning("final heartbeat to %s not delivered within %.0f s", self._topic, timeout)

    def _on_delivery(self, err: Any, _msg: Any) -> None:
        if err is not None:
            self.failed += 1
            log.warning("heartbeat to %s failed: %s", self._topic, err)
        else:
            self.delivered += 1

    def observing(self, publisher: Any) -> Any:
        """The publisher, wrapped to report its events' times when the heartbeat is on."""
        return ObservedPublisher(publisher, self) if self.enabled else publisher


class ObservedPublisher:
    """A publisher (producer.sink.Publisher) that tells the heartbeat the event time of each event it publishes to
    the trades or quotes topic; everything else goes straight to the publisher. For the live sources, whose sink
    publishes only validated events there."""

    def __init__(self, publisher: Any, heartbeat: ProducerHeartbeat):
        self._publisher, self._heartbeat = publisher, heartbeat

    def __getattr__(self, name: str) -> Any:
        return getattr(self._publisher, name)

    def publish(self, topic: str, key: bytes | None, value: bytes) -> None:
        self._publisher.publish(topic, key, value)
        if topic in (self._publisher.trades_topic, self._publisher.quotes_topic):
            self._heartbeat.event_sent(event_time_ms(value))


def event_time_ms(value: bytes) -> int | None:
    """trade_ts or quote_ts of an encoded event, None if it has neither."""
    try:
        event = json.loads(value)
    except ValueError:
        return None
    for name in EVENT_TIME_FIELDS:
        if isinstance(event, dict) and isinstance(event.get(name), int):
            return event[name]
    return None


def sink_counts(sink: Any) -> dict[str, int]:
    """Counts of a run (producer.sink.EventSink, every source's)."""
    return {"sent": sink.stats.sent, "dlq": sink.stats.dlq,
            "delivered": sink.publisher.delivered_total, "failed": sink.publisher.failed_total}


def producer_heartbeat(settings: Settings, publisher: Any, source: str,
                       counts: Callable[[], Mapping[str, int]]) -> ProducerHeartbeat:
    """The run's heartbeat. Off (it sends nothing) when producer.heartbeat_interval_seconds is 0, when the
    publisher has no Kafka producer (tests' in-memory publishers), or when the heartbeat topic does not exist
    (a warning: the run goes on without)."""
    # KafkaPublisher's confluent-kafka Producer: the heartbeat shares its connection and delivery callbacks.
    producer = getattr(publisher, "_producer", None)
    interval = settings.producer.heartbeat_interval_seconds
    topic = settings.kafka.heartbeats_topic
    if producer is not None and interval > 0 and not _topic_exists(producer, topic):
        log.warning("heartbeat topic %s does not exist (kafka.heartbeats_topic): no heartbeats from this run; "
                    "`python scripts/services.py up` or docker/create_topics.py creates it", topic)
        producer = None
    return ProducerHeartbeat(producer, topic, source, interval, counts)


def _topic_exists(producer: Any, topic: str) -> bool:
    try:
        return topic_exists(producer, topic, TOPIC_CHECK_SECONDS)
    except Exception as exc:  # KafkaException: the run's own preflight decides whether Kafka is reachable
        log.warning("cannot check the heartbeat topic %s: %s", topic, exc)
        return True
