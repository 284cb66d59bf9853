"""The producer's entry point without Kafka: argument validation (producer/arguments.py), where a simulator record
goes through the EventSink, and the simulator's run loop (producer/simulator_run.py).

run() is driven with a recording publisher: these tests check what the producer decides to send where, not Kafka.
"""
from __future__ import annotations

import json
from collections import Counter

import pytest

from conf.settings import load_settings
from conf.contracts.events import EventValidator
from producer.arguments import future_skew_warning, parse_args, parse_start_time, split_symbols
from producer.cli import main
from producer.simulator import SimRecord
from producer.simulator_run import exit_code, format_summary, run, sent_unvalidated
from producer.sink import EventSink

TRADES, DLQ = "trades", "dlq"

START = "2026-01-05T14:30:00Z"
START_MS = 1767623400000
SUMMARY_KEYS = {"records", "by_kind", "sent_trades_topic", "sent_dlq", "dlq_by_reason", "delivered",
                "delivery_failures", "undelivered", "elapsed_seconds", "events_per_second",
                "expected_quarantine_by_reason", "distinct_event_ids", "stopped_by", "delivery_errors"}


@pytest.fixture(scope="module")
def settings():
    return load_settings({})


class RecordingPublisher:
    """Stands in for KafkaPublisher: records what was sent and 'delivers' it all on flush."""

    trades_topic = "market.trades.v1"
    dlq_topic = "market.dlq.v1"

    def __init__(self, settings=None, fail: int = 0, stuck: int = 0):
        self.messages: list[tuple[str, bytes | None, bytes]] = []
        self.dlq: list[tuple[bytes | None, bytes, str, str]] = []
        self.errors: list[str] = []
        self.flushed = False
        self._fail, self._stuck = fail, stuck

    @property
    def delivered_total(self) -> int:
        return len(self.messages) + len(self.dlq) - self._fail - self._stuck if self.flushed else 0

    @property
    def failed_total(self) -> int:
        return self._fail if self.flushed else 0

    def publish(self, topic, key, value):
        self.messages.append((topic, key, value))

    def publish_dlq(self, key, raw, reason, source, intended_topic=None):
        self.dlq.append((key, raw, reason, source))

    def poll(self, timeout=0):
        return 0

    def flush(self, timeout):
        self.flushed = True
        return self._stuck


def parse(settings, *argv, now_ms=lambda: START_MS):
    return parse_args(list(argv), settings, now_ms=now_ms)


def go(settings, *argv, publisher=None, **kw):
    args = parse(settings, "--source", "simulator", *argv)
    publisher = publisher or RecordingPublisher()
    summary = run(args, settings, lambda _settings: publisher, **kw)
    return summary, publisher


# -- argument validation -------------------------------------------------------------------------------------

@pytest.mark.parametrize("argv, message", [
    ([], "the following arguments are required: --source"),
    (["--source", "simulator", "--count", "5"], "--source simulator needs --rate"),
    (["--source", "simulator", "--rate", "10"], "--source simulator needs one of --count or --duration"),
    (["--source", "simulator", "--rate", "10", "--count", "5", "--duration", "3"],
     "argument --duration: not allowed with argument --count"),
    (["--source", "finnhub", "--rate", "10", "--count", "5"], "argument --source: invalid choice: 'finnhub'"),
    (["--source", "finnhub-ws", "--rate", "10"], "--rate applies to --source simulator, not finnhub-ws"),
    (["--source", "finnhub-rest", "--count", "5"], "--count applies to --source simulator, not finnhub-rest"),
    (["--source", "finnhub-ws", "--seed", "1"], "--seed applies to --source simulator, not finnhub-ws"),
    (["--source", "finnhub-rest", "--record", "x.jsonl"], "--record applies to --source finnhub-ws, not finnhub-rest"),
    (["--source", "finnhub-ws", "--no-pacing"], "--no-pacing applies to --source simulator or replay"),
    (["--source", "finnhub-ws", "--start-time", START], "--start-time applies to --source simulator or replay"),
    (["--source", "simulator", "--rate", "10", "--count", "5", "--file", "x"],
     "--file applies to --source replay, not simulator"),
    (["--source", "replay"], "--source replay needs --file"),
    (["--source", "replay", "--file", "/nonexistent/log.jsonl"], "--file: no such file: /nonexistent/log.jsonl"),
    (["--source", "replay", "--file", "x", "--symbols", "AAPL"], "--symbols applies to --source simulator or"),
    (["--source", "replay", "--file", "x", "--speed", "0"], "argument --speed: must be a finite number > 0"),
    (["--source", "finnhub-ws", "--symbols", "AAPL,msft"], "--symbols: invalid symbol 'msft'"),
    (["--source", "finnhub-ws", "--metrics-port", "70000"], "--metrics-port: must be 0 (off) to 65535"),
    (["--source", "finnhub-ws", "--symbols"] + [f"S{i}" for i in range(51)],
     "--symbols: 51 symbols is more than finnhub.max_symbols (50); Finnhub streams about 50 symbols per API key"),
    (["--source", "simulator", "--rate", "0", "--count", "5"], "argument --rate: must be a finite number > 0"),
    (["--source", "simulator", "--rate", "-3", "--count", "5"], "argument --rate: must be a finite number > 0"),
    (["--source", "simulator", "--rate", "inf", "--count", "5"], "argument --rate: must be a finite number > 0"),
    (["--source", "simulator", "--rate", "fast", "--count", "5"], "argument --rate: not a number: 'fast'"),
    (["--source", "simulator", "--rate", "10", "--count", "0"], "argument --count: must be > 0"),
    (["--source", "simulator", "--rate", "10", "--duration", "0"], "argument --duration: must be a finite"),
    (["--source", "simulator", "--rate", "10", "--count", "5", "--late-ratio", "1.5"],
     "argument --late-ratio: must be within [0, 1], got '1.5'"),
    (["--source", "simulator", "--rate", "10", "--count", "5", "--duplicate-ratio", "-0.1"],
     "argument --duplicate-ratio: must be within [0, 1]"),
    (["--source", "simulator", "--rate", "10", "--count", "5", "--malformed-ratio", "nan"],
     "argument --malformed-ratio: must be within [0, 1]"),
    (["--source", "simulator", "--rate", "10", "--count", "5", "--late-ratio", "0.6", "--out-of-order-ratio", "0.5"],
     "must sum to at most 1, got 1.1"),
    (["--source", "simulator", "--rate", "10", "--count", "5", "--symbols", "AAPL,aapl"],
     "--symbols: invalid symbol 'aapl'"),
    (["--source", "simulator", "--rate", "10", "--count", "5", "--symbols", ","], "--symbols: no symbols given"),
    (["--source", "simulator", "--rate", "10", "--count", "5", "--malformed-target", "kafka"],
     "argument --malformed-target: invalid choice: 'kafka'"),
    (["--source", "simulator", "--rate", "10", "--count", "5", "--start-time", "yesterday"],
     "argument --start-time: not an ISO 8601 time: 'yesterday'"),
    (["--source", "simulator", "--rate", "10", "--count", "5", "--start-time", "1999-12-31T00:00:00Z"],
     "--start-time: must be between 2000-01-01T00:30:00Z and 2100-01-01T00:00:00Z"),
])
def test_argument_errors_exit_2_with_a_clear_message(settings, capsys, argv, message):
    with pytest.raises(SystemExit) as exc:
        parse(settings, *argv)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_defaults(settings):
    args = parse(settings, "--source", "simulator", "--rate", "100", "--count", "10")
    assert args.seed == 42
    assert args.symbols == list(settings.simulator.symbols)
    assert args.start_ms == START_MS
    assert (args.duplicate_ratio, args.late_ratio, args.out_of_order_ratio, args.malformed_ratio) == (0, 0, 0, 0)
    assert args.malformed_target == "dlq"
    assert args.pacing is True
    assert args.duration is None and args.count == 10
    assert args.summary_json is None


def test_ratios_may_sum_to_exactly_one(settings):
    args = parse(settings, "--source", "simulator", "--rate", "1", "--count", "1", "--duplicate-ratio", "0.7",
                 "--late-ratio", "0.2", "--out-of-order-ratio", "0.1")
    assert args.duplicate_ratio + args.late_ratio + args.out_of_order_ratio == pytest.approx(1.0)


def test_symbols_space_or_comma_separated(settings):
    args = parse(settings, "--source", "simulator", "--rate", "1", "--count", "1",
                 "--symbols", "AAPL,MSFT", "NVDA", "XYZ,", "AAPL")
    assert args.symbols == ["AAPL", "MSFT", "NVDA", "XYZ"]
    assert args.symbol_specs["XYZ"] == {"price": 100.0, "volatility": 0.3, "weight": 1}
    assert args.symbol_specs["AAPL"] == dict(settings.simulator.symbols["AAPL"])
    assert split_symbols(["A, B", "C"]) == ["A", "B", "C"]


@pytest.mark.parametrize("text, ms", [
    ("2026-01-05T14:30:00Z", 1767623400000),
    ("2026-01-05T14:30:00+00:00", 1767623400000),
    ("2026-01-05T15:30:00+01:00", 1767623400000),
    ("2026-01-05T14:30:00", 1767623400000),          # no offset: UTC
    ("2026-01-05T14:30:00.250Z", 1767623400250),
])
def test_parse_start_time(text, ms):
    assert parse_start_time(text) == ms


def test_start_time_option(settings):
    args = parse(settings, "--source", "simulator", "--rate", "1", "--count", "1", "--start-time", START,
                 now_ms=lambda: 0)
    assert args.start_ms == START_MS


def test_future_skew_warning(settings):
    base = ["--source", "simulator", "--start-time", START]
    fast = parse(settings, *base, "--rate", "10", "--count", "100000", "--no-pacing")  # 10,000 s ahead
    assert "quarantines trades more than 300 s in the future" in future_skew_warning(fast, settings, START_MS)
    assert future_skew_warning(parse(settings, *base, "--rate", "1000", "--count", "100000", "--no-pacing"),
                               settings, START_MS) is None
    assert future_skew_warning(parse(settings, *base, "--rate", "10", "--count", "100000"),
                               settings, START_MS) is None


# -- routing ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def validator():
    return EventValidator()


GOOD = (b'{"event_id":"' + b"a" * 64 + b'","schema_version":1,"source":"simulator","symbol":"AAPL",'
        b'"price":189.5,"volume":100.0,"trade_ts":1767623400000,"conditions":[],"sequence":1}')
BAD = GOOD.replace(b'"price":189.5', b'"price":0')


def record(kind, value):
    return SimRecord(kind, b"AAPL", value, None, None, 1767623400000, 1767623400000)


@pytest.mark.parametrize("kind, value, target, expected", [
    ("trade", GOOD, "dlq", (TRADES, None)),
    ("trade", GOOD, "topic", (TRADES, None)),
    ("duplicate", GOOD, "dlq", (TRADES, None)),
    ("malformed", BAD, "dlq", (DLQ, "price:exclusiveMinimum")),
    ("malformed", BAD, "topic", (TRADES, "price:exclusiveMinimum")),
    ("malformed", b"{", "topic", (TRADES, "malformed_json")),
    # Only records the simulator meant to be malformed bypass validation.
    ("trade", BAD, "topic", (DLQ, "price:exclusiveMinimum")),
])
def test_route(kind, value, target, expected):
    publisher, rec = RecordingPublisher(), record(kind, value)
    reason = EventSink(publisher, "simulator").publish_trade_payload(rec.value, rec.key,
                                                                      sent_unvalidated(rec, target))
    assert len(publisher.messages) + len(publisher.dlq) == 1
    assert (DLQ if publisher.dlq else TRADES, reason) == expected


# -- run -------------------------------------------------------------------------------------------------

FAULTS = ["--duplicate-ratio", "0.1", "--late-ratio", "0.05", "--out-of-order-ratio", "0.1",
          "--malformed-ratio", "0.1", "--start-time", START, "--no-pacing"]


def test_run_routes_valid_to_the_topic_and_invalid_to_the_dlq(settings, validator):
    summary, pub = go(settings, "--rate", "1000", "--count", "3000", *FAULTS)
    assert set(summary) == SUMMARY_KEYS
    kinds = summary["by_kind"]
    assert summary["records"] == sum(kinds.values()) == 3000
    assert summary["sent_trades_topic"] == len(pub.messages) == 3000 - kinds["malformed"]
    assert summary["sent_dlq"] == len(pub.dlq) == kinds["malformed"] > 0
    assert sum(summary["dlq_by_reason"].values()) == kinds["malformed"]
    assert summary["dlq_by_reason"] == dict(Counter(reason for _, _, reason, _ in pub.dlq))
    assert summary["expected_quarantine_by_reason"] == {}
    assert summary["distinct_event_ids"] == kinds["trade"] + kinds["late"] + kinds["out_of_order"]
    assert summary["distinct_event_ids"] == len({json.loads(v)["event_id"] for _, _, v in pub.messages})
    assert (summary["delivered"], summary["delivery_failures"], summary["undelivered"]) == (3000, 0, 0)
    assert summary["stopped_by"] == "count"
    assert exit_code(summary) == 0
    for topic, key, value in pub.messages:
        event, reason = validator.validate_payload(value)
        assert reason is None and topic == "market.trades.v1" and key == event["symbol"].encode()
    for key, raw, reason, source in pub.dlq:
        assert validator.validate_payload(raw) == (None, reason) and source == "simulator"


def test_run_is_reproducible(settings):
    _, a = go(settings, "--rate", "500", "--count", "500", *FAULTS)
    _, b = go(settings, "--rate", "500", "--count", "500", *FAULTS)
    assert a.messages == b.messages and a.dlq == b.dlq


def test_malformed_target_topic_sends_malformed_records_unvalidated(settings, validator):
    summary, pub = go(settings, "--rate", "1000", "--count", "3000", *FAULTS, "--malformed-target", "topic")
    malformed = summary["by_kind"]["malformed"]
    assert summary["sent_dlq"] == len(pub.dlq) == 0
    assert summary["sent_trades_topic"] == len(pub.messages) == 3000
    assert sum(summary["expected_quarantine_by_reason"].values()) == malformed > 0
    reasons = Counter(validator.validate_payload(v)[1] for _, _, v in pub.messages)
    del reasons[None]
    assert dict(reasons) == summary["expected_quarantine_by_reason"]
    assert summary["distinct_event_ids"] == 3000 - malformed - summary["by_kind"]["duplicate"]


def test_duration_without_pacing_counts_simulated_time(settings):
    summary, pub = go(settings, "--rate", "200", "--duration", "10", "--start-time", START, "--no-pacing")
    assert summary["stopped_by"] == "duration"
    assert abs(summary["records"] - 2000) < 5 * 2000 ** 0.5
    assert max(json.loads(v)["trade_ts"] for _, _, v in pub.messages) < START_MS + 10_000


class FakeClock:
    def __init__(self):
        self.now = 100.0
        self.sleeps: list[float] = []

    def monotonic(self):
        return self.now

    def sleep(self, seconds):
        self.sleeps.append(seconds)
        self.now += seconds


def test_pacing_tracks_the_wall_clock(settings):
    clock = FakeClock()
    summary, pub = go(settings, "--rate", "100", "--duration", "3", "--start-time", START,
                      monotonic=clock.monotonic, sleep=clock.sleep)
    assert summary["stopped_by"] == "duration"
    assert abs(summary["records"] - 300) < 5 * 300 ** 0.5
    assert clock.now - 100.0 == pytest.approx(3.0, abs=0.011)
    assert clock.sleeps and max(clock.sleeps) <= 0.01
    assert max(json.loads(v)["trade_ts"] for _, _, v in pub.messages) < START_MS + 3000


def test_pacing_does_not_send_ahead_of_time(settings):
    clock = FakeClock()
    sent_at = []

    class Timed(RecordingPublisher):
        def publish(self, topic, key, value):
            sent_at.append((clock.now - 100.0, json.loads(value)["trade_ts"]))
            super().publish(topic, key, value)

    go(settings, "--rate", "50", "--count", "100", "--start-time", START, publisher=Timed(),
       monotonic=clock.monotonic, sleep=clock.sleep)
    for wall_s, trade_ts in sent_at:
        assert (trade_ts - START_MS) / 1000 <= wall_s + 0.001


def test_stop_request_flushes_and_reports(settings):
    pub = RecordingPublisher()
    calls = iter(range(10**9))
    summary, _ = go(settings, "--rate", "100", "--count", "1000", "--no-pacing", publisher=pub,
                    should_stop=lambda: next(calls) >= 50)
    assert summary["stopped_by"] == "signal"
    assert summary["records"] == 50
    assert pub.flushed


@pytest.mark.parametrize("fail, stuck, code", [(0, 0, 0), (1, 0, 1), (0, 2, 1)])
def test_exit_code(settings, fail, stuck, code):
    summary, _ = go(settings, "--rate", "100", "--count", "20", "--no-pacing",
                    publisher=RecordingPublisher(fail=fail, stuck=stuck))
    assert (summary["delivery_failures"], summary["undelivered"]) == (fail, stuck)
    assert exit_code(summary) == code


def test_main_prints_and_writes_the_summary(tmp_path, capsys, monkeypatch):
    for name in [n for n in __import__("os").environ if n.startswith("STOCKLAKE_")]:
        monkeypatch.delenv(name)
    out = tmp_path / "out" / "summary.json"
    code = main(["--source", "simulator", "--rate", "1000", "--count", "200", "--no-pacing", "--seed", "7",
                 "--start-time", START, "--malformed-ratio", "0.5", "--summary-json", str(out)],
                publisher_factory=RecordingPublisher)
    assert code == 0
    summary = json.loads(out.read_text())
    assert set(summary) == SUMMARY_KEYS
    assert summary["records"] == 200
    stdout = capsys.readouterr().out
    assert stdout == format_summary(summary) + "\n"
    assert "records: 200" in stdout
    assert f"sent to dlq: {summary['sent_dlq']}" in stdout


def test_every_generated_record_counts_as_a_received_message(settings):
    # The DLQ rate alert divides the DLQ's messages by the received ones: without these the simulator's was +Inf.
    from producer.metrics import ProducerMetrics

    metrics = ProducerMetrics()
    summary, pub = go(settings, "--rate", "1000", "--count", "500", *FAULTS, metrics=metrics)
    received = metrics.registry.get_sample_value("stocklake_producer_messages_received_total",
                                                 {"source": "simulator"})
    assert received == summary["records"] == len(pub.messages) + len(pub.dlq) == 500
