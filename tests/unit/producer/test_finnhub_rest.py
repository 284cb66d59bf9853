"""producer.finnhub_rest against the local Finnhub REST stand-in: a real HTTP server and the real urllib client,
with a fake clock whose sleep() advances time, so minutes of polling run in a moment and every wait is exact."""
from __future__ import annotations

import email.utils
import hashlib
import http.client
import json
import logging
import random
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable, Iterator

import pytest

from conf.settings import Settings, load_settings
from producer.errors import AccessDenied, ApiKeyRejected, FinnhubError
from producer.finnhub_rest import (DLQ, FAILED, PUBLISHED, PollResult, QuotePoller, TokenBucket,
                                   retry_after_seconds)
from producer.sink import EventSink
from tests.standins.finnhub_rest_server import ALL_ZERO_QUOTE, FinnhubRestStandIn, Reply, quote_body
from tests.standins.memory_publisher import MemoryPublisher

KEY = "sk-test-SECRET-4f9c2d"
MONO0 = 1000.0
WALL0 = 1_700_000_000.0
QUOTE_T = 1_699_999_990  # 10 s before the start of every run
AAPL = quote_body(c=189.3, d=1.2, dp=0.64, h=190.1, l=187.9, o=188.0, pc=188.1, t=QUOTE_T)
SCHEMA_ORDER = ["event_id", "schema_version", "source", "symbol", "current", "change", "percent_change", "high",
                "low", "open", "previous_close", "quote_ts"]


# -- test doubles -----------------------------------------------------------------------------------------

class FakeClock:
    """Monotonic and wall clocks that move only when the code under test sleeps."""

    def __init__(self) -> None:
        self.now = MONO0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def time(self) -> float:
        return WALL0 + (self.now - MONO0)

    def sleep(self, seconds: float) -> None:
        assert seconds > 0, f"a sleep must make progress, got {seconds}"
        self.sleeps.append(seconds)
        self.now += seconds


class FakeMarketHours:
    """Closed until `opens_at` (wall seconds), open from then on."""

    def __init__(self, opens_at: float = 0.0):
        self.opens_at = opens_at

    def is_open(self, at: datetime) -> bool:
        assert at.tzinfo is not None
        return at.timestamp() >= self.opens_at

    def next_open(self, at: datetime) -> datetime:
        return at if self.is_open(at) else datetime.fromtimestamp(self.opens_at, tz=timezone.utc)

    def describe(self, at: datetime) -> str:
        return "FAKE: open" if self.is_open(at) else "FAKE: closed"


@dataclass
class Rig:
    clock: FakeClock
    server: FinnhubRestStandIn
    publisher: MemoryPublisher | None = None
    sink: EventSink | None = None
    settings: Settings | None = None

    def poller(self, symbols: list[str], *, env: dict[str, str] | None = None, market: Any = None,
               key: str = KEY, rand: Callable[[], float] = lambda: 1.0) -> QuotePoller:
        self.settings = load_settings({"STOCKLAKE_FINNHUB_REST_URL": self.server.url, **(env or {})})
        self.publisher = MemoryPublisher()
        self.sink = EventSink(self.publisher, "finnhub-rest")
        return QuotePoller(self.settings, self.sink, market or FakeMarketHours(), key, symbols,
                           clock=self.clock.monotonic, wall_clock=self.clock.time, sleep=self.clock.sleep,
                           rand=rand)

    def after_requests(self, n: int) -> Callable[[], bool]:
        return lambda: len(self.server.requests) >= n

    def request_times(self) -> list[float]:
        return [r.at for r in self.server.requests]


@pytest.fixture
def rig() -> Iterator[Rig]:
    clock = FakeClock()
    with FinnhubRestStandIn(KEY, clock=clock.monotonic) as server:
        yield Rig(clock, server)


def gaps(times: list[float]) -> list[float]:
    return [b - a for a, b in zip(times, times[1:])]


def max_calls_in_window(times: list[float], window: float = 60.0) -> int:
    """The most calls in any closed window [t, t + window] (the strictest reading of "a minute")."""
    return max(sum(1 for u in times if t <= u <= t + window) for t in times)


def fetch(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, dict(exc.headers), exc.read()


# -- token bucket -----------------------------------------------------------------------------------------

def test_token_bucket_starts_full_then_paces_at_its_rate():
    clock = FakeClock()
    bucket = TokenBucket(rate_per_minute=60, capacity=2, clock=clock.monotonic)
    assert bucket.wait_time() == 0.0
    bucket.take()
    bucket.take()
    assert bucket.wait_time() == 1.0
    with pytest.raises(RuntimeError):
        bucket.take()
    clock.sleep(0.25)
    assert bucket.wait_time() == 0.75
    clock.sleep(0.75)
    assert bucket.wait_time() == 0.0
    bucket.take()
    clock.sleep(100.0)  # a long pause refills to capacity, not beyond
    bucket.take()
    bucket.take()
    assert bucket.wait_time() == 1.0


@pytest.mark.parametrize("rate, capacity", [(0, 1), (-5, 1), (55, 0.5)])
def test_token_bucket_refuses_nonsense(rate, capacity):
    with pytest.raises(ValueError):
        TokenBucket(rate, capacity, FakeClock().monotonic)


def test_token_bucket_never_exceeds_the_limit_in_any_60s_window():
    """Ten simulated minutes of greedy, bursty demand: no 60 s window holds more than rate + capacity calls."""
    clock = FakeClock()
    rate, capacity, limit = 55, 5, 60  # Finnhub's free tier refuses the 61st call in a minute
    bucket = TokenBucket(rate, capacity, clock.monotonic)
    pauses = random.Random(7)
    calls: list[float] = []
    while clock.now < MONO0 + 600:
        if pauses.random() < 0.05:
            clock.sleep(pauses.uniform(1, 20))  # idle spells refill the bucket: then a burst
        wait = bucket.wait_time()
        if wait > 0:
            clock.sleep(wait)
        bucket.take()
        calls.append(clock.now)
    assert len(calls) > 400
    assert max_calls_in_window(calls) <= rate + capacity <= limit
    assert max_calls_in_window(calls, 1.0) == capacity  # bursts after idle spells, never beyond capacity


# -- Retry-After ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("header, expected", [
    (None, None), ("", None), ("3", 3.0), (" 7 ", 7.0), ("0", 0.0), ("1.5", 1.5), ("-1", None), ("nan", None),
    ("inf", None), ("soon", None),
    (email.utils.formatdate(WALL0 + 42, usegmt=True), 42.0),
    (email.utils.formatdate(WALL0 - 42, usegmt=True), 0.0),
])
def test_retry_after_seconds(header, expected):
    assert retry_after_seconds(header, WALL0) == expected


# -- one poll: quotes to events or to the DLQ -------------------------------------------------------------

def test_valid_quote_becomes_the_exact_quote_event_keyed_by_symbol(rig):
    rig.server.set_quote("AAPL", AAPL)
    poller = rig.poller(["AAPL"])
    assert poller.poll_once("AAPL") == PollResult("AAPL", PUBLISHED)
    topic, key, value = rig.publisher.messages[0]
    assert (topic, key) == ("market.quotes.v1", b"AAPL")
    event = json.loads(value)
    canonical = "finnhub|AAPL|1699999990000|189.3|1.2|0.64|190.1|187.9|188.0|188.1"
    assert event == {
        "event_id": hashlib.sha256(canonical.encode()).hexdigest(),
        "schema_version": 1, "source": "finnhub", "symbol": "AAPL", "current": 189.3, "change": 1.2,
        "percent_change": 0.64, "high": 190.1, "low": 187.9, "open": 188.0, "previous_close": 188.1,
        "quote_ts": 1_699_999_990_000,
    }
    assert list(event) == SCHEMA_ORDER
    assert len(rig.publisher.messages) == 1 and rig.publisher.dlq == []
    (request,) = rig.server.requests
    assert (request.path, request.query, request.token_via, request.authorized, request.status) == (
        "/api/v1/quote", {"symbol": ["AAPL"]}, "header", True, 200)
    # As finnhub-python's Client sends it (base URL + "/" + "/quote"), the key in the header only.
    assert request.target == "/api/v1//quote?symbol=AAPL"
    assert request.headers["X-Finnhub-Token"] == "<token>"
    assert request.headers["User-Agent"] == "finnhub/python"


def test_null_change_fields_are_published_as_null(rig):
    rig.server.set_quote("MSFT", {**AAPL, "d": None, "dp": None})
    poller = rig.poller(["MSFT"])
    assert poller.poll_once("MSFT").outcome == PUBLISHED
    event = json.loads(rig.publisher.messages[0][2])
    assert (event["symbol"], event["change"], event["percent_change"]) == ("MSFT", None, None)


def test_the_same_quote_polled_twice_gives_the_same_event_id(rig):
    rig.server.set_quote("AAPL", AAPL)
    poller = rig.poller(["AAPL"])
    summary = poller.run(rig.after_requests(2))
    ids = [json.loads(value)["event_id"] for _, _, value in rig.publisher.messages]
    assert len(ids) == 2 and ids[0] == ids[1]
    assert (summary["quotes_published"], summary["distinct_quote_event_ids"]) == (2, 1)
    assert gaps(rig.request_times()) == [15.0]  # finnhub.quote_poll_interval_seconds


def test_all_zero_quote_goes_to_the_dlq(rig):
    poller = rig.poller(["ZZZZ"])  # the stand-in, like Finnhub, answers all zeros for an unknown symbol
    assert poller.poll_once("ZZZZ") == PollResult("ZZZZ", DLQ, "quote:all_zero")
    assert rig.publisher.dlq == [{"key": b"ZZZZ", "raw": json.dumps(ALL_ZERO_QUOTE, separators=(",", ":")).encode(),
                                  "reason": "quote:all_zero", "source": "finnhub-rest",
                                  "intended_topic": "market.quotes.v1"}]
    assert rig.publisher.messages == []


@pytest.mark.parametrize("age, outcome", [(300, PUBLISHED), (301, DLQ)])
def test_quote_older_than_max_age_is_stale(rig, age, outcome):
    rig.server.set_quote("AAPL", {**AAPL, "t": int(WALL0) - age})
    poller = rig.poller(["AAPL"])  # finnhub.quote_max_age_seconds = 300
    result = poller.poll_once("AAPL")
    assert result.outcome == outcome
    if outcome == DLQ:
        assert result.detail == "quote_ts:stale"
        assert [d["reason"] for d in rig.publisher.dlq] == ["quote_ts:stale"]
        assert rig.publisher.messages == []
    else:
        assert rig.publisher.dlq == [] and len(rig.publisher.messages) == 1


@pytest.mark.parametrize("body, reason", [
    (b"not json", "malformed_json"),
    (b"", "malformed_json"),
    (b"[1, 2, 3]", "malformed_json"),
    (b'"quote"', "malformed_json"),
    (b'{"c":NaN,"d":1,"dp":1,"h":1,"l":1,"o":1,"pc":1,"t":1699999990}', "malformed_json"),
    (b"\xff\xfe{}", "malformed_json"),
    (b'{"error":"something went wrong"}', "current:required"),
    (b'{"c":1,"dp":1,"h":1,"l":1,"o":1,"pc":1,"t":1699999990}', "change:required"),
    (b'{"c":1,"d":1,"dp":1,"h":1,"l":1,"o":1,"pc":1}', "quote_ts:required"),
    (b'{"c":null,"d":1,"dp":1,"h":1,"l":1,"o":1,"pc":1,"t":1699999990}', "current:required"),
    (b'{"c":"189.3","d":1,"dp":1,"h":1,"l":1,"o":1,"pc":1,"t":1699999990}', "current:type"),
    (b'{"c":1,"d":"x","dp":1,"h":1,"l":1,"o":1,"pc":1,"t":1699999990}', "change:type"),
    (b'{"c":1,"d":1,"dp":1,"h":true,"l":1,"o":1,"pc":1,"t":1699999990}', "high:type"),
    (b'{"c":1,"d":1,"dp":1,"h":1,"l":1,"o":1,"pc":1,"t":"1699999990"}', "quote_ts:type"),
    (b'{"c":1,"d":1,"dp":1,"h":1,"l":1,"o":1,"pc":1,"t":1699999990.5}', "quote_ts:type"),
    # Well-formed but against the contract: the sink's quote.v1 validation names the rule.
    (b'{"c":-1,"d":1,"dp":1,"h":1,"l":1,"o":1,"pc":1,"t":1699999990}', "current:exclusiveMinimum"),
])
def test_unusable_bodies_go_to_the_dlq_with_their_reason(rig, body, reason):
    rig.server.enqueue("AAPL", Reply.raw(body))
    poller = rig.poller(["AAPL"])
    assert poller.poll_once("AAPL") == PollResult("AAPL", DLQ, reason)
    (record,) = rig.publisher.dlq
    assert (record["key"], record["reason"], record["intended_topic"]) == (b"AAPL", reason, "market.quotes.v1")
    if reason != "current:exclusiveMinimum":  # the contract's rejections carry the event, the others the body
        assert record["raw"] == body
    assert rig.publisher.messages == []
    assert rig.sink.stats.received == 1


def test_integral_float_timestamp_is_accepted(rig):
    rig.server.enqueue("AAPL", Reply.raw(b'{"c":1,"d":1,"dp":1,"h":1,"l":1,"o":1,"pc":1,"t":1699999990.0}'))
    poller = rig.poller(["AAPL"])
    assert poller.poll_once("AAPL").outcome == PUBLISHED
    assert json.loads(rig.publisher.messages[0][2])["quote_ts"] == 1_699_999_990_000


# -- rate limits ------------------------------------------------------------------------------------------

def test_429_with_retry_after_waits_exactly_that_long_then_retries_the_same_symbol(rig):
    rig.server.enqueue("AAPL", Reply.json({"error": "API limit reached"}, 429, {"Retry-After": "3"}))
    rig.server.set_quote("AAPL", AAPL)
    rig.server.set_quote("MSFT", AAPL)
    poller = rig.poller(["AAPL", "MSFT"])
    summary = poller.run(rig.after_requests(3))
    assert rig.clock.sleeps[:3] == [1.0, 1.0, 1.0]
    requests = rig.server.requests
    assert [(r.symbol, r.status, r.at) for r in requests[:2]] == [("AAPL", 429, MONO0), ("AAPL", 200, MONO0 + 3)]
    assert (requests[2].symbol, requests[2].status) == ("MSFT", 200)
    assert poller.waits == [3.0]
    assert (summary["polls"], summary["rate_limited"], summary["errors"], summary["quotes_published"]) == (3, 1, 0, 2)


def test_429_with_retry_after_as_http_date(rig):
    date = email.utils.formatdate(WALL0 + 7, usegmt=True)
    rig.server.enqueue("AAPL", Reply.json({"error": "API limit reached"}, 429, {"Retry-After": date}))
    rig.server.set_quote("AAPL", AAPL)
    poller = rig.poller(["AAPL"])
    poller.run(rig.after_requests(2))
    assert rig.clock.sleeps == [1.0] * 7
    assert gaps(rig.request_times()) == [7.0]


@pytest.mark.parametrize("rand, expected", [
    (lambda: 1.0, [5.0, 10.0, 20.0, 40.0, 60.0, 60.0]),  # the whole step: 5 s doubling, capped at 60 s
    (lambda: 0.0, [2.5, 5.0, 10.0, 20.0, 30.0, 30.0]),   # half the step, the shortest wait
])
def test_429_without_retry_after_backs_off_doubling_and_capped(rig, rand, expected):
    rig.server.enqueue("AAPL", *[Reply.json({"error": "API limit reached"}, 429)] * 6)
    rig.server.set_quote("AAPL", AAPL)
    poller = rig.poller(["AAPL"], rand=rand)
    summary = poller.run(rig.after_requests(7))
    assert poller.waits == expected
    assert gaps(rig.request_times()) == expected
    assert max(rig.clock.sleeps) == 1.0
    assert (summary["rate_limited"], summary["quotes_published"]) == (6, 1)


def test_429_backoff_stays_within_half_step_to_step_and_resets_after_a_success(rig):
    rig.server.enqueue("AAPL", *[Reply.json({"error": "API limit reached"}, 429)] * 4, AAPL,
                       Reply.json({"error": "API limit reached"}, 429))
    rig.server.set_quote("AAPL", AAPL)
    poller = rig.poller(["AAPL"], rand=random.Random(3).random)
    poller.run(rig.after_requests(7))
    steps = [5.0, 10.0, 20.0, 40.0, 5.0]  # the fifth wait follows a success: back to the first step
    assert len(poller.waits) == 5
    for wait, step in zip(poller.waits, steps):
        assert step / 2 <= wait <= step
    times = rig.request_times()
    assert gaps(times[:5]) == pytest.approx(poller.waits[:4], abs=1e-9)
    assert times[5] - times[4] == 15.0  # the next poll waits a full interval after the success
    assert times[6] - times[5] == pytest.approx(poller.waits[4], abs=1e-9)


def test_many_symbols_for_minutes_never_exceed_the_rate_limit(rig):
    """20 symbols every 15 s want 80 calls a minute; the bucket holds them to 55 (+1), under Finnhub's 60."""
    symbols = [f"SYM{i:02d}" for i in range(20)]
    for symbol in symbols:
        rig.server.set_quote(symbol, AAPL)
    rig.server.rate_limit_per_minute = 60
    # The stand-in's quote keeps its time: a max age past the run keeps it fresh for all six minutes.
    poller = rig.poller(symbols, env={"STOCKLAKE_FINNHUB_QUOTE_MAX_AGE_SECONDS": "3600"})
    summary = poller.run(lambda: rig.clock.now >= MONO0 + 360)
    times = rig.request_times()
    assert len(times) >= 6 * 55 - 1
    assert max_calls_in_window(times) <= 55 + 1 <= 60
    assert {r.status for r in rig.server.requests} == {200}  # the stand-in never had to say 429
    per_symbol = [len(rig.server.quote_requests(s)) for s in symbols]
    assert max(per_symbol) - min(per_symbol) <= 1  # round robin: nobody starves
    assert summary["polls"] == summary["quotes_published"] == len(times)
    assert summary["rate_limited"] == 0


def test_each_symbol_is_polled_on_its_interval(rig):
    for symbol in ("AAPL", "MSFT", "NVDA"):
        rig.server.set_quote(symbol, AAPL)
    poller = rig.poller(["AAPL", "MSFT", "NVDA"], env={"STOCKLAKE_FINNHUB_QUOTE_CALLS_PER_MINUTE": "60"})
    poller.run(rig.after_requests(9))
    assert [(r.symbol, r.at - MONO0) for r in rig.server.requests] == [
        ("AAPL", 0.0), ("MSFT", 1.0), ("NVDA", 2.0),
        ("AAPL", 15.0), ("MSFT", 16.0), ("NVDA", 17.0),
        ("AAPL", 30.0), ("MSFT", 31.0), ("NVDA", 32.0)]
    assert max(rig.clock.sleeps) <= 1.0


# -- failures ---------------------------------------------------------------------------------------------

def test_5xx_and_dropped_connections_back_off_and_retry(rig, caplog):
    caplog.set_level(logging.DEBUG)
    rig.server.enqueue("AAPL", Reply.json({"error": "oops"}, 503), Reply.raw(b"<html>", 500), Reply.drop())
    rig.server.set_quote("AAPL", AAPL)
    # 60 calls a minute: the bucket's 1 s spacing never outlasts the shortest backoff, so the gaps are the waits.
    poller = rig.poller(["AAPL"], env={"STOCKLAKE_FINNHUB_QUOTE_CALLS_PER_MINUTE": "60"})
    summary = poller.run(rig.after_requests(4))
    assert poller.waits == [1.0, 2.0, 4.0]  # finnhub.reconnect_initial_seconds doubling (rand = 1)
    assert gaps(rig.request_times()) == [1.0, 2.0, 4.0]
    assert (summary["polls"], summary["errors"], summary["quotes_published"], summary["sent_dlq"]) == (4, 3, 1, 0)
    failures = [r.getMessage() for r in caplog.records if "failed" in r.getMessage()]
    assert len(failures) == 3 and all("\n" not in m for m in failures)
    assert "HTTP 503" in failures[0] and "HTTP 500" in failures[1]
    assert "RemoteDisconnected" in failures[2] or "Connection" in failures[2]


def test_timeout_is_a_failure_that_is_retried(rig):
    rig.server.enqueue("AAPL", Reply.stall(10.0))
    rig.server.set_quote("AAPL", AAPL)
    poller = rig.poller(["AAPL"], env={"STOCKLAKE_FINNHUB_HTTP_TIMEOUT_SECONDS": "0.2"})
    result = poller.poll_once("AAPL")
    assert result.outcome == FAILED and "timed out" in result.detail
    assert poller.poll_once("AAPL").outcome == PUBLISHED
    assert (poller.polls, poller.errors) == (2, 1)


def test_an_oversized_body_is_a_failure_not_a_quote(rig):
    rig.server.enqueue("AAPL", Reply.raw(b" " * (64 * 1024 + 1)))
    poller = rig.poller(["AAPL"])
    assert poller.poll_once("AAPL") == PollResult("AAPL", FAILED, "HTTP 200 with a body over 65536 bytes")
    assert (poller.errors, rig.sink.stats.received, rig.publisher.dlq) == (1, 0, [])


def test_redirects_are_not_followed(rig):
    location = f"{rig.server.url}/quote?symbol=AAPL"
    rig.server.enqueue("AAPL", Reply.raw(b"", 302, {"Location": location}))
    poller = rig.poller(["AAPL"])
    result = poller.poll_once("AAPL")
    assert result == PollResult("AAPL", FAILED, "HTTP 302 (redirects are not followed: check finnhub.rest_url)")
    assert len(rig.server.requests) == 1


def test_401_raises_api_key_rejected_in_one_line_without_the_key(rig):
    wrong = "sk-wrong-KEY-0000"
    poller = rig.poller(["AAPL"], key=wrong)
    with pytest.raises(ApiKeyRejected) as caught:
        poller.run(lambda: False)
    message = str(caught.value)
    assert message == "Finnhub rejected the API key (HTTP 401): check FINNHUB_API_KEY"
    assert isinstance(caught.value, FinnhubError) and isinstance(caught.value, RuntimeError)
    assert wrong not in repr(caught.value) and caught.value.__cause__ is None
    (request,) = rig.server.requests
    assert (request.status, request.authorized, request.token_via) == (401, False, "header")
    assert wrong not in request.target and rig.publisher.messages == rig.publisher.dlq == []


def test_403_raises_access_denied_naming_the_endpoint(rig):
    rig.server.enqueue("AAPL", Reply.json({"error": "You don't have access to this resource."}, 403))
    poller = rig.poller(["AAPL"])
    with pytest.raises(AccessDenied) as caught:
        poller.run(lambda: False)
    message = str(caught.value)
    assert message == ("Finnhub denied access to /quote (HTTP 403): the API key's plan does not include this "
                       "endpoint")
    assert isinstance(caught.value, FinnhubError)


# -- market hours -----------------------------------------------------------------------------------------

def test_outside_market_hours_no_calls_until_next_open(rig, caplog):
    caplog.set_level(logging.INFO, logger="producer.finnhub_rest")
    rig.server.set_quote("AAPL", AAPL)
    poller = rig.poller(["AAPL"], market=FakeMarketHours(opens_at=WALL0 + 30))
    summary = poller.run(rig.after_requests(1))
    assert rig.clock.sleeps == [1.0] * 30
    assert [(r.symbol, r.at) for r in rig.server.requests] == [("AAPL", MONO0 + 30)]
    messages = [r.getMessage() for r in caplog.records]
    assert [m for m in messages if m.startswith("market")] == [
        "market closed (FAKE: closed): polling idles until 2023-11-14T22:13:50+00:00",
        "market open (FAKE: open): polling resumes, 1 symbols each every 15 s",
    ]
    assert summary["quotes_published"] == 1


def test_stop_is_honoured_promptly_while_idle(rig):
    poller = rig.poller(["AAPL"], market=FakeMarketHours(opens_at=WALL0 + 10 * 3600))
    summary = poller.run(lambda: len(rig.clock.sleeps) >= 3)
    assert rig.clock.sleeps == [1.0, 1.0, 1.0]
    assert rig.server.requests == [] and summary["polls"] == 0


def test_real_market_hours_always_open(rig):
    market_calendar = pytest.importorskip("producer.market_calendar")
    rig.server.set_quote("AAPL", AAPL)
    poller = rig.poller(["AAPL"], market=market_calendar.MarketHours("XNYS", "always"))
    assert poller.run(rig.after_requests(1))["quotes_published"] == 1


# -- observability and secrets ----------------------------------------------------------------------------

def test_progress_is_logged_with_counts_and_quiet_when_nothing_happens(rig, caplog):
    caplog.set_level(logging.INFO, logger="producer.finnhub_rest")
    for symbol in ("AAPL", "MSFT", "NVDA"):
        rig.server.set_quote(symbol, AAPL)
    poller = rig.poller(["AAPL", "MSFT", "NVDA"], env={"STOCKLAKE_FINNHUB_QUOTE_CALLS_PER_MINUTE": "60"})
    poller.run(lambda: rig.clock.now >= MONO0 + 29)  # progress_interval_seconds = 5
    progress = [r.getMessage() for r in caplog.records if r.getMessage().startswith("finnhub quotes:")]
    assert progress == ["finnhub quotes: polls=3 published=3 dlq=0 rate_limited=0 errors=0",
                        "finnhub quotes: polls=6 published=6 dlq=0 rate_limited=0 errors=0"]


def test_every_response_is_accounted_for_and_the_key_never_leaks(rig, caplog):
    caplog.set_level(logging.DEBUG)
    rig.server.enqueue("AAPL", Reply.json({"error": "API limit reached"}, 429), Reply.json({}, 503), Reply.drop(),
                       Reply.raw(b"garbage"), ALL_ZERO_QUOTE, {**AAPL, "t": QUOTE_T - 3600}, AAPL)
    poller = rig.poller(["AAPL"])
    summary = poller.run(rig.after_requests(7))
    # Every 200 ends in one publish or one DLQ record; every request is a 200, a 429 or a failure.
    assert summary["messages_received"] == summary["quotes_published"] + summary["sent_dlq"] == 4
    assert summary["polls"] == summary["messages_received"] + summary["rate_limited"] + summary["errors"] == 7
    assert summary["dlq_by_reason"] == {"malformed_json": 1, "quote:all_zero": 1, "quote_ts:stale": 1}
    with pytest.raises(ApiKeyRejected) as caught:
        rig.poller(["AAPL"], key=KEY + "-revoked").poll_once("AAPL")
    assert KEY not in str(caught.value)
    assert KEY not in caplog.text
    assert all(KEY not in r.getMessage() and KEY not in str(r.args) for r in caplog.records)
    assert KEY not in repr(summary)
    assert all(KEY not in r.target and KEY not in json.dumps(r.headers) for r in rig.server.requests)
    assert {r.token_via for r in rig.server.requests} == {"header"}


def test_constructor_refuses_no_symbols_or_no_key(rig):
    with pytest.raises(ValueError):
        rig.poller([])
    with pytest.raises(ValueError):
        rig.poller(["AAPL"], key="")


# -- the stand-in itself ----------------------------------------------------------------------------------

def test_standin_authenticates_by_header_or_query_token(rig):
    rig.server.set_quote("AAPL", AAPL)
    assert fetch(f"{rig.server.url}/quote?symbol=AAPL&token={KEY}")[::2] == (
        200, json.dumps(AAPL, separators=(",", ":")).encode())
    assert fetch(f"{rig.server.url}/quote?symbol=AAPL")[::2] == (401, b'{"error":"Invalid API key"}')
    assert fetch(f"{rig.server.url}/quote?symbol=AAPL", {"X-Finnhub-Token": "nope"})[0] == 401
    assert [(r.token_via, r.authorized) for r in rig.server.requests] == [
        ("query", True), (None, False), ("header", False)]


def test_standin_premium_endpoint_is_403_and_unknown_symbol_all_zero(rig):
    headers = {"X-Finnhub-Token": KEY}
    status, _, body = fetch(f"{rig.server.url}/stock/candle?symbol=AAPL&resolution=1", headers)
    assert (status, json.loads(body)) == (403, {"error": "You don't have access to this resource."})
    status, _, body = fetch(f"{rig.server.url}/quote?symbol=NOPE", headers)
    assert (status, json.loads(body)) == (200, ALL_ZERO_QUOTE)


def test_standin_scripts_replies_per_symbol_then_falls_back_to_the_default(rig):
    rig.server.script("AAPL", [(200, AAPL), (429, {"error": "API limit reached"}, {"Retry-After": "2"}),
                               (500, "<html>oops</html>"), Reply.drop()])
    rig.server.set_quote("AAPL", {**AAPL, "c": 200.0})
    url, headers = f"{rig.server.url}/quote?symbol=AAPL", {"X-Finnhub-Token": KEY}
    assert fetch(url, headers)[::2] == (200, json.dumps(AAPL, separators=(",", ":")).encode())
    status, reply_headers, _ = fetch(url, headers)
    assert (status, reply_headers["Retry-After"]) == (429, "2")
    assert fetch(url, headers)[::2] == (500, b"<html>oops</html>")
    with pytest.raises(http.client.RemoteDisconnected):  # the connection is closed unanswered
        fetch(url, headers)
    assert json.loads(fetch(url, headers)[2])["c"] == 200.0
    assert [r.status for r in rig.server.quote_requests("AAPL")] == [200, 429, 500, None, 200]


def test_standin_rate_limits_a_rolling_60s_window_on_its_clock(rig):
    rig.server.rate_limit_per_minute = 3
    rig.server.rate_limit_retry_after = 7
    url, headers = f"{rig.server.url}/quote?symbol=AAPL", {"X-Finnhub-Token": KEY}
    answers = [fetch(url, headers) for _ in range(4)]
    assert [a[0] for a in answers] == [200, 200, 200, 429]
    assert answers[3][1]["Retry-After"] == "7"
    rig.clock.sleep(59.5)
    assert fetch(url, headers)[0] == 429  # still within 60 s of the first calls
    rig.clock.sleep(0.5)
    assert fetch(url, headers)[0] == 200  # the first four have left the window; the 429 at 59.5 s has not
