"""Heartbeats without Kafka: the record (conf/heartbeat.py), the verdicts at their boundaries, the producer's and the
stream's heartbeat objects against a stand-in for confluent-kafka's Producer, and the producer CLI's hooks."""
from __future__ import annotations

import importlib.util
import json
import logging
import os
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace

import pytest

from conf.heartbeat import (Heartbeat, assess_heartbeat, assess_heartbeats, build_heartbeat,
                            encode_heartbeat, iso_utc, parse_heartbeat, render_verdict)
from conf.settings import ConfigError, load_settings
from producer.cli import main as producer_main
from conf.contracts.events import EventValidator
from producer.heartbeat import ProducerHeartbeat, event_time_ms, producer_heartbeat
from spark_jobs.lib.heartbeat import StreamHeartbeat, batch_facts
from tests.standins.memory_publisher import MemoryPublisher

TOPIC = "market.heartbeats.v1"
T0 = datetime(2026, 1, 5, 15, 0, 0, tzinfo=timezone.utc)
SAMPLE = Path(__file__).resolve().parents[3] / "producer" / "samples" / "finnhub-ws-sample.jsonl"


class FakeKafkaProducer:
    """The confluent-kafka Producer calls the heartbeats make; a record is delivered (or failed) on poll/flush."""

    def __init__(self, topics=(TOPIC,), fail_with: str | None = None, refuse: Exception | None = None,
                 stuck: bool = False):
        self.records: list[tuple[str, bytes, bytes]] = []
        self.topics, self.fail_with, self.refuse, self.stuck = set(topics), fail_with, refuse, stuck
        self._pending: list = []
        self.flushes = 0
        self.closed = False

    def produce(self, topic, key=None, value=None, on_delivery=None):
        if self.refuse is not None:
            raise self.refuse
        self.records.append((topic, key, value))
        self._pending.append(on_delivery)

    def poll(self, timeout=0):
        if self.stuck:  # the broker never answers
            return 0
        served, self._pending = self._pending, []
        for callback in served:
            callback(self.fail_with, None)
        return len(served)

    def close(self):
        self.closed = True

    def purge(self):
        self.stuck = False
        served, self._pending = self._pending, []
        for callback in served:
            callback("Local: Purged in queue", None)

    def flush(self, timeout):
        self.flushes += 1
        if self.stuck:
            return len(self._pending)
        self.poll()
        return 0

    def list_topics(self, topic=None, timeout=-1):
        known = {topic: SimpleNamespace(error=None, partitions={0: None})} if topic in self.topics else {}
        return SimpleNamespace(topics=known)

    def heartbeats(self) -> list[dict]:
        return [json.loads(value) for _, _, value in self.records]


def beat(sender="stream", sent_at=T0, stopped=False, **fields) -> Heartbeat:
    record = build_heartbeat(sender, host="host-1", pid=7, sent_at=sent_at, last_event_time=fields.get("event"),
                             last_batch_time=fields.get("batch"), counts=fields.get("counts", {}), stopped=stopped)
    return parse_heartbeat(encode_heartbeat(record)[1], sender)


# -- the record -----------------------------------------------------------------------------------------------------

def test_a_record_is_compact_json_keyed_by_its_sender_and_parses_back():
    record = build_heartbeat("producer:simulator", host="host-1", pid=4242, sent_at=T0,
                             last_event_time=T0 - timedelta(milliseconds=183),
                             last_batch_time=datetime(2026, 1, 5, 10, 0, tzinfo=timezone(timedelta(hours=-5))),
                             counts={"sent": 3, "dlq": 1, "delivered": 4, "failed": 0}, stopped=True)
    key, value = encode_heartbeat(record)
    assert key == b"producer:simulator"
    assert value == (b'{"sender":"producer:simulator","host":"host-1","pid":4242,"sent_at":"2026-01-05T15:00:00.000Z",'
                     b'"last_event_time":"2026-01-05T14:59:59.817Z","last_batch_time":"2026-01-05T15:00:00.000Z",'
                     b'"counts":{"sent":3,"dlq":1,"delivered":4,"failed":0},"stopped":true}')
    parsed = parse_heartbeat(value, "producer:simulator")
    assert (parsed.sender, parsed.host, parsed.pid, parsed.sent_at, parsed.last_event_time, parsed.last_batch_time,
            parsed.counts, parsed.stopped) == ("producer:simulator", "host-1", 4242, T0,
                                               T0 - timedelta(milliseconds=183), T0, record["counts"], True)
    # Extras (the stream's per-query details) travel along.
    stream = parse_heartbeat(encode_heartbeat(build_heartbeat(
        "stream", host="h", pid=1, sent_at=T0, last_event_time=None, last_batch_time=None, counts={},
        queries={"silver_trades": {"batch_id": None}}))[1])
    assert (stream.last_event_time, stream.last_batch_time, stream.stopped) == (None, None, False)
    assert stream.record["queries"] == {"silver_trades": {"batch_id": None}}


@pytest.mark.parametrize("value, key, message", [
    (b"not json", None, "not JSON"),
    (b"[1, 2]", None, "not a JSON object: list"),
    (b'{"host": "h"}', None, "no sender"),
    (b'{"sender": "stream", "sent_at": "2026-01-05T15:00:00Z"}', "producer:simulator",
     "key 'producer:simulator' is not its sender 'stream'"),
    (b'{"sender": "stream"}', None, "sent_at: not an ISO 8601 time: None"),
    (b'{"sender": "stream", "sent_at": "2026-01-05T15:00:00"}', None,
     "sent_at: not an ISO 8601 time with an offset: '2026-01-05T15:00:00'"),
    (b'{"sender": "stream", "sent_at": "2026-01-05T15:00:00Z", "last_event_time": 17}', None,
     "last_event_time: not an ISO 8601 time: 17"),
    (b'{"sender": "stream", "sent_at": "2026-01-05T15:00:00Z", "counts": [1]}', None, "counts: not an object: [1]"),
])
def test_a_bad_record_says_what_is_wrong(value, key, message):
    with pytest.raises(ValueError) as caught:
        parse_heartbeat(value, key)
    assert str(caught.value).startswith(message)


def test_heartbeat_settings_out_of_range_are_configuration_errors():
    load_settings({})
    load_settings({"STOCKLAKE_PRODUCER_HEARTBEAT_INTERVAL_SECONDS": "0"})
    with pytest.raises(ConfigError, match=r"^producer.heartbeat_interval_seconds: must be >= 0 \(0 = off\), got -1"):
        load_settings({"STOCKLAKE_PRODUCER_HEARTBEAT_INTERVAL_SECONDS": "-1"})
    with pytest.raises(ConfigError, match=r"^stream.heartbeat_interval_seconds: must be >= 0"):
        load_settings({"STOCKLAKE_STREAM_HEARTBEAT_INTERVAL_SECONDS": "-0.5"})
    with pytest.raises(ConfigError, match=r"^watchdog.max_heartbeat_age_seconds: must be greater than 0, got 0$"):
        load_settings({"STOCKLAKE_WATCHDOG_MAX_HEARTBEAT_AGE_SECONDS": "0"})


def test_the_heartbeat_topic_is_compacted_with_one_partition():
    """docker/create_topics.py (compose's topic-init): compaction keeps each sender's newest heartbeat whatever its
    age; the data topics keep their settings."""
    spec = importlib.util.spec_from_file_location("create_topics", Path(__file__).resolve().parents[3] / "docker"
                                                  / "create_topics.py")
    create_topics = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(create_topics)
    compose_like = load_settings({"STOCKLAKE_KAFKA_REPLICATION_FACTOR": "3"})
    assert create_topics.heartbeat_topic_spec(compose_like) == {
        "name": "market.heartbeats.v1", "partitions": 1, "replication_factor": 3,
        "config": {"cleanup.policy": "compact", "min.insync.replicas": "2"}}
    assert create_topics.heartbeat_topic_spec(load_settings({}))["config"]["min.insync.replicas"] == "1"


# -- verdicts -------------------------------------------------------------------------------------------------------

MAX_AGE = 120


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


@pytest.mark.parametrize("sender, stopped, age, healthy, state, reasons", [
    # Fresh up to the limit itself, whoever sent it.
    ("stream", False, 0, True, "fresh", []),
    ("stream", False, 120, True, "fresh", []),
    ("producer:finnhub-ws", False, 120, True, "fresh", []),
    # A clock ahead of the watchdog's: fresh.
    ("stream", False, -30, True, "fresh", []),
    # Past the limit: stale.
    ("stream", False, 120.5, False, "stale",
     ["stale: last heartbeat 120.5 s ago (> watchdog.max_heartbeat_age_seconds 120)"]),
    ("producer:finnhub-ws", False, 3600, False, "stale",
     ["stale: last heartbeat 3,600.0 s ago (> watchdog.max_heartbeat_age_seconds 120)"]),
    # A producer that said it stopped is no alert, however long ago; a stream that stopped is, once stale.
    ("producer:simulator", True, 60, True, "stopped", []),
    ("producer:simulator", True, 86_400, True, "stopped", []),
    ("stream", True, 60, True, "stopped", []),
    ("stream", True, 121, False, "stale",
     ["stale: last heartbeat 121.0 s ago, its last one said it stopped (> watchdog.max_heartbeat_age_seconds 120)"]),
])
def test_verdicts_at_the_boundaries(sender, stopped, age, healthy, state, reasons):
    verdict = assess_heartbeat(sender, beat(sender, stopped=stopped), at(age), MAX_AGE, TOPIC)
    assert (verdict.healthy, verdict.state, verdict.age_seconds, verdict.reasons) == (healthy, state, age, reasons)


def test_the_stream_is_always_judged_producers_only_when_they_sent_something():
    verdicts = assess_heartbeats({}, T0, MAX_AGE, TOPIC)
    assert [(v.sender, v.healthy, v.state, v.reasons) for v in verdicts] == [
        ("stream", False, "missing", [f"no heartbeat on {TOPIC}: not running, or its heartbeat is off (0 s interval)"])]
    newest = {"producer:simulator": beat("producer:simulator", stopped=True), "stream": beat(),
              "producer:finnhub-ws": beat("producer:finnhub-ws", sent_at=at(-200)),
              "producer:finnhub-rest": "partition 0 offset 9: not JSON: Expecting value"}
    verdicts = assess_heartbeats(newest, T0, MAX_AGE, TOPIC)
    assert [(v.sender, v.healthy, v.state) for v in verdicts] == [
        ("stream", True, "fresh"), ("producer:finnhub-rest", False, "unreadable"),
        ("producer:finnhub-ws", False, "stale"), ("producer:simulator", True, "stopped")]
    assert verdicts[1].reasons == [f"unreadable heartbeat on {TOPIC}: partition 0 offset 9: not JSON: Expecting value"]


def test_the_report_lines_of_a_verdict():
    counts = {"bronze_trades": {"batches": 2, "rows_in": 2000}, "silver_trades": {"batches": 2, "rows_in": 2000,
                                                                                  "rows_quarantined": 40}}
    stream = beat(counts=counts, batch=at(-3), event=at(-3600), sent_at=at(-150))
    assert render_verdict(assess_heartbeat("stream", stream, T0, MAX_AGE, TOPIC)) == (
        "heartbeat stream: UNHEALTHY: stale: last heartbeat 150 s ago from host-1 (pid 7); "
        "last batch 2026-01-05T14:59:57.000Z, last event 2026-01-05T14:00:00.000Z\n"
        "  heartbeat stream: stale: last heartbeat 150.0 s ago (> watchdog.max_heartbeat_age_seconds 120)\n"
        "  bronze_trades: batches 2, rows_in 2,000\n"
        "  silver_trades: batches 2, rows_in 2,000, rows_quarantined 40")
    producer = beat("producer:simulator", stopped=True, sent_at=at(-5),
                    counts={"sent": 1960, "dlq": 40, "delivered": 2000, "failed": 0, "undelivered": 0})
    assert render_verdict(assess_heartbeat("producer:simulator", producer, T0, MAX_AGE, TOPIC)) == (
        "heartbeat producer:simulator: ok: stopped: final heartbeat 5 s ago from host-1 (pid 7); last send none, "
        "last event none\n"
        "  sent 1,960, dlq 40, delivered 2,000, failed 0, undelivered 0")
    assert render_verdict(assess_heartbeat("stream", None, T0, MAX_AGE, TOPIC)) == (
        "heartbeat stream: UNHEALTHY: missing\n"
        f"  heartbeat stream: no heartbeat on {TOPIC}: not running, or its heartbeat is off (0 s interval)")


# -- the producer's heartbeat ---------------------------------------------------------------------------------------

class WallClock:
    def __init__(self, start: float):
        self.now = start

    def __call__(self) -> float:
        return self.now


def test_producer_heartbeat_sends_when_due_keeps_the_newest_event_and_ends_stopped():
    kafka, wall = FakeKafkaProducer(), WallClock(T0.timestamp())
    counts = {"sent": 0, "dlq": 0, "delivered": 0, "failed": 0}
    heartbeat = ProducerHeartbeat(kafka, TOPIC, "simulator", 10.0, lambda: dict(counts), wall=wall, host="h", pid=3)
    heartbeat.tick(100.0)  # the first tick sends at once: the watchdog sees the producer from its start
    heartbeat.event_sent(1_767_625_200_500)
    wall.now += 1
    heartbeat.event_sent(1_767_625_199_000)  # a late event: the newest stays
    heartbeat.event_sent(None)               # an event without a time (none in practice): only the send counts
    counts.update(sent=3)
    heartbeat.tick(109.999)                  # not due
    assert len(kafka.records) == 1
    heartbeat.tick(110.0)
    counts.update(delivered=3)
    heartbeat.close(undelivered=0)
    assert [(topic, key) for topic, key, _ in kafka.records] == [(TOPIC, b"producer:simulator")] * 3
    first, second, final = kafka.heartbeats()
    assert first == {"sender": "producer:simulator", "host": "h", "pid": 3, "sent_at": "2026-01-05T15:00:00.000Z",
                     "last_event_time": None, "last_batch_time": None,
                     "counts": {"sent": 0, "dlq": 0, "delivered": 0, "failed": 0}, "stopped": False}
    assert (second["last_event_time"], second["last_batch_time"], second["counts"]["sent"], second["stopped"]) == (
        "2026-01-05T15:00:00.500Z", "2026-01-05T15:00:01.000Z", 3, False)
    assert final["counts"] == {"sent": 3, "dlq": 0, "delivered": 3, "failed": 0, "undelivered": 0}
    assert final["stopped"] is True and kafka.flushes == 1
    assert (heartbeat.sent, heartbeat.delivered, heartbeat.failed) == (3, 3, 0)


def test_a_heartbeat_that_fails_is_a_warning_never_an_error(caplog):
    caplog.set_level(logging.WARNING, logger="producer.heartbeat")
    failing = FakeKafkaProducer(fail_with="KafkaError{code=MSG_TIMED_OUT}")
    heartbeat = ProducerHeartbeat(failing, TOPIC, "simulator", 10.0, dict)
    heartbeat.tick(0.0)
    heartbeat.close(undelivered=0)
    assert (heartbeat.sent, heartbeat.delivered, heartbeat.failed) == (2, 0, 2)
    refusing = ProducerHeartbeat(FakeKafkaProducer(refuse=BufferError("Local: Queue full")), TOPIC, "simulator",
                                 10.0, dict)
    refusing.tick(0.0)
    stuck = ProducerHeartbeat(FakeKafkaProducer(stuck=True), TOPIC, "simulator", 10.0, dict)
    stuck.close(undelivered=0, timeout=0.1)
    assert (refusing.sent, refusing.failed) == (0, 1)
    assert [r.getMessage() for r in caplog.records] == [
        f"heartbeat to {TOPIC} failed: KafkaError{{code=MSG_TIMED_OUT}}",
        f"heartbeat to {TOPIC} failed: KafkaError{{code=MSG_TIMED_OUT}}",
        f"heartbeat to {TOPIC} not sent: Local: Queue full",
        f"final heartbeat to {TOPIC} not delivered within 0 s"]


def test_producer_heartbeat_is_off_at_interval_0_without_kafka_or_without_its_topic(caplog):
    class KafkaLike(MemoryPublisher):
        def __init__(self, kafka):
            super().__init__()
            self._producer = kafka

    settings = load_settings({})
    assert producer_heartbeat(settings, KafkaLike(FakeKafkaProducer()), "simulator", dict).enabled
    assert not producer_heartbeat(settings, MemoryPublisher(), "simulator", dict).enabled
    assert not producer_heartbeat(load_settings({"STOCKLAKE_PRODUCER_HEARTBEAT_INTERVAL_SECONDS": "0"}),
                                  KafkaLike(FakeKafkaProducer()), "simulator", dict).enabled
    caplog.set_level(logging.WARNING, logger="producer.heartbeat")
    kafka = FakeKafkaProducer(topics=())
    off = producer_heartbeat(settings, KafkaLike(kafka), "simulator", dict)
    off.tick(0.0)
    off.close(undelivered=0)
    assert (off.enabled, kafka.records, kafka.flushes) == (False, [], 0)
    assert caplog.records[-1].getMessage().startswith(f"heartbeat topic {TOPIC} does not exist")


def test_event_time_of_trades_and_quotes():
    assert event_time_ms(b'{"symbol": "AAPL", "trade_ts": 1767625200000}') == 1767625200000
    assert event_time_ms(b'{"symbol": "AAPL", "quote_ts": 1767625200001}') == 1767625200001
    assert event_time_ms(b'{"symbol": "AAPL"}') is None
    assert event_time_ms(b"not json") is None


class KafkaPublisherStandIn(MemoryPublisher):
    """An in-memory publisher with what the heartbeat takes from KafkaPublisher: its confluent-kafka Producer."""

    def __init__(self):
        super().__init__()
        self._producer = FakeKafkaProducer()


@pytest.fixture
def clean_env(monkeypatch):
    for name in [n for n in os.environ if n.startswith("STOCKLAKE_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("STOCKLAKE_MARKET_HOURS_SESSION", "always")


def test_the_simulator_runs_heartbeats_carry_its_summary_counts_and_newest_valid_trade(clean_env, tmp_path):
    publisher = KafkaPublisherStandIn()
    out = tmp_path / "summary.json"
    started = time.time()
    assert producer_main(["--source", "simulator", "--rate", "1000", "--count", "400", "--no-pacing", "--seed", "9",
                          "--start-time", "2026-01-05T15:00:00Z", "--late-ratio", "0.1", "--malformed-ratio", "0.1",
                          "--malformed-target", "topic", "--duplicate-ratio", "0.05", "--summary-json", str(out)],
                         publisher_factory=lambda settings: publisher) == 0
    summary = json.loads(out.read_text())
    heartbeats = publisher._producer.heartbeats()
    first, final = heartbeats[0], heartbeats[-1]
    assert (first["sender"], first["stopped"], first["counts"]) == (
        "producer:simulator", False, {"sent": 0, "dlq": 0, "delivered": 0, "failed": 0})
    assert [h["stopped"] for h in heartbeats[1:]] == [False] * (len(heartbeats) - 2) + [True]
    assert final["counts"] == {"sent": summary["sent_trades_topic"], "dlq": summary["sent_dlq"],
                               "delivered": summary["delivered"], "failed": summary["delivery_failures"],
                               "undelivered": summary["undelivered"]}
    # The newest trade_ts among the valid trades sent: not the malformed ones sent unvalidated to the topic (with
    # this seed the last record, stamped last, is one of those).
    validator = EventValidator("trade")
    assert validator.validate_payload(publisher.messages[-1][2])[1] is not None
    valid = [json.loads(value) for _, _, value in publisher.messages if validator.validate_payload(value)[1] is None]
    assert len(valid) == summary["sent_trades_topic"] - sum(summary["expected_quarantine_by_reason"].values())
    newest = max(event["trade_ts"] for event in valid)
    assert final["last_event_time"] == iso_utc(datetime.fromtimestamp(newest / 1000, tz=timezone.utc))
    assert started <= datetime.fromisoformat(final["last_batch_time"]).timestamp() <= time.time()


def test_the_replay_runs_heartbeats_carry_its_summary_counts_and_newest_trade(clean_env, tmp_path):
    publisher = KafkaPublisherStandIn()
    out = tmp_path / "summary.json"
    assert producer_main(["--source", "replay", "--file", str(SAMPLE), "--no-pacing", "--summary-json", str(out)],
                         publisher_factory=lambda settings: publisher) == 0
    summary = json.loads(out.read_text())
    final = publisher._producer.heartbeats()[-1]
    assert (final["sender"], final["stopped"]) == ("producer:replay", True)
    assert final["counts"] == {"sent": 1262, "dlq": 0, "delivered": summary["delivered"], "failed": 0,
                               "undelivered": 0}
    assert summary["trades_published"] == 1262
    newest = max(event["trade_ts"] for event in publisher.events(publisher.trades_topic))
    assert final["last_event_time"] == iso_utc(datetime.fromtimestamp(newest / 1000, tz=timezone.utc))


# -- the stream's heartbeat -----------------------------------------------------------------------------------------

def progress(name: str, batch_id: int, rows_in: int, *, timestamp: str, duration_ms: int, event_max: str | None = None,
             quarantined: int | None = None, dropped: int = 0) -> SimpleNamespace:
    """The StreamingQueryProgress fields the heartbeat reads (as listener.progress_record and Spark report them)."""
    event_time = {"watermark": "2026-01-05T14:50:00.000Z"} | ({"max": event_max} if event_max else {})
    observed = {f"{name}_parse": {"rows_quarantined": quarantined}} if quarantined is not None else {}
    state = [SimpleNamespace(numRowsDroppedByWatermark=dropped, numRowsTotal=0)]
    return SimpleNamespace(name=name, batchId=batch_id, numInputRows=rows_in, inputRowsPerSecond=0.0,
                           processedRowsPerSecond=0.0, batchDuration=duration_ms, eventTime=event_time,
                           stateOperators=state, observedMetrics=observed, timestamp=timestamp)


def test_batch_facts_come_from_the_progress_event():
    facts = batch_facts(progress("silver_trades", 4, 812, timestamp="2026-01-05T15:00:01.250Z", duration_ms=1800,
                                 event_max="2026-01-05T14:59:59.999Z", quarantined=3, dropped=2))
    assert (facts.query, facts.batch_id, facts.rows_in, facts.rows_dropped_by_watermark, facts.rows_quarantined,
            facts.finished_at, facts.event_time_max) == (
        "silver_trades", 4, 812, 2, 3, at(3.05), at(-0.001))
    bronze = batch_facts(progress("bronze_trades", 0, 5, timestamp="2026-01-05T15:00:00.000Z", duration_ms=0))
    assert (bronze.rows_quarantined, bronze.event_time_max, bronze.finished_at) == (None, None, T0)


def test_stream_heartbeat_counts_per_query_since_the_start_and_publishes_when_due():
    kafka, wall = FakeKafkaProducer(), WallClock(T0.timestamp())
    heartbeat = StreamHeartbeat(kafka, TOPIC, 10.0, wall=wall, host="driver", pid=11)
    heartbeat.onQueryStarted(SimpleNamespace(name="bronze_trades", id="q-b", runId="r-b"))
    heartbeat.onQueryStarted(SimpleNamespace(name="silver_trades", id="q-s", runId="r-s"))
    heartbeat.tick(50.0)
    for batch, (rows, quarantined, event_max) in enumerate([(700, 2, "2026-01-05T14:59:58.000Z"),
                                                           (300, 1, "2026-01-05T14:59:57.500Z")]):
        stamp = iso_utc(at(batch * 5))
        heartbeat.onQueryProgress(SimpleNamespace(progress=progress("bronze_trades", batch, rows, timestamp=stamp,
                                                                    duration_ms=900)))
        heartbeat.onQueryProgress(SimpleNamespace(progress=progress(
            "silver_trades", batch, rows, timestamp=stamp, duration_ms=1200, event_max=event_max,
            quarantined=quarantined, dropped=batch)))
    heartbeat.onQueryProgress(SimpleNamespace(progress=None))  # unreadable: ignored, never raised on Spark's thread
    heartbeat.tick(59.9)
    assert len(kafka.records) == 1
    wall.now += 12
    heartbeat.tick(60.0)
    for query_id in ("q-b", "q-s"):
        heartbeat.onQueryTerminated(SimpleNamespace(id=query_id, exception=None))
    heartbeat.close([SimpleNamespace(id="q-b", isActive=False), SimpleNamespace(id="q-s", isActive=False)],
                    wait_seconds=0.1)
    first, second, final = kafka.heartbeats()
    assert first == {"sender": "stream", "host": "driver", "pid": 11, "sent_at": "2026-01-05T15:00:00.000Z",
                     "last_event_time": None, "last_batch_time": None,
                     "counts": {"bronze_trades": {"batches": 0, "rows_in": 0, "rows_dropped_by_watermark": 0},
                                "silver_trades": {"batches": 0, "rows_in": 0, "rows_dropped_by_watermark": 0}},
                     "stopped": False,
                     "queries": {"bronze_trades": {"batch_id": None, "last_batch_time": None, "last_event_time": None},
                                 "silver_trades": {"batch_id": None, "last_batch_time": None,
                                                   "last_event_time": None}}}
    assert second["counts"] == {
        "bronze_trades": {"batches": 2, "rows_in": 1000, "rows_dropped_by_watermark": 0},
        "silver_trades": {"batches": 2, "rows_in": 1000, "rows_dropped_by_watermark": 1, "rows_quarantined": 3}}
    assert second["queries"] == {
        "bronze_trades": {"batch_id": 1, "last_batch_time": "2026-01-05T15:00:05.900Z", "last_event_time": None},
        "silver_trades": {"batch_id": 1, "last_batch_time": "2026-01-05T15:00:06.200Z",
                          "last_event_time": "2026-01-05T14:59:58.000Z"}}
    assert (second["sent_at"], second["last_batch_time"], second["last_event_time"], second["stopped"]) == (
        "2026-01-05T15:00:12.000Z", "2026-01-05T15:00:06.200Z", "2026-01-05T14:59:58.000Z", False)
    assert final["stopped"] is True and final["counts"] == second["counts"] and kafka.flushes == 1
    # The client is closed with the run (the session may outlive it); nothing is sent afterwards.
    heartbeat.tick(120.0)
    assert kafka.closed and len(kafka.records) == 3


def test_stream_heartbeat_gives_up_an_undeliverable_final_heartbeat_and_closes_its_client(caplog):
    kafka = FakeKafkaProducer(stuck=True)
    heartbeat = StreamHeartbeat(kafka, TOPIC, 10.0, wall=lambda: 0.0, host="driver", pid=11)
    heartbeat.close([], wait_seconds=0.1, flush_seconds=0.1)
    assert kafka.closed and kafka.flushes == 2 and (heartbeat.sent, heartbeat.delivered, heartbeat.failed) == (1, 0, 1)
    assert [json.loads(r.message)["error"] for r in caplog.records if "heartbeat_not_delivered" in r.message] == [
        "final heartbeat not delivered within 0 s", "Local: Purged in queue"]


def test_stream_heartbeat_off_sends_nothing():
    off = StreamHeartbeat(None, TOPIC, 10.0)
    spark = SimpleNamespace(streams=SimpleNamespace(addListener=lambda listener: pytest.fail("registered")))
    assert off.attach(spark) is off and not off.enabled
    off.tick(0.0)
    off.close([])
    kafka = FakeKafkaProducer()
    assert not StreamHeartbeat(kafka, TOPIC, 0).enabled
