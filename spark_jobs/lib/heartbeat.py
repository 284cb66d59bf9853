"""The streaming job's heartbeat on kafka.heartbeats_topic (record format: conf/heartbeat.py), keyed "stream".

StreamHeartbeat is a StreamingQueryListener of its own (the progress lines leave out eventTime.max, the newest
event time a query saw) that keeps, per query and cumulative since the job started: batches, rows in, rows
dropped by the watermark and, for the queries that count them (silver), rows quarantined; the newest batch (its
id, and when it finished: trigger time + batch duration) and the newest event time. The driver's main loop calls
tick(), which publishes at most every stream.heartbeat_interval_seconds (0 = off), from the driver with a
confluent-kafka Producer; close() publishes the final one ("stopped": true) once the stopped queries' last
progress has arrived. A heartbeat that cannot be sent is a warning, never a failure of the job.

    {"sender": "stream", ..., "last_event_time": newest over the queries, "last_batch_time": newest over the queries,
     "counts": {"bronze_trades": {"batches": 3, "rows_in": 2000, "rows_dropped_by_watermark": 0}, "silver_trades":
     {..., "rows_quarantined": 40}}, "queries": {"silver_trades": {"batch_id": 2, "last_batch_time": ...,
     "last_event_time": ...}, ...}}
"""
from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Callable, Iterable

from pyspark.sql.streaming import StreamingQueryListener

from conf.errors import first_line
from conf.heartbeat import (STREAM_SENDER, build_heartbeat, encode_heartbeat, from_epoch_seconds, iso_utc,
                            parse_time, topic_exists)
from conf.settings import Settings
from spark_jobs.lib.listener import LOGGER_NAME, progress_record

log = logging.getLogger(LOGGER_NAME)

FINAL_FLUSH_SECONDS = 10.0
TOPIC_CHECK_SECONDS = 10.0


@dataclass(frozen=True)
class BatchFacts:
    """What the heartbeat takes from one StreamingQueryProgress."""
    query: str
    batch_id: int
    rows_in: int
    rows_dropped_by_watermark: int
    rows_quarantined: int | None   # None: the query does not count them
    finished_at: datetime | None
    event_time_max: datetime | None


def batch_facts(progress: Any) -> BatchFacts:
    record = progress_record(progress)
    event_time = getattr(progress, "eventTime", None) or {}
    started = getattr(progress, "timestamp", None)
    finished = None
    if started:
        finished = parse_time(started) + timedelta(milliseconds=progress.batchDuration or 0)
    return BatchFacts(query=record["query"], batch_id=record["batch_id"], rows_in=record["rows_in"],
                      rows_dropped_by_watermark=record["rows_dropped_by_watermark"],
                      rows_quarantined=record.get("rows_quarantined"), finished_at=finished,
                      event_time_max=parse_time(event_time["max"]) if event_time.get("max") else None)


class QueryState:
    def __init__(self) -> None:
        self.counts: dict[str, int] = {"batches": 0, "rows_in": 0, "rows_dropped_by_watermark": 0}
        self.batch_id: int | None = None
        self.last_batch_time: datetime | None = None
        self.last_event_time: datetime | None = None

    def add(self, facts: BatchFacts) -> None:
        self.counts["batches"] += 1
        self.counts["rows_in"] += facts.rows_in
        self.counts["rows_dropped_by_watermark"] += facts.rows_dropped_by_watermark
        if facts.rows_quarantined is not None:
            self.counts["rows_quarantined"] = self.counts.get("rows_quarantined", 0) + facts.rows_quarantined
        self.batch_id = facts.batch_id
        if facts.finished_at is not None and (self.last_batch_time is None or facts.finished_at > self.last_batch_time):
            self.last_batch_time = facts.finished_at
        if facts.event_time_max is not None and (self.last_event_time is None
                                                 or facts.event_time_max > self.last_event_time):
            self.last_event_time = facts.event_time_max


def _newest(times: Iterable[datetime | None]) -> datetime | None:
    present = [t for t in times if t is not None]
    return max(present) if present else None


class StreamHeartbeat(StreamingQueryListener):
    """Fed by the queries' progress on Spark's listener thread; publishes from the driver's main loop."""

    def __init__(self, producer: Any, topic: str, interval_seconds: float, *, wall: Callable[[], float] = time.time,
                 host: str | None = None, pid: int | None = None):
        super().__init__()
        self.enabled = producer is not None and interval_seconds > 0
        self._producer, self._topic, self._interval, self._wall = producer, topic, float(interval_seconds), wall
        self._host = host or socket.gethostname()
        self._pid = os.getpid() if pid is None else pid
        self._lock = threading.Lock()
        self._terminated = threading.Condition(self._lock)
        self._terminated_ids: set[str] = set()
        self._queries: dict[str, QueryState] = {}
        self._due: float | None = None
        self.sent = self.delivered = self.failed = 0
        self._closed = False

    # -- fed by Spark's listener thread ------------------------------------------------------------------------

    def onQueryStarted(self, event) -> None:
        with self._lock:
            self._queries.setdefault(event.name, QueryState())

    def onQueryProgress(self, event) -> None:
        try:
            facts = batch_facts(event.progress)
        except Exception as exc:  # liveness bookkeeping must never disturb the listener thread
            log.warning(json.dumps({"event": "heartbeat_progress_unreadable", "error": first_line(exc)}))
            return
        self.add(facts)

    def onQueryIdle(self, event) -> None:
        pass

    def onQueryTerminated(self, event) -> None:
        with self._terminated:
            self._terminated_ids.add(str(event.id))
            self._terminated.notify_all()

    def add(self, facts: BatchFacts) -> None:
        with self._lock:
            self._queries.setdefault(facts.query, QueryState()).add(facts)

    # -- the driver's main loop --------------------------------------------------------------------------------

    def record(self, stopped: bool = False) -> dict[str, Any]:
        with self._lock:
            queries = {name: q for name, q in sorted(self._queries.items())}
            counts = {name: dict(q.counts) for name, q in queries.items()}
            details = {name: {"batch_id": q.batch_id, "last_batch_time": iso_utc(q.last_batch_time),
                              "last_event_time": iso_utc(q.last_event_time)} for name, q in queries.items()}
            last_batch = _newest(q.last_batch_time for q in queries.values())
            last_event = _newest(q.last_event_time for q in queries.values())
        return build_heartbeat(STREAM_SENDER, host=self._host, pid=self._pid, sent_at=from_epoch_seconds(self._wall()),
                               last_event_time=last_event, last_batch_time=last_batch, counts=counts,
                               stopped=stopped, queries=details)

    def tick(self, now: float | None = None) -> None:
        """Publish if due; `now` on the monotonic clock."""
        now = time.monotonic() if now is None else now
        if not self.enabled or (self._due is not None and now < self._due):
            return
        self._due = now + self._interval
        self.send()

    def send(self, stopped: bool = False) -> None:
        if not self.enabled or self._closed:
            return
        key, value = encode_heartbeat(self.record(stopped))
        try:
            self._producer.produce(self._topic, key=key, value=value, on_delivery=self._on_delivery)
            self._producer.poll(0)  # serves earlier heartbeats' delivery callbacks
        except Exception as exc:  # BufferError, KafkaException: liveness must never cost the job
            self.failed += 1
            log.warning(json.dumps({"event": "heartbeat_not_sent", "topic": self._topic, "error": first_line(exc)}))
            return
        self.sent += 1

    def wait_terminated(self, query_ids: Iterable[str], timeout: float) -> bool:
        wanted = set(query_ids)
        with self._terminated:
            return self._terminated.wait_for(lambda: wanted <= self._terminated_ids, timeout)

    def close(self, queries: list, wait_seconds: float = 30.0, flush_seconds: float = FINAL_FLUSH_SECONDS) -> None:
        """The final heartbeat, once the stopped queries' last progress reached this listener."""
        if not self.enabled:
            return
        try:
            self.wait_terminated([str(q.id) for q in queries if not q.isActive], wait_seconds)
        except Exception as exc:  # the JVM may be gone already: send what arrived
            log.debug("heartbeat: waiting for the last progress events failed: %s", exc)
        self.send(stopped=True)
        if self._producer.flush(flush_seconds):
            log.warning(json.dumps({"event": "heartbeat_not_delivered", "topic": self._topic,
                                    "error": f"final heartbeat not delivered within {flush_seconds:.0f} s"}))
            self._producer.purge()  # given up: close() would wait for it up to message.timeout.ms
            self._producer.flush(0)  # serves the purged records' callbacks
        # Closed here, not when the garbage collector finds it: a session that outlives the run (tests, a notebook)
        # keeps no client retrying a broker that may be gone.
        self._producer.close()
        self._closed = True

    def attach(self, spark: Any) -> "StreamHeartbeat":
        """Register as a listener of the session's queries when on."""
        if self.enabled:
            spark.streams.addListener(self)
        return self

    def _on_delivery(self, err: Any, _msg: Any) -> None:
        if err is not None:
            self.failed += 1
            log.warning(json.dumps({"event": "heartbeat_not_delivered", "topic": self._topic, "error": str(err)}))
        else:
            self.delivered += 1


def stream_heartbeat(settings: Settings) -> StreamHeartbeat:
    """The job's heartbeat, with its own Kafka producer (client config and security from the settings). Off when
    stream.heartbeat_interval_seconds is 0 or the topic does not exist (a warning: the job goes on without)."""
    interval = settings.stream.heartbeat_interval_seconds
    topic = settings.kafka.heartbeats_topic
    if interval <= 0:
        return StreamHeartbeat(None, topic, 0)
    from confluent_kafka import Producer

    from conf.kafka_security import client_config

    producer = Producer(client_config(settings, **{"client.id": f"stocklake-stream-{socket.gethostname()}",
                                                   "linger.ms": 0}))
    try:
        exists = topic_exists(producer, topic, TOPIC_CHECK_SECONDS)
    except Exception as exc:  # KafkaException: the preflight already found the brokers; try anyway
        log.warning(json.dumps({"event": "heartbeat_topic_unchecked", "topic": topic, "error": first_line(exc)}))
        exists = True
    if not exists:
        log.warning(json.dumps({"event": "heartbeat_off", "topic": topic, "error": "kafka.heartbeats_topic does not "
                                "exist (scripts/services.py up or docker/create_topics.py creates it)"}))
        return StreamHeartbeat(None, topic, interval)
    return StreamHeartbeat(producer, topic, interval)
