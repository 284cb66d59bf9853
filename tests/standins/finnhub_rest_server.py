"""A faithful local stand-in for Finnhub's REST API (GET /api/v1/quote and /stock/candle), for tests: the
machines cannot reach Finnhub, and a mock would not exercise the real HTTP client (finnhub-python's, on
requests).

Behaviour copied from the real service:
- repeated slashes in the path are one: Finnhub's own client asks for `/api/v1//quote` (its base URL, a slash,
  then a path that starts with one), which the service answers as `/api/v1/quote`;
- authentication by the `X-Finnhub-Token` header or the `token` query parameter; a missing or wrong key gets
  401 `{"error":"Invalid API key"}`;
- `/quote?symbol=AAPL` -> `{"c":..,"d":..,"dp":..,"h":..,"l":..,"o":..,"pc":..,"t":<epoch seconds>}`; an unknown
  symbol gets all zeros (`{"c":0,"d":null,"dp":null,"h":0,"l":0,"o":0,"pc":0,"t":0}`), not an error;
- past N calls in a rolling 60 s window (the free tier: 60), 429 with Finnhub's error body, optionally with a
  Retry-After header; every authenticated call counts, including the refused ones;
- premium-only endpoints (`/stock/candle`) get 403, unless the stand-in is started with `candle_access=True`
  (a key whose plan includes candles): then `/stock/candle?symbol=S&resolution=D&from=<s>&to=<s>` answers the
  symbol's daily candles with from <= t <= to as `{"c":[..],"h":[..],"l":[..],"o":[..],"s":"ok","t":[epoch
  seconds],"v":[..]}`, or `{"s":"no_data"}` when there are none. The stand-in holds daily candles only: another
  resolution, or a missing or non-integer from/to, gets a 422 of its own (not copied from the real service).

For tests: per-symbol scripted replies (a queue consumed first, then the symbol's default; candles have their
own queue, consumed before the stored candles), replies that drop the connection or stall past the client's
timeout, and a record of every request (the target exactly as sent, so a test can prove the key never travels in
a URL; the headers with the token's value masked; the time on the injected clock; the status answered). Runs on
127.0.0.1, port 0, in a thread; use it as a context manager.
"""
from __future__ import annotations

import json
import re
import threading
import time
from collections import defaultdict, deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any, Callable, Iterable, Mapping
from urllib.parse import parse_qs, urlsplit

from tests.standins.http_server import ThreadedHttpStandIn

API_PREFIX = "/api/v1"
TOKEN_HEADER = "X-Finnhub-Token"
MASKED = "<token>"
INVALID_KEY = {"error": "Invalid API key"}
LIMIT_REACHED = {"error": "API limit reached. Please try again later. Remaining Limit: 0"}
NO_ACCESS = {"error": "You don't have access to this resource."}
NOT_FOUND = {"error": "Not found"}
ALL_ZERO_QUOTE = {"c": 0, "d": None, "dp": None, "h": 0, "l": 0, "o": 0, "pc": 0, "t": 0}
CANDLE_PATH = "/stock/candle"
PREMIUM_PATHS = frozenset({CANDLE_PATH})
NO_DATA = {"s": "no_data"}
WINDOW_SECONDS = 60.0


def quote_body(c: float, d: float | None, dp: float | None, h: float, l: float, o: float, pc: float,
               t: int) -> dict[str, Any]:
    """A /quote body with Finnhub's field names and order."""
    return {"c": c, "d": d, "dp": dp, "h": h, "l": l, "o": o, "pc": pc, "t": t}


@dataclass(frozen=True)
class Candle:
    """One daily candle: t in epoch seconds (the trading date 00:00 UTC, as Finnhub stamps daily candles)."""

    t: int
    o: float
    h: float
    l: float  # noqa: E741 (Finnhub's field name)
    c: float
    v: float


def candle_body(candles: Iterable[Candle]) -> dict[str, Any]:
    """A /stock/candle body with Finnhub's field names and order; `{"s":"no_data"}` when there are none."""
    candles = list(candles)
    if not candles:
        return dict(NO_DATA)
    return {"c": [x.c for x in candles], "h": [x.h for x in candles], "l": [x.l for x in candles],
            "o": [x.o for x in candles], "s": "ok", "t": [x.t for x in candles], "v": [x.v for x in candles]}


def encode_json(value: Any) -> bytes:
    # Finnhub answers compact JSON.
    return json.dumps(value, separators=(",", ":")).encode("utf-8")


@dataclass(frozen=True)
class Reply:
    """One scripted answer: respond (status, body, headers), drop the connection, or stall then respond."""

    status: int = 200
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = ()
    action: str = "respond"  # respond | drop | stall
    stall_seconds: float = 0.0

    @classmethod
    def json(cls, value: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> Reply:
        return cls(status, encode_json(value), tuple((headers or {}).items()))

    @classmethod
    def raw(cls, body: bytes | str, status: int = 200, headers: Mapping[str, str] | None = None) -> Reply:
        return cls(status, body.encode("utf-8") if isinstance(body, str) else body, tuple((headers or {}).items()))

    @classmethod
    def drop(cls) -> Reply:
        """Close the connection without answering (the client sees the remote end disconnect)."""
        return cls(action="drop")

    @classmethod
    def stall(cls, seconds: float, then: Reply | None = None) -> Reply:
        """Answer (with `then`, default all zeros) only after `seconds` of real time, or when the server stops."""
        then = then or cls.json(ALL_ZERO_QUOTE)
        return cls(then.status, then.body, then.headers, action="stall", stall_seconds=seconds)


def as_reply(item: Reply | Mapping[str, Any] | tuple[Any, ...]) -> Reply:
    """A Reply from a Reply, a JSON object (200), or (status, body[, headers]) with body JSON-able, str or bytes."""
    if isinstance(item, Reply):
        return item
    if isinstance(item, Mapping):
        return Reply.json(dict(item))
    status, body, *rest = item
    headers = rest[0] if rest else None
    if isinstance(body, (bytes, str)):
        return Reply.raw(body, status, headers)
    return Reply.json(body, status, headers)


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    target: str                      # the request target exactly as sent (path and query)
    path: str                        # without the query, API prefix included, repeated slashes as one
    query: dict[str, list[str]]      # parsed query
    headers: dict[str, str]          # as sent, the token header's value replaced by MASKED
    token_via: str | None            # "header", "query" or None
    authorized: bool
    at: float                        # the injected clock at arrival
    status: int | None = None        # what was answered (None for a dropped connection)
    symbol: str | None = field(default=None)


class FinnhubRestStandIn(ThreadedHttpStandIn):
    """Local stand-in for Finnhub's REST API; `url` is the rest_url to configure (…/api/v1)."""

    def __init__(self, api_key: str, *, rate_limit_per_minute: int | None = None,
                 rate_limit_retry_after: int | None = None, clock: Callable[[], float] = time.monotonic,
                 candle_access: bool = False):
        self.api_key = api_key
        self.candle_access = candle_access
        self.rate_limit_per_minute = rate_limit_per_minute
        self.rate_limit_retry_after = rate_limit_retry_after
        self.clock = clock
        self._lock = threading.Lock()
        self._queues: dict[str, deque[Reply]] = defaultdict(deque)
        self._defaults: dict[str, Reply] = {}
        self._candle_queues: dict[str, deque[Reply]] = defaultdict(deque)
        self._candles: dict[str, list[Candle]] = {}
        self._calls: deque[float] = deque()  # arrival times of authenticated calls in the rolling window
        self._requests: list[RecordedRequest] = []
        self._release = threading.Event()    # ends stalls when the server stops

    # -- lifecycle (ThreadedHttpStandIn) -----------------------------------------------------------------

    def before_shutdown(self) -> None:
        self._release.set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{API_PREFIX}"

    # -- scripting ----------------------------------------------------------------------------------------

    def set_quote(self, symbol: str, quote: Mapping[str, Any] | Reply) -> None:
        """What /quote answers for symbol once its queue is empty (unknown symbols: all zeros)."""
        with self._lock:
            self._defaults[symbol] = quote if isinstance(quote, Reply) else Reply.json(dict(quote))

    def enqueue(self, symbol: str, *replies: Reply | Mapping[str, Any] | tuple[Any, ...]) -> None:
        """Answers for the next /quote calls for symbol, in order, before its default (see as_reply)."""
        with self._lock:
            self._queues[symbol].extend(as_reply(r) for r in replies)

    def script(self, symbol: str, replies: Iterable[Reply | Mapping[str, Any] | tuple[Any, ...]]) -> None:
        """enqueue() taking a list, e.g. script("AAPL", [(200, quote), (429, {"error": "..."}), (200, quote)])."""
        self.enqueue(symbol, *replies)

    def set_candles(self, symbol: str, candles: Iterable[Candle]) -> None:
        """The daily candles /stock/candle serves for symbol (in range of the request's from/to)."""
        with self._lock:
            self._candles[symbol] = sorted(candles, key=lambda candle: candle.t)

    def enqueue_candles(self, symbol: str, *replies: Reply | Mapping[str, Any] | tuple[Any, ...]) -> None:
        """Answers for the next /stock/candle calls for symbol, before its stored candles (see as_reply)."""
        with self._lock:
            self._candle_queues[symbol].extend(as_reply(r) for r in replies)

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    def quote_requests(self, symbol: str | None = None) -> list[RecordedRequest]:
        return [r for r in self.requests if r.path == f"{API_PREFIX}/quote" and (symbol is None or r.symbol == symbol)]

    def candle_requests(self, symbol: str | None = None) -> list[RecordedRequest]:
        return [r for r in self.requests
                if r.path == f"{API_PREFIX}{CANDLE_PATH}" and (symbol is None or r.symbol == symbol)]

    # -- serving (called from handler threads) ------------------------------------------------------------

    def _next_reply(self, symbol: str) -> Reply:
        with self._lock:
            queue = self._queues[symbol]
            if queue:
                return queue.popleft()
            return self._defaults.get(symbol) or Reply.json(ALL_ZERO_QUOTE)

    def _candle_reply(self, query: dict[str, list[str]]) -> Reply:
        symbol = query.get("symbol", [""])[0]
        with self._lock:
            queue = self._candle_queues[symbol]
            if queue:
                return queue.popleft()
            candles = list(self._candles.get(symbol, []))
        if query.get("resolution", [""])[0] != "D":
            return Reply.json({"error": "stand-in: only resolution=D is served"}, 422)
        try:
            start, end = int(query["from"][0]), int(query["to"][0])
        except (KeyError, ValueError):
            return Reply.json({"error": "stand-in: from and to must be epoch seconds"}, 422)
        return Reply.json(candle_body(c for c in candles if start <= c.t <= end))

    def _over_limit(self, now: float) -> bool:
        """Count this call in the rolling window; True when the window then holds more than the limit."""
        if self.rate_limit_per_minute is None:
            return False
        with self._lock:
            while self._calls and self._calls[0] <= now - WINDOW_SECONDS:
                self._calls.popleft()
            self._calls.append(now)
            return len(self._calls) > self.rate_limit_per_minute

    def _record(self, request: RecordedRequest) -> None:
        with self._lock:
            self._requests.append(request)

    def _route(self, path: str, query: dict[str, list[str]], now: float) -> tuple[Reply, str | None]:
        """The reply to an authenticated request, and the symbol it was for."""
        if self._over_limit(now):
            headers = {}
            if self.rate_limit_retry_after is not None:
                headers["Retry-After"] = str(self.rate_limit_retry_after)
            return Reply.json(LIMIT_REACHED, 429, headers), query.get("symbol", [None])[0]
        endpoint = path[len(API_PREFIX):] if path.startswith(API_PREFIX + "/") else None
        if endpoint == "/quote":
            symbol = query.get("symbol", [""])[0]
            return self._next_reply(symbol), symbol
        if endpoint == CANDLE_PATH and self.candle_access:
            return self._candle_reply(query), query.get("symbol", [None])[0]
        if endpoint in PREMIUM_PATHS:
            return Reply.json(NO_ACCESS, 403), query.get("symbol", [None])[0]
        return Reply.json(NOT_FOUND, 404), None


class _Handler(BaseHTTPRequestHandler):
    standin: FinnhubRestStandIn  # set on the per-server subclass
    server_version = "finnhub-standin"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the base class's name)
        pass  # keep test output clean (and request lines out of stderr)

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        standin = self.standin
        now = standin.clock()
        parts = urlsplit(self.path)
        path = re.sub(r"/{2,}", "/", parts.path)
        query = parse_qs(parts.query, keep_blank_values=True)
        header_token = self.headers.get(TOKEN_HEADER)
        query_token = query.get("token", [None])[0]
        token, via = (header_token, "header") if header_token is not None else (query_token, "query")
        if token is None:
            via = None
        authorized = token == standin.api_key
        headers = {name: (MASKED if name.lower() == TOKEN_HEADER.lower() else value)
                   for name, value in self.headers.items()}
        if authorized:
            reply, symbol = standin._route(path, query, now)
        else:
            reply, symbol = Reply.json(INVALID_KEY, 401), query.get("symbol", [None])[0]
        status = None if reply.action == "drop" else reply.status
        standin._record(RecordedRequest("GET", self.path, path, query, headers, via, authorized, now, status,
                                        symbol))
        self._answer(reply)

    def _answer(self, reply: Reply) -> None:
        if reply.action == "drop":
            self.close_connection = True
            return
        if reply.action == "stall":
            self.standin._release.wait(reply.stall_seconds)
        try:
            self.send_response(reply.status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(reply.body)))
            for name, value in reply.headers:
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(reply.body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (timed out) first


FinnhubRestStandIn.handler_class = _Handler
FinnhubRestStandIn.thread_name = "finnhub-rest-standin"
