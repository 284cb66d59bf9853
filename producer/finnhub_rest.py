"""Finnhub REST quotes (`--source finnhub-rest`): poll GET {rest_url}/quote per symbol and publish quote snapshots.

Finnhub's /quote, as it really behaves: `{"c":189.3,"d":1.2,"dp":0.64,"h":190.1,"l":187.9,"o":188.0,"pc":188.1,
"t":1700000000}` (t in epoch seconds, d/dp may be null); all zeros for an unknown symbol or a glitch; HTTP 429
(sometimes with Retry-After) past 60 calls a minute on the free tier; 401 for a bad key; 403 for premium endpoints.

So the poller:
- polls each symbol every `finnhub.quote_poll_interval_seconds`, never faster than a token bucket refilled at
  `finnhub.quote_calls_per_minute` allows (capacity 1: at most that many + 1 calls in any 60 s window);
- turns each quote into a quote.v1 event with a deterministic id (an unchanged quote polled twice collapses in
  Silver) and publishes it through the shared validated path (producer.sink.EventSink); every 200 response ends
  in exactly one publish or one DLQ record with the reason (all-zero, stale, malformed, missing/mistyped field);
- rides out 429s (Retry-After, else exponential backoff), 5xx, connection errors and timeouts, retrying the same
  symbol; a rejected key (401) or a denied endpoint (403) stops it with a one-line error the user can act on;
- idles outside market hours, waking in short steps so a stop request is honoured promptly.

Requests go through finnhub-python's Client (producer/finnhub_client.py). The API key travels only in the
X-Finnhub-Token header, never in a URL, and redirects are refused before they are followed: no URL, log line,
exception or summary can hold it.
"""
from __future__ import annotations

import email.utils
import logging
import math
import random
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable, Mapping, Protocol

from conf.settings import Settings

from producer.backoff import Backoff, sleep_until
from producer.errors import AccessDenied, ApiKeyRejected, FinnhubError
from conf.contracts.events import decode, make_quote_event
from producer.finnhub_client import FinnhubClient, fetch
from producer.secrets import API_KEY_ENV, redact
from producer.sink import EventSink

__all__ = ["AccessDenied", "ApiKeyRejected", "FinnhubError", "PollResult", "QuotePoller", "TokenBucket",
           "quote_reason", "quote_event_from", "retry_after_seconds"]

log = logging.getLogger("producer.finnhub_rest")

QUOTE_SOURCE = "finnhub"  # the `source` of every quote event from Finnhub (the id hashes it)
QUOTE_PATH = "/quote"
# Finnhub quote fields -> quote.v1 field names, in the schema's order, so reasons read as the contract's do.
QUOTE_FIELDS = {"c": "current", "d": "change", "dp": "percent_change", "h": "high", "l": "low", "o": "open",
                "pc": "previous_close", "t": "quote_ts"}
NULLABLE_FIELDS = frozenset({"d", "dp"})
BUCKET_CAPACITY = 1.0     # no bursts: calls stay evenly spaced, so any 60 s window holds at most rate + 1
WAIT_STEP_SECONDS = 1.0   # longest single sleep, so should_stop() is honoured promptly
MAX_BODY_BYTES = 64 * 1024  # a quote is ~100 bytes: anything this big is not one (and must not fill memory)

# Outcomes of one poll.
PUBLISHED, DLQ, RATE_LIMITED, FAILED = "published", "dlq", "rate_limited", "failed"

# Reason strings (DLQ), besides the `<field>:<keyword>` ones from the quote.v1 contract.
MALFORMED_JSON = "malformed_json"
ALL_ZERO = "quote:all_zero"
STALE = "quote_ts:stale"


class MarketHoursLike(Protocol):
    """What the poller needs from producer.market_calendar.MarketHours (at: timezone-aware datetime)."""

    def is_open(self, at: datetime) -> bool: ...

    def next_open(self, at: datetime) -> datetime: ...

    def describe(self, at: datetime) -> str: ...


# -- rate limiting ----------------------------------------------------------------------------------------

class TokenBucket:
    """A token bucket: refills at rate_per_minute, holds at most capacity tokens, starts full. Pure: it reads
    the clock it is given and never sleeps.

    Any window of W seconds admits at most capacity + rate_per_minute * W / 60 calls, so capacity is kept small.
    """

    # Float rounding can leave a bucket a hair short of a whole token after waiting exactly wait_time().
    _TOLERANCE = 1e-9

    def __init__(self, rate_per_minute: float, capacity: float, clock: Callable[[], float]):
        if not rate_per_minute > 0:
            raise ValueError(f"rate_per_minute must be > 0, got {rate_per_minute}")
        if not capacity >= 1:
            raise ValueError(f"capacity must be >= 1 (a whole call), got {capacity}")
        self.rate_per_minute = float(rate_per_minute)
        self.capacity = float(capacity)
        self._per_second = self.rate_per_minute / 60.0
        self._clock = clock
        self._tokens = self.capacity
        self._at = clock()

    def _refill(self) -> float:
        now = self._clock()
        if now > self._at:
            self._tokens = min(self.capacity, self._tokens + (now - self._at) * self._per_second)
            self._at = now
        return self._tokens

    def wait_time(self) -> float:
        """Seconds until a token is available (0.0 if one is now); rounded up to a microsecond."""
        missing = 1.0 - self._refill()
        if missing <= self._TOLERANCE:
            return 0.0
        return math.ceil(missing / self._per_second * 1e6) / 1e6

    def take(self) -> None:
        """Consume a token; RuntimeError if none is available (call wait_time() first)."""
        if self.wait_time() > 0:
            raise RuntimeError("no token available: wait wait_time() seconds first")
        self._tokens -= 1.0


# -- quotes -> events -------------------------------------------------------------------------------------

def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_whole(value: Any) -> bool:
    return (isinstance(value, int) and not isinstance(value, bool)) or (isinstance(value, float)
                                                                        and value.is_integer())


def _is_all_zero(quote: dict[str, Any]) -> bool:
    # Finnhub's answer for an unknown symbol: {"c":0,"d":null,"dp":null,"h":0,"l":0,"o":0,"pc":0,"t":0}.
    prices_and_time = all(_is_number(quote.get(key)) and quote[key] == 0 for key in ("c", "h", "l", "o", "pc", "t"))
    return prices_and_time and all(quote.get(key) in (None, 0) for key in NULLABLE_FIELDS)


def quote_reason(quote: Any, now_s: float, max_age_s: float) -> str | None:
    """Why a decoded /quote body cannot become a quote event (None if it can), in quote.v1 terms.

    Checked in this order: not an object, all zeros, missing fields, mistyped fields, older than max_age_s at
    now_s (epoch seconds). Range rules (prices > 0, quote_ts bounds) are left to the contract, via the sink.
    """
    if not isinstance(quote, dict):
        return MALFORMED_JSON
    if _is_all_zero(quote):
        return ALL_ZERO
    for key, field in QUOTE_FIELDS.items():
        if key not in quote or (quote[key] is None and key not in NULLABLE_FIELDS):
            return f"{field}:required"
    for key, field in QUOTE_FIELDS.items():
        value = quote[key]
        if key == "t":
            if not _is_whole(value):
                return f"{field}:type"
        elif not (_is_number(value) or (value is None and key in NULLABLE_FIELDS)):
            return f"{field}:type"
    if now_s - quote["t"] > max_age_s:
        return STALE
    return None


def quote_event_from(symbol: str, quote: dict[str, Any]) -> dict[str, Any]:
    """The quote.v1 event of a /quote body that passed quote_reason()."""
    return make_quote_event(QUOTE_SOURCE, symbol, int(quote["t"]) * 1000, current=quote["c"], change=quote["d"],
                            percent_change=quote["dp"], high=quote["h"], low=quote["l"], open=quote["o"],
                            previous_close=quote["pc"])


def retry_after_seconds(value: str | None, now_s: float) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP-date), None if absent or invalid."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
        if when.tzinfo is None:  # RFC 9110 dates are GMT
            when = when.replace(tzinfo=timezone.utc)
        return max(0.0, when.timestamp() - now_s)  # a date in the past means "now"
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


# -- HTTP -------------------------------------------------------------------------------------------------

def retry_backoffs(finnhub: Any, rand: Callable[[], float]) -> tuple[Backoff, Backoff]:
    """The waits of a Finnhub REST client (settings section `finnhub`): (after a 429, after a failure), both
    capped at reconnect_max_seconds."""
    ceiling = float(finnhub.reconnect_max_seconds)
    # A first 429 wait above the ceiling is the ceiling (it used to raise out of the client at start-up).
    return (Backoff(min(float(finnhub.rate_limited_initial_seconds), ceiling), ceiling, rand),
            Backoff(float(finnhub.reconnect_initial_seconds), ceiling, rand))


@dataclass(frozen=True)
class PollResult:
    """What one GET /quote came to: PUBLISHED, DLQ (detail = reason), RATE_LIMITED (retry_after from the
    header, if any) or FAILED (detail = what went wrong, redacted)."""

    symbol: str
    outcome: str
    detail: str | None = None
    retry_after: float | None = None


# -- the poller -------------------------------------------------------------------------------------------

class QuotePoller:
    """Polls Finnhub's /quote for each symbol and publishes quote events, until asked to stop."""

    def __init__(self, settings: Settings, sink: EventSink, market_hours: MarketHoursLike, api_key: str,
                 symbols: list[str], *, clock: Callable[[], float] = time.monotonic,
                 wall_clock: Callable[[], float] = time.time, sleep: Callable[[float], None] = time.sleep,
                 rand: Callable[[], float] = random.random):
        if not api_key:
            raise ValueError(f"an API key is required (set {API_KEY_ENV})")
        self.symbols = list(dict.fromkeys(symbols))  # order kept, duplicates polled once
        if not self.symbols:
            raise ValueError("no symbols to poll")
        finnhub = settings.finnhub
        self.rest_url = finnhub.rest_url.rstrip("/")
        self.interval = float(finnhub.quote_poll_interval_seconds)
        self.max_age = float(finnhub.quote_max_age_seconds)
        self.timeout = float(finnhub.http_timeout_seconds)
        self.progress_every = float(settings.producer.progress_interval_seconds)
        self.sink = sink
        self.market_hours = market_hours
        self._api_key = api_key
        self._client = FinnhubClient(api_key, self.rest_url, self.timeout)
        self._clock, self._wall_clock = clock, wall_clock

        def serve_then_sleep(seconds: float) -> None:
            # Kafka's delivery callbacks (and so the published counts) are served only when polled: poll while idle.
            sink.publisher.poll(0)
            sleep(seconds)

        self._sleep = serve_then_sleep
        self.bucket = TokenBucket(finnhub.quote_calls_per_minute, BUCKET_CAPACITY, clock)
        self.rate_backoff, self.error_backoff = retry_backoffs(finnhub, rand)
        self.polls = 0           # HTTP requests sent
        self.rate_limited = 0    # of which answered 429
        self.errors = 0          # of which failed: 5xx/other status, connection error, timeout
        self.waits: list[float] = []  # each wait after a 429 or a failure, in order
        self._due: dict[str, float] = {}
        self._retry: str | None = None     # the symbol to poll again after a 429 or a failure
        self._resume_at = -math.inf        # no call before this (clock), after a 429 or a failure
        self._market_was_open: bool | None = None
        self._next_progress = 0.0
        self._polls_at_progress = 0

    # -- one poll -----------------------------------------------------------------------------------------

    def poll_once(self, symbol: str) -> PollResult:
        """One GET /quote for symbol, its response published or sent to the DLQ; no waiting, no token taken.

        Raises ApiKeyRejected (401) and AccessDenied (403); every other failure is returned as a PollResult.
        """
        self.polls += 1
        try:
            status, headers, body = self._get(symbol)
        except (OSError, ValueError) as exc:
            # OSError: requests' exceptions (refused, unreachable, DNS, timeouts, a connection dropped
            # mid-response). ValueError: a URL requests refuses.
            self.errors += 1
            return PollResult(symbol, FAILED, self._redact(f"{type(exc).__name__}: {exc}"))
        if status == 200 and len(body) > MAX_BODY_BYTES:
            self.errors += 1
            return PollResult(symbol, FAILED, f"HTTP 200 with a body over {MAX_BODY_BYTES} bytes")
        if status == 200:
            return self._handle_quote(symbol, body)
        if status == 429:
            self.rate_limited += 1
            retry_after = retry_after_seconds(headers.get("Retry-After"), self._wall_clock())
            return PollResult(symbol, RATE_LIMITED, "HTTP 429", retry_after)
        if status == 401:
            raise ApiKeyRejected(f"Finnhub rejected the API key (HTTP 401): check {API_KEY_ENV}")
        if status == 403:
            raise AccessDenied(f"Finnhub denied access to {QUOTE_PATH} (HTTP 403): the API key's plan does not "
                               f"include this endpoint")
        self.errors += 1
        hint = " (redirects are not followed: check finnhub.rest_url)" if 300 <= status < 400 else ""
        return PollResult(symbol, FAILED, f"HTTP {status}{hint}")

    def _get(self, symbol: str) -> tuple[int, Mapping[str, str], bytes]:
        """(status, headers, body) of GET /quote through finnhub-python's client; non-2xx statuses are returned."""
        return fetch(lambda: self._client.quote(symbol), MAX_BODY_BYTES)

    def _handle_quote(self, symbol: str, body: bytes) -> PollResult:
        self.sink.received()
        quote = decode(body)
        reason = quote_reason(quote, self._wall_clock(), self.max_age) if quote is not None else MALFORMED_JSON
        if quote is None or reason is not None:
            reason = reason or MALFORMED_JSON
            self.sink.reject(body, reason, self.sink.publisher.quotes_topic, symbol.encode("utf-8"))
            return PollResult(symbol, DLQ, reason)
        reason = self.sink.publish_quote(quote_event_from(symbol, quote))  # the contract's say (e.g. c <= 0)
        return PollResult(symbol, PUBLISHED, None) if reason is None else PollResult(symbol, DLQ, reason)

    # -- the loop -----------------------------------------------------------------------------------------

    def run(self, should_stop: Callable[[], bool]) -> dict[str, Any]:
        """Poll until should_stop(); returns the sink's summary plus polls, rate_limited and errors.

        Raises ApiKeyRejected / AccessDenied, which no retry can fix. Does not flush the publisher.
        """
        start = self._clock()
        self._due = {symbol: start for symbol in self.symbols}
        self._next_progress = start + self.progress_every
        while not should_stop():
            self._maybe_log_progress()
            now_wall = self._now()
            if not self._market_open(now_wall):
                self._idle(now_wall, should_stop)
                continue
            wait = self._time_to_next_call()
            if wait > 0:
                self._sleep(min(wait, WAIT_STEP_SECONDS))
                continue
            symbol = self._retry or min(self.symbols, key=self._due.__getitem__)  # min keeps list order on ties
            called_at = self._clock()
            self.bucket.take()
            self._settle(self.poll_once(symbol), called_at)
        return self.summary()

    def summary(self) -> dict[str, Any]:
        return {**self.sink.summary(), "polls": self.polls, "rate_limited": self.rate_limited,
                "errors": self.errors}

    def _time_to_next_call(self) -> float:
        now = self._clock()
        due = now if self._retry is not None else min(self._due.values())
        return max(self._resume_at - now, due - now, self.bucket.wait_time(), 0.0)

    def _settle(self, result: PollResult, called_at: float) -> None:
        """Schedule what comes after a poll: the symbol's next poll, or a wait and a retry of the same symbol."""
        symbol = result.symbol
        if result.outcome in (PUBLISHED, DLQ):
            self._retry = None
            self.rate_backoff.reset()
            self.error_backoff.reset()
            # From this call, not from when it was due: a late call (rate limit, backoff) is never followed
            # by a quick one to catch up, so a symbol is polled at most once per interval.
            self._due[symbol] = called_at + self.interval
            return
        if result.outcome == RATE_LIMITED:
            if result.retry_after is not None:
                delay, why = result.retry_after, "Retry-After"
            else:
                delay, why = self.rate_backoff.next_delay(), "backoff"
            log.warning("finnhub rate limit (HTTP 429) polling %s: waiting %.1f s (%s)", symbol, delay, why)
        else:
            delay = self.error_backoff.next_delay()
            log.warning("finnhub %s %s failed: %s; retrying in %.1f s", QUOTE_PATH, symbol,
                        self._redact(result.detail or "unknown error"), delay)
        self.waits.append(delay)
        self._retry = symbol
        self._resume_at = self._clock() + delay

    # -- market hours -------------------------------------------------------------------------------------

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._wall_clock(), tz=timezone.utc)

    def _market_open(self, at: datetime) -> bool:
        """Whether the market is open at `at`; logs once on each change (and on the first look)."""
        is_open = self.market_hours.is_open(at)
        if is_open != self._market_was_open:
            if is_open:
                verb = "starts" if self._market_was_open is None else "resumes"
                log.info("market open (%s): polling %s, %d symbols each every %g s",
                         self.market_hours.describe(at), verb, len(self.symbols), self.interval)
            else:
                log.info("market closed (%s): polling idles until %s", self.market_hours.describe(at),
                         self.market_hours.next_open(at).astimezone(timezone.utc).isoformat())
        self._market_was_open = is_open
        return is_open

    def _idle(self, at: datetime, should_stop: Callable[[], bool]) -> None:
        """Wait, in short steps, until the market's next open (as reported at `at`)."""
        target = self.market_hours.next_open(at).timestamp()
        if target <= self._wall_clock():
            # The calendar says closed but opening now: look again in a moment rather than spin.
            self._sleep(WAIT_STEP_SECONDS)
            return
        sleep_until(target, clock=self._wall_clock, sleep=self._sleep, should_stop=should_stop,
                    step=WAIT_STEP_SECONDS)

    # -- progress -----------------------------------------------------------------------------------------

    def _maybe_log_progress(self) -> None:
        if self.progress_every <= 0:
            return
        now = self._clock()
        if now < self._next_progress:
            return
        self._next_progress = now + self.progress_every
        if self.polls == self._polls_at_progress:
            return  # nothing new (idle or waiting out a limit): stay quiet
        self._polls_at_progress = self.polls
        stats = self.sink.stats
        log.info("finnhub quotes: polls=%d published=%d dlq=%d rate_limited=%d errors=%d", self.polls,
                 stats.quotes, stats.dlq, self.rate_limited, self.errors)

    def _redact(self, text: str) -> str:
        return redact(text, self._api_key)
