"""Finnhub WebSocket source, recorder and replay, against the local Finnhub stand-in (tests/standins).

The stand-in is a real WebSocket server speaking Finnhub's protocol; the publisher is in memory (Kafka is covered
by tests/integration/test_finnhub_sources.py). Every test also checks that the API key never reached the logs.
"""
from __future__ import annotations

import json
import logging
import socket
import urllib.request
from pathlib import Path

import pytest

from conf.settings import load_settings
from producer.errors import ApiKeyRejected
from conf.contracts.events import encode, make_trade_event
from producer.finnhub_ws import FinnhubTradeStream, MessageHandler, Recorder, trade_item_reason
from producer.metrics import ProducerMetrics
from producer.replay import ReplaySource, first_trade_ms, parse_line
from producer.sink import EventSink
from tests.standins.finnhub_ws_server import STANDIN_LOGGER, FinnhubWsStandIn, Session, trade_item
from tests.standins.memory_publisher import MemoryPublisher

API_KEY = "sandbox-key-c0ffee1234567890"  # pragma: allowlist secret
SYMBOLS = ["AAPL", "MSFT", "BINANCE:BTCUSDT"]
T0 = 1_763_651_400_000  # 2025-11-20T15:10:00Z


class Market:
    """A market-hours stand-in with a fixed answer (the real calendar has its own tests)."""

    def __init__(self, is_open: bool):
        self.open = is_open

    def is_open(self, at) -> bool:
        return self.open

    def describe(self, at) -> str:
        return "open" if self.open else "closed"


@pytest.fixture(autouse=True)
def no_key_in_logs(caplog):
    """Everything the client side logs at any level, ours or the websockets library's, must be free of the key.
    (The stand-in server logs its requests, token included, as a server would: that is not our output.)"""
    caplog.set_level(logging.DEBUG)
    yield
    records = [r for r in caplog.get_records("setup") + caplog.get_records("call")
               if not r.name.startswith(STANDIN_LOGGER)]
    leaked = [r.getMessage() for r in records if API_KEY in r.getMessage() or (r.exc_text and API_KEY in r.exc_text)]
    assert leaked == []


def settings_for(url: str, **overrides: str):
    env = {"STOCKLAKE_FINNHUB_WS_URL": url, "STOCKLAKE_FINNHUB_RECONNECT_INITIAL_SECONDS": "0.05",
           "STOCKLAKE_FINNHUB_RECONNECT_MAX_SECONDS": "0.2", "STOCKLAKE_FINNHUB_WATCHDOG_SILENCE_SECONDS": "30"}
    env.update({f"STOCKLAKE_FINNHUB_{k.upper()}": v for k, v in overrides.items()})
    return load_settings(env)


def stream_for(url: str, publisher: MemoryPublisher, market_open: bool = True, metrics=None, recorder=None,
               symbols=SYMBOLS, **overrides: str) -> FinnhubTradeStream:
    sink = EventSink(publisher, "finnhub-ws", metrics)
    return FinnhubTradeStream(settings_for(url, **overrides), sink, Market(market_open), API_KEY, symbols,
                              recorder=recorder, recv_step_seconds=0.05)


def expected_event(item: dict) -> dict:
    return make_trade_event("finnhub", item["s"], item["t"], item["p"], item["v"], item["c"] or [])


def batch(start: int, count: int, symbol: str = "AAPL") -> list[dict]:
    return [trade_item(symbol, 189.5 + i / 100, T0 + start + i, 100 + i) for i in range(count)]


# -- message handling ---------------------------------------------------------------------------------------

def test_a_trade_message_becomes_trade_events_with_deterministic_ids():
    publisher = MemoryPublisher()
    handler = MessageHandler(EventSink(publisher, "finnhub-ws"))
    message = {"type": "trade", "data": [
        {"s": "AAPL", "p": 189.3, "t": 1700000000123, "v": 100, "c": ["1", "12"]},
        {"s": "BINANCE:BTCUSDT", "p": 36000.5, "t": 1700000000124, "v": 0.015, "c": None},
    ]}
    assert handler.handle(json.dumps(message)) == "trade"
    assert handler.handle(json.dumps(message)) == "trade"  # Finnhub delivers the same trades again

    first = make_trade_event("finnhub", "AAPL", 1700000000123, 189.3, 100, ["1", "12"])
    second = make_trade_event("finnhub", "BINANCE:BTCUSDT", 1700000000124, 36000.5, 0.015, [])
    assert publisher.messages == [("market.trades.v1", b"AAPL", encode(first)),
                                  ("market.trades.v1", b"BINANCE:BTCUSDT", encode(second))] * 2
    assert first["event_id"] != second["event_id"] and first["source"] == "finnhub"
    assert publisher.dlq == []


def test_pings_errors_and_junk():
    publisher = MemoryPublisher()
    sink = EventSink(publisher, "finnhub-ws")
    handler = MessageHandler(sink)
    assert handler.handle('{"type":"ping"}') == "ping"
    assert handler.handle('{"type":"error","msg":"Subscribing to too many symbols"}') == "error"
    assert handler.handle('{"type":"news","data":[]}') == "unknown"
    assert handler.handle("not json{") == "malformed_json"
    assert handler.handle('{"type":"trade","data":{"s":"AAPL"}}') == "malformed_trade"
    assert handler.handle(b'\xff\xfe') == "malformed_json"
    assert (handler.pings, handler.errors, publisher.messages) == (1, ["Subscribing to too many symbols"], [])
    assert publisher.dlq_reasons() == ["finnhub:unknown_type", "malformed_json", "data:type", "malformed_json"]
    assert [r["raw"] for r in publisher.dlq] == [b'{"type":"news","data":[]}', b"not json{",
                                                 b'{"type":"trade","data":{"s":"AAPL"}}', b"\xff\xfe"]
    assert sink.stats.received == 6


def test_an_api_key_error_message_stops_the_source():
    handler = MessageHandler(EventSink(MemoryPublisher(), "finnhub-ws"))
    with pytest.raises(ApiKeyRejected, match="check FINNHUB_API_KEY"):
        handler.handle('{"type":"error","msg":"Invalid API key"}')


@pytest.mark.parametrize("item, reason", [
    ({"s": "AAPL", "p": 1.0, "t": 1700000000000, "v": 1}, None),
    ({"s": "AAPL", "p": 1, "t": 1700000000000, "v": 0, "c": []}, None),
    ({"p": 1.0, "t": 1700000000000, "v": 1}, "symbol:required"),
    ({"s": "AAPL", "t": 1700000000000, "v": 1}, "price:required"),
    ({"s": "AAPL", "p": None, "t": 1700000000000, "v": 1}, "price:required"),
    ({"s": "AAPL", "p": 1.0, "v": 1}, "trade_ts:required"),
    ({"s": "AAPL", "p": 1.0, "t": 1700000000000}, "volume:required"),
    ({"s": 7, "p": 1.0, "t": 1700000000000, "v": 1}, "symbol:type"),
    ({"s": "AAPL", "p": "1.0", "t": 1700000000000, "v": 1}, "price:type"),
    ({"s": "AAPL", "p": True, "t": 1700000000000, "v": 1}, "price:type"),
    ({"s": "AAPL", "p": 1.0, "t": 1700000000000.5, "v": 1}, "trade_ts:type"),
    ({"s": "AAPL", "p": 1.0, "t": 1700000000000, "v": "1"}, "volume:type"),
    ({"s": "AAPL", "p": 1.0, "t": 1700000000000, "v": 1, "c": [1]}, "conditions:type"),
    ("AAPL", "malformed_json"),
])
def test_trade_item_reason(item, reason):
    assert trade_item_reason(item) == reason


def test_items_that_break_the_contract_go_to_the_dlq_with_the_contract_reason():
    publisher = MemoryPublisher()
    handler = MessageHandler(EventSink(publisher, "finnhub-ws"))
    handler.handle(json.dumps({"type": "trade", "data": [
        {"s": "AAPL", "t": T0, "v": 1},                 # no price
        {"s": "AAPL", "p": -1.0, "t": T0, "v": 1},      # a price the contract refuses
        {"s": "aapl", "p": 1.0, "t": T0, "v": 1},       # a symbol the contract refuses
        {"s": "MSFT", "p": 2.0, "t": T0, "v": 3},       # fine
    ]}))
    assert publisher.dlq_reasons() == ["price:required", "price:exclusiveMinimum", "symbol:pattern"]
    assert [r["key"] for r in publisher.dlq] == [b"AAPL", b"AAPL", b"aapl"]
    assert [(t, k) for t, k, _ in publisher.messages] == [("market.trades.v1", b"MSFT")]


# -- the live source against the stand-in ---------------------------------------------------------------------

def test_subscribes_publishes_every_delivery_and_collapses_repeats_by_event_id():
    first, second = batch(0, 5), batch(5, 5, "MSFT")

    def behaviour(session: Session) -> None:
        session.wait_subscribed(len(SYMBOLS))
        session.ping()
        session.send_trades(first)
        session.send_trades(first[:3])  # delivered again
        session.ping()
        session.send_trades(second)
        session.idle_until_closed()

    publisher = MemoryPublisher()
    with FinnhubWsStandIn(API_KEY, [behaviour]) as server:
        source = stream_for(server.url, publisher)
        summary = source.run(lambda: len(publisher.messages) >= 13)
    assert server.sessions[0].subscriptions == SYMBOLS
    assert publisher.events("market.trades.v1") == [expected_event(i) for i in first + first[:3] + second]
    assert (summary["trades_published"], summary["distinct_trade_event_ids"], summary["pings"]) == (13, 10, 2)
    assert (summary["connections"], summary["reconnects"], summary["messages_received"]) == (1, 0, 5)
    assert server.rejected == [] and server.request_paths == ["/?token=***"]


def test_reconnects_after_a_dropped_connection_resubscribes_and_loses_nothing_the_server_sent():
    before, after = batch(0, 50), batch(50, 50, "MSFT")

    def send_then_drop(session: Session) -> None:
        session.wait_subscribed(len(SYMBOLS))
        session.send_trades(before[:25])
        session.send_trades(before[25:])
        session.drop()

    def resume(session: Session) -> None:
        session.wait_subscribed(len(SYMBOLS))
        session.send_trades(after)
        session.idle_until_closed()

    publisher, metrics = MemoryPublisher(), ProducerMetrics()
    with FinnhubWsStandIn(API_KEY, [send_then_drop, resume]) as server:
        source = stream_for(server.url, publisher, metrics=metrics)
        summary = source.run(lambda: len(publisher.messages) >= 100)
    assert [s.subscriptions for s in server.sessions] == [SYMBOLS, SYMBOLS]
    assert publisher.events("market.trades.v1") == [expected_event(i) for i in before + after]
    assert (summary["connections"], summary["reconnects"], summary["watchdog_reconnects"]) == (2, 1, 0)
    assert server.rejected == []  # never two connections at once: Finnhub allows one per key
    assert len(source.waits) == 1 and 0.025 <= source.waits[0] <= 0.05
    assert metrics.registry.get_sample_value("stocklake_producer_reconnects_total", {"source": "finnhub-ws"}) == 1
    assert metrics.registry.get_sample_value("stocklake_producer_messages_received_total",
                                             {"source": "finnhub-ws"}) == 3


def test_the_watchdog_reconnects_a_silent_connection_during_market_hours():
    late = batch(0, 3)

    def go_silent(session: Session) -> None:
        session.wait_subscribed(len(SYMBOLS))
        session.ping()  # a ping is not a trade: Finnhub keeps pinging dead subscriptions
        session.idle_until_closed()

    def deliver(session: Session) -> None:
        session.wait_subscribed(len(SYMBOLS))
        session.send_trades(late)
        session.idle_until_closed()

    publisher = MemoryPublisher()
    with FinnhubWsStandIn(API_KEY, [go_silent, deliver]) as server:
        source = stream_for(server.url, publisher, watchdog_silence_seconds="0.3")
        summary = source.run(lambda: len(publisher.messages) >= 3)
        server.wait_for(lambda: server.sessions[0].closed_by_client, what="the client to close the silent one")
    assert (summary["connections"], summary["watchdog_reconnects"]) == (2, 1)
    assert server.sessions[1].subscriptions == SYMBOLS
    assert publisher.events("market.trades.v1") == [expected_event(i) for i in late]
    assert server.rejected == []


def test_silence_outside_market_hours_is_not_a_fault():
    def silent(session: Session) -> None:
        session.wait_subscribed(len(SYMBOLS))
        session.idle_until_closed()

    with FinnhubWsStandIn(API_KEY, [silent]) as server:
        source = stream_for(server.url, MemoryPublisher(), market_open=False, watchdog_silence_seconds="0.1")
        # 20 receive waits of 0.05 s: ten times the watchdog's limit of silence.
        summary = source.run(lambda: source.idle_checks >= 20)
    assert (summary["connections"], summary["watchdog_reconnects"], len(server.sessions)) == (1, 0, 1)


def test_backoff_doubles_within_its_bounds_while_finnhub_is_unreachable():
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        url = f"ws://127.0.0.1:{probe.getsockname()[1]}"
    now = [0.0]
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        now[0] += seconds

    randoms = iter([0.0, 1.0, 0.5, 0.0, 1.0, 0.25, 0.5])
    sink = EventSink(MemoryPublisher(), "finnhub-ws")
    source = FinnhubTradeStream(
        settings_for(url, reconnect_initial_seconds="1", reconnect_max_seconds="8"), sink, Market(True), API_KEY,
        SYMBOLS, clock=lambda: now[0], sleep=sleep, rand=lambda: next(randoms))
    source.run(lambda: len(source.waits) >= 7)
    # attempt n waits within [step/2, step], step = min(8, 1 * 2**n)
    assert source.waits == [0.5, 2.0, 3.0, 4.0, 8.0, 5.0, 6.0]
    steps = [1, 2, 4, 8, 8, 8, 8]
    assert all(step / 2 <= wait <= step for wait, step in zip(source.waits, steps))
    assert sum(sleeps) == pytest.approx(sum(source.waits[:-1]))  # the last wait was cut short by the stop
    assert max(sleeps) <= 1.0  # short steps: a stop request is honoured within a second
    assert source.connections == 0


def test_a_rejected_key_is_one_clear_line_without_the_key():
    with FinnhubWsStandIn("the-right-key", [lambda s: None]) as server:
        url = server.url
        source = stream_for(url, MemoryPublisher())
        with pytest.raises(ApiKeyRejected) as raised:
            source.run(lambda: False)
    message = str(raised.value)
    assert message == f"Finnhub rejected the API key (HTTP 401 from {url}): check FINNHUB_API_KEY"
    assert API_KEY not in message and "\n" not in message
    assert server.rejected == [401]


def test_more_symbols_than_the_cap_are_refused_before_connecting():
    with pytest.raises(ValueError, match="51 symbols requested but finnhub.max_symbols is 50"):
        stream_for("ws://127.0.0.1:9", MemoryPublisher(), symbols=[f"S{i}" for i in range(51)])


def test_metrics_endpoint_serves_the_counters_without_the_key():
    metrics = ProducerMetrics()
    server = metrics.serve("127.0.0.1", 0)
    try:
        sink = EventSink(MemoryPublisher(), "finnhub-ws", metrics)
        metrics.dlq.labels("price:required").inc(2)
        sink.received(3)
        text = urllib.request.urlopen(f"http://127.0.0.1:{server.server_port}/metrics", timeout=5).read().decode()
    finally:
        server.shutdown()
    assert 'stocklake_producer_messages_received_total{source="finnhub-ws"} 3.0' in text
    assert 'stocklake_producer_dlq_messages_total{reason="price:required"} 2.0' in text
    assert "stocklake_producer_last_message_age_seconds" in text
    assert API_KEY not in text


# -- recorder and replay ------------------------------------------------------------------------------------------

def test_a_recording_replays_to_exactly_what_the_live_client_published(tmp_path: Path):
    trades = batch(0, 4) + batch(4, 2, "MSFT")

    def behaviour(session: Session) -> None:
        session.wait_subscribed(len(SYMBOLS))
        session.send_trades(trades[:4])
        session.ping()
        session.send_trades(trades[:2])  # repeated delivery
        session.send_raw("garbage")
        session.send_trades(trades[4:])
        session.idle_until_closed()

    live = MemoryPublisher()
    log_file = tmp_path / "rec" / "finnhub.jsonl"
    clock = iter(range(1_763_651_400_000, 1_763_651_500_000, 250))
    recorder = Recorder(log_file, wall_clock=lambda: next(clock) / 1000)
    with FinnhubWsStandIn(API_KEY, [behaviour]) as server:
        stream_for(server.url, live, recorder=recorder).run(lambda: len(live.messages) >= 8)
    recorder.close()
    lines = log_file.read_text().splitlines()
    assert [parse_line(line) for line in lines] == [
        (1_763_651_400_000 + 250 * i, text) for i, text in enumerate(server.sent_messages)]

    replayed = MemoryPublisher()
    now, sleeps = [0.0], []

    def sleep(seconds):
        sleeps.append(seconds)
        now[0] += seconds

    summary = ReplaySource(log_file, EventSink(replayed, "replay"), speed=2.0, clock=lambda: now[0],
                           sleep=sleep).run(lambda: False)
    assert replayed.messages == live.messages
    assert replayed.dlq_reasons() == live.dlq_reasons() == ["malformed_json"]
    assert (summary["lines"], summary["bad_lines"], summary["pings"], summary["stopped_by"]) == (5, 0, 1,
                                                                                             "end_of_file")
    assert now[0] == pytest.approx(4 * 0.250 / 2)  # the recorded gaps at twice the speed


def test_replay_sends_bad_lines_to_the_dlq_and_shifts_trades_on_request(tmp_path: Path):
    item = trade_item("AAPL", 10.0, T0, 5)
    log_file = tmp_path / "log.jsonl"
    log_file.write_text("\n".join([
        json.dumps({"received_at_ms": 1, "message": json.dumps({"type": "trade", "data": [item]})}),
        "{not a record",
        json.dumps({"received_at_ms": "2", "message": "{}"}),
        "",
        json.dumps({"received_at_ms": 3, "message": json.dumps({"type": "ping"})}),
    ]) + "\n")
    assert first_trade_ms(log_file) == T0
    publisher = MemoryPublisher()
    summary = ReplaySource(log_file, EventSink(publisher, "replay"), pacing=False, shift_ms=60_000).run(
        lambda: False)
    assert publisher.events("market.trades.v1") == [make_trade_event("finnhub", "AAPL", T0 + 60_000, 10.0, 5, ["1"])]
    assert publisher.dlq_reasons() == ["replay:bad_line", "replay:bad_line"]
    assert publisher.dlq[0]["raw"] == b"{not a record"
    assert (summary["lines"], summary["bad_lines"], summary["pings"]) == (4, 2, 1)
