"""The Finnhub /stock/candle client the historical backfill (spark_jobs/backfill.py) runs on the driver, and the
bar events of its answers (the bar contract: conf/contracts/bars.py).

Finnhub's /stock/candle (premium on most plans: 403 otherwise), as it answers for resolution=D:
`{"c":[...],"h":[...],"l":[...],"o":[...],"s":"ok","t":[epoch seconds, the trading date 00:00 UTC],"v":[...]}`,
or `{"s":"no_data"}` when the range holds no bar. The client reuses the quote poller's parts: the token bucket
at finnhub.quote_calls_per_minute, Retry-After (else exponential backoff) on 429, the key only in the
X-Finnhub-Token header (never in a URL, never across a redirect), and no redirects.
"""
from __future__ import annotations

import logging
import random
import time
from datetime import date, datetime, timezone
from typing import Any, Callable, Mapping

from conf.contracts.bars import DAY_MS, FINNHUB, day_start_ms, make_bar_event
from conf.contracts.events import decode
from conf.settings import Settings
from producer.errors import AccessDenied, ApiKeyRejected, FinnhubError
from producer.finnhub_client import FinnhubClient, fetch
from producer.finnhub_rest import TokenBucket, retry_after_seconds, retry_backoffs
from producer.secrets import API_KEY_ENV, redact

log = logging.getLogger("producer.finnhub_candles")

# Finnhub candle arrays -> bar.v1 fields.
CANDLE_FIELDS = {"o": "open", "h": "high", "l": "low", "c": "close", "v": "volume"}
CANDLE_PATH = "/stock/candle"
DAILY = "D"
MAX_ATTEMPTS = 8                       # tries per symbol through 429s, 5xx and network errors, then give up
MAX_BODY_BYTES = 16 * 1024 * 1024      # ~60 bytes a bar: decades of daily bars fit with room to spare


class CandleFormatError(FinnhubError):
    """A 200 answer from /stock/candle that is not Finnhub's candle format."""


class CandleFetchFailed(FinnhubError):
    """/stock/candle kept failing (429, 5xx, network) for MAX_ATTEMPTS tries, or answered a status no retry
    fixes."""


# -- events -----------------------------------------------------------------------------------------------













def _is_whole(value: Any) -> bool:
    return (isinstance(value, int) and not isinstance(value, bool)) or (isinstance(value, float)
                                                                        and value.is_integer())


def candle_events(symbol: str, body: Any) -> list[dict[str, Any]]:
    """The bar events of a decoded /stock/candle body, in Finnhub's order: [] for `{"s":"no_data"}`.

    CandleFormatError when the body is not the candle format (no status, arrays missing or of different
    lengths, a time that is not whole epoch seconds): nothing of such an answer can be trusted to be a bar.
    """
    if not isinstance(body, dict):
        raise CandleFormatError(f"{CANDLE_PATH} {symbol}: the answer is not a JSON object")
    status = body.get("s")
    if status == "no_data":
        return []
    if status != "ok":
        raise CandleFormatError(f"{CANDLE_PATH} {symbol}: unexpected status s={status!r}")
    arrays = {key: body.get(key) for key in ("t", *CANDLE_FIELDS)}
    bad = [key for key, value in arrays.items() if not isinstance(value, list)]
    if bad:
        raise CandleFormatError(f"{CANDLE_PATH} {symbol}: missing or non-array field(s) {', '.join(bad)}")
    lengths = {key: len(value) for key, value in arrays.items()}
    if len(set(lengths.values())) != 1:
        raise CandleFormatError(f"{CANDLE_PATH} {symbol}: arrays of different lengths {lengths}")
    events = []
    for index, seconds in enumerate(arrays["t"]):
        if not _is_whole(seconds):
            raise CandleFormatError(f"{CANDLE_PATH} {symbol}: t[{index}]={seconds!r} is not epoch seconds")
        day = datetime.fromtimestamp(int(seconds), tz=timezone.utc).date()
        values = {field: arrays[key][index] for key, field in CANDLE_FIELDS.items()}
        events.append(make_bar_event(FINNHUB, symbol, day.isoformat(), int(seconds) * 1000, values))
    return events


# -- Finnhub /stock/candle --------------------------------------------------------------------------------

class CandleClient:
    """GET {rest_url}/stock/candle, one symbol at a time, within Finnhub's rate limit.

    `candles()` returns the decoded body of a 200; it rides out 429 (Retry-After, else backoff), 5xx, network
    errors, timeouts and undecodable bodies for up to MAX_ATTEMPTS tries (CandleFetchFailed after that);
    raises ApiKeyRejected (401), AccessDenied (403: the key's plan has no candles) and CandleFetchFailed (any
    other 3xx/4xx, which no retry fixes) at once.
    """

    def __init__(self, settings: Settings, api_key: str, *, clock: Callable[[], float] = time.monotonic,
                 wall_clock: Callable[[], float] = time.time, sleep: Callable[[float], None] = time.sleep,
                 rand: Callable[[], float] = random.random,
                 max_attempts: int = MAX_ATTEMPTS):
        if not api_key:
            raise ValueError(f"an API key is required (set {API_KEY_ENV})")
        finnhub = settings.finnhub
        self.rest_url = finnhub.rest_url.rstrip("/")
        self.timeout = float(finnhub.http_timeout_seconds)
        self.max_attempts = max_attempts
        self._api_key = api_key
        self._client = FinnhubClient(api_key, self.rest_url, self.timeout)
        self._wall_clock, self._sleep = wall_clock, sleep
        # Capacity 1 as for quotes: calls stay evenly spaced, so no 60 s window holds more than the rate + 1.
        self.bucket = TokenBucket(finnhub.quote_calls_per_minute, 1.0, clock)
        self.rate_backoff, self.error_backoff = retry_backoffs(finnhub, rand)
        self.calls = 0          # HTTP requests sent
        self.rate_limited = 0   # of which answered 429
        self.errors = 0         # of which failed otherwise (5xx, network, timeout, undecodable body)
        self.waits: list[float] = []  # each wait after a 429 or a failure, in order


    def candles(self, symbol: str, start: date, end: date) -> Any:
        """The decoded 200 body of /stock/candle for symbol over start..end."""
        self.rate_backoff.reset()
        self.error_backoff.reset()
        for attempt in range(1, self.max_attempts + 1):
            self._wait(self.bucket.wait_time())
            self.bucket.take()
            self.calls += 1
            try:
                status, headers, body = self._get(symbol, start, end)
            except (OSError, ValueError) as exc:  # requests' exceptions are OSErrors
                status, headers, body = None, None, b""
                failure = self._redact(f"{type(exc).__name__}: {exc}")
            else:
                failure = f"HTTP {status}"
            if status == 200:
                decoded = decode(body) if len(body) <= MAX_BODY_BYTES else None
                if decoded is not None:
                    return decoded
                failure = "HTTP 200 with a body that is not JSON (or too large)"
            elif status == 401:
                raise ApiKeyRejected(f"Finnhub rejected the API key (HTTP 401): check {API_KEY_ENV}")
            elif status == 403:
                raise AccessDenied(f"Finnhub denied access to {CANDLE_PATH} (HTTP 403): the API key's plan does "
                                   f"not include candles")
            elif status is not None and status < 500 and status != 429:
                # Another 3xx/4xx (redirect refused, 404 for a wrong rest_url, ...): retrying cannot fix it.
                hint = " (redirects are not followed: check finnhub.rest_url)" if 300 <= status < 400 else ""
                raise CandleFetchFailed(f"Finnhub {CANDLE_PATH} {symbol}: HTTP {status}{hint}")
            if status == 429:
                self.rate_limited += 1
            else:
                self.errors += 1
            if attempt == self.max_attempts:
                break
            if status == 429:
                retry_after = retry_after_seconds(headers.get("Retry-After"), self._wall_clock())
                delay, why = ((retry_after, "Retry-After") if retry_after is not None
                              else (self.rate_backoff.next_delay(), "backoff"))
                log.warning("finnhub rate limit (HTTP 429) on %s %s: waiting %.1f s (%s)", CANDLE_PATH, symbol,
                            delay, why)
            else:
                delay = self.error_backoff.next_delay()
                log.warning("finnhub %s %s failed: %s; retrying in %.1f s", CANDLE_PATH, symbol, failure, delay)
            self.waits.append(delay)
            self._wait(delay)
        raise CandleFetchFailed(f"Finnhub {CANDLE_PATH} {symbol} failed {self.max_attempts} times, the last: "
                                f"{failure}")

    def _wait(self, seconds: float) -> None:
        if seconds > 0:
            self._sleep(seconds)

    def _get(self, symbol: str, start: date, end: date) -> tuple[int, Mapping[str, str], bytes]:
        """(status, headers, body) of /stock/candle for the trading days start..end (inclusive), through
        finnhub-python's client; non-2xx statuses are returned, not raised."""
        first, last = day_start_ms(start) // 1000, (day_start_ms(end) + DAY_MS) // 1000 - 1
        return fetch(lambda: self._client.stock_candles(symbol, DAILY, first, last), MAX_BODY_BYTES)

    def _redact(self, text: str) -> str:
        return redact(text, self._api_key)
