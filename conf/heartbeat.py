"""Heartbeats: the record the producer and the stream publish to kafka.heartbeats_topic, and the watchdog's verdict.

Pure functions, shared by producer/heartbeat.py, spark_jobs/lib/heartbeat.py and spark_jobs/watchdog.py (no Kafka
client here). A heartbeat is one compact JSON object, UTF-8, keyed by its sender on a compacted topic, so the
topic keeps about the newest record of each sender:

    {"sender": "producer:<source>" | "stream", "host": "...", "pid": 1234,
     "sent_at": "2026-01-05T15:00:10.000Z",            when the record was built (UTC)
     "last_event_time": "2026-01-05T15:00:09.817Z",    newest event time sent (producer) or seen (stream); null if none
     "last_batch_time": "2026-01-05T15:00:09.900Z",    producer: its last send; stream: its newest finished batch
     "counts": {...},                                  cumulative since the process started
     "stopped": false,                                 true on the final heartbeat at a clean exit
     ...}                                              sender-specific extras (the stream's "queries")

Verdicts (assess_heartbeats): the stream must have a heartbeat no older than watchdog.max_heartbeat_age_seconds;
a producer heartbeat that exists must be that fresh too, unless it is the final one of a producer that stopped.
The limit is inclusive (age == max is fresh).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Mapping


STREAM_SENDER = "stream"
PRODUCER_PREFIX = "producer:"
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_TIME_FIELDS = ("sent_at", "last_event_time", "last_batch_time")


def producer_sender(source: str) -> str:
    return PRODUCER_PREFIX + source


# ---- times --------------------------------------------------------------------------------------------------------

def iso_utc(moment: datetime | None) -> str | None:
    """2026-01-05T15:00:00.123Z (milliseconds, UTC), or None."""
    if moment is None:
        return None
    return moment.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def from_epoch_ms(ms: int | None) -> datetime | None:
    return None if ms is None else _EPOCH + timedelta(milliseconds=ms)  # exact: no float on the way


def from_epoch_seconds(seconds: float | None) -> datetime | None:
    return None if seconds is None else datetime.fromtimestamp(seconds, tz=timezone.utc)


def parse_time(text: str) -> datetime:
    """An ISO 8601 time with an offset (or Z) -> aware datetime; ValueError otherwise."""
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        raise ValueError(f"no UTC offset in {text!r}")
    return moment.astimezone(timezone.utc)


# ---- the record ---------------------------------------------------------------------------------------------------

def build_heartbeat(sender: str, *, host: str, pid: int, sent_at: datetime, last_event_time: datetime | None,
                    last_batch_time: datetime | None, counts: Mapping[str, Any], stopped: bool = False,
                    **extra: Any) -> dict[str, Any]:
    return {"sender": sender, "host": host, "pid": pid, "sent_at": iso_utc(sent_at),
            "last_event_time": iso_utc(last_event_time), "last_batch_time": iso_utc(last_batch_time),
            "counts": dict(counts), "stopped": stopped, **extra}


def encode_heartbeat(record: Mapping[str, Any]) -> tuple[bytes, bytes]:
    """(key, value) of the Kafka record: the sender, and the compact JSON."""
    return record["sender"].encode("utf-8"), json.dumps(record, separators=(",", ":")).encode("utf-8")


@dataclass(frozen=True)
class Heartbeat:
    sender: str
    host: str
    pid: int
    sent_at: datetime
    last_event_time: datetime | None
    last_batch_time: datetime | None
    counts: dict[str, Any]
    stopped: bool
    record: dict[str, Any] = field(repr=False)  # everything it carried, extras included


def parse_heartbeat(value: bytes | str, key: str | None = None) -> Heartbeat:
    """A heartbeat's Kafka value (and key, which must be its sender) -> Heartbeat; ValueError saying what is wrong."""
    try:
        record = json.loads(value)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"not JSON: {exc}") from None
    if not isinstance(record, dict):
        raise ValueError(f"not a JSON object: {type(record).__name__}")
    sender = record.get("sender")
    if not isinstance(sender, str) or not sender:
        raise ValueError("no sender")
    if key is not None and key != sender:
        raise ValueError(f"key {key!r} is not its sender {sender!r}")
    times: dict[str, datetime | None] = {}
    for name in _TIME_FIELDS:
        text = record.get(name)
        if text is None and name != "sent_at":
            times[name] = None
            continue
        if not isinstance(text, str):
            raise ValueError(f"{name}: not an ISO 8601 time: {text!r}")
        try:
            times[name] = parse_time(text)
        except ValueError:
            raise ValueError(f"{name}: not an ISO 8601 time with an offset: {text!r}") from None
    counts = record.get("counts", {})
    if not isinstance(counts, dict):
        raise ValueError(f"counts: not an object: {counts!r}")
    pid = record.get("pid")
    return Heartbeat(sender=sender, host=str(record.get("host", "")), pid=pid if isinstance(pid, int) else -1,
                     sent_at=times["sent_at"], last_event_time=times["last_event_time"],  # type: ignore[arg-type]
                     last_batch_time=times["last_batch_time"], counts=counts,
                     stopped=record.get("stopped") is True, record=record)


def topic_exists(client: Any, topic: str, timeout: float) -> bool:
    """Whether the topic exists, asked of a confluent-kafka client (list_topics). Senders ask once up front: librdkafka
    holds a record for an unknown topic for up to topic.metadata.propagation.max.ms (30 s) before failing it, which
    would hold up every flush. KafkaException when Kafka does not answer."""
    metadata = client.list_topics(topic, timeout=timeout).topics.get(topic)
    return metadata is not None and metadata.error is None and bool(metadata.partitions)


# ---- the verdict --------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Verdict:
    sender: str
    healthy: bool
    # fresh, stopped (a final heartbeat: fresh, or a producer's of any age), stale, missing or unreadable
    state: str
    age_seconds: float | None
    reasons: list[str]
    heartbeat: Heartbeat | None

    def as_dict(self) -> dict[str, Any]:
        return {"sender": self.sender, "healthy": self.healthy, "state": self.state,
                "age_seconds": None if self.age_seconds is None else round(self.age_seconds, 3),
                "reasons": list(self.reasons), "heartbeat": self.heartbeat.record if self.heartbeat else None}


def assess_heartbeat(sender: str, heartbeat: Heartbeat | str | None, now: datetime, max_age_seconds: float,
                     topic: str) -> Verdict:
    """The verdict on one sender's newest heartbeat: a Heartbeat, an error string (its newest record could not be
    read), or None (none on the topic)."""
    if heartbeat is None:
        return Verdict(sender, False, "missing", None,
                       [f"no heartbeat on {topic}: not running, or its heartbeat is off (0 s interval)"], None)
    if isinstance(heartbeat, str):
        return Verdict(sender, False, "unreadable", None, [f"unreadable heartbeat on {topic}: {heartbeat}"], None)
    age = (now - heartbeat.sent_at).total_seconds()
    if age <= max_age_seconds:
        return Verdict(sender, True, "stopped" if heartbeat.stopped else "fresh", age, [], heartbeat)
    if heartbeat.stopped and sender != STREAM_SENDER:
        return Verdict(sender, True, "stopped", age, [], heartbeat)  # a producer that said it stopped
    said = ", its last one said it stopped" if heartbeat.stopped else ""
    return Verdict(sender, False, "stale", age,
                   [f"stale: last heartbeat {age:,.1f} s ago{said} "
                    f"(> watchdog.max_heartbeat_age_seconds {max_age_seconds:,})"], heartbeat)


def assess_heartbeats(newest: Mapping[str, Heartbeat | str], now: datetime, max_age_seconds: float,
                      topic: str) -> list[Verdict]:
    """Verdicts for every sender with a heartbeat, and for the stream whether or not it has one: the stream
    first, then the others by name."""
    senders = [STREAM_SENDER] + sorted(s for s in newest if s != STREAM_SENDER)
    return [assess_heartbeat(s, newest.get(s), now, max_age_seconds, topic) for s in senders]


def describe_counts(counts: Mapping[str, Any]) -> list[str]:
    """Readable lines of a heartbeat's counts: one for flat counts, one per query for the stream's nested ones."""
    flat = [f"{k} {v:,}" if isinstance(v, int) else f"{k} {v}" for k, v in counts.items() if not isinstance(v, dict)]
    lines = [", ".join(flat)] if flat else []
    for name, inner in counts.items():
        if isinstance(inner, dict):
            lines.append(f"{name}: " + ", ".join(f"{k} {v:,}" if isinstance(v, int) else f"{k} {v}"
                                                for k, v in inner.items()))
    return lines


def render_verdict(verdict: Verdict) -> str:
    """The watchdog's lines for one sender: a head line, its reasons, its counts."""
    name = f"heartbeat {verdict.sender}"
    status = "ok" if verdict.healthy else "UNHEALTHY"
    beat = verdict.heartbeat
    if beat is None:
        return "\n".join([f"{name}: {status}: {verdict.state}", *[f"  {name}: {r}" for r in verdict.reasons]])
    what = "final heartbeat" if beat.stopped else "last heartbeat"
    batch = "last batch" if verdict.sender == STREAM_SENDER else "last send"
    head = (f"{name}: {status}: {verdict.state}: {what} {verdict.age_seconds:,.0f} s ago from {beat.host} "
            f"(pid {beat.pid}); {batch} {iso_utc(beat.last_batch_time) or 'none'}, "
            f"last event {iso_utc(beat.last_event_time) or 'none'}")
    return "\n".join([head, *[f"  {name}: {r}" for r in verdict.reasons],
                      *[f"  {line}" for line in describe_counts(beat.counts)]])
