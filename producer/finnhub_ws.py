"""Finnhub WebSocket trades (`--source finnhub-ws`) and the message handling that replay shares.

Finnhub's stream, as it really behaves: after `{"type":"subscribe","symbol":"AAPL"}` it sends
`{"type":"trade","data":[{"s":"AAPL","p":189.3,"t":1700000000123,"v":100,"c":["1","12"]}, ...]}`; while the market
is closed it sends only `{"type":"ping"}`; it delivers the same trade two or three times; it can go silent for
hours without closing; it allows one connection per API key and about 50 symbols on the free tier.

So the client:
- turns every trade into a trade event with the deterministic event id, so repeated deliveries collapse in Silver,
  and publishes it through the shared validated path (producer.sink.EventSink); anything it cannot turn into a
  valid event goes to the DLQ with the reason, never nowhere;
- runs a watchdog: during market hours, no trade for `watchdog_silence_seconds` means the subscription is dead
  and it reconnects (pings do not count); outside market hours silence is normal;
- reconnects with exponential backoff and jitter and subscribes again to every symbol;
- stops between messages when asked, so the caller can flush everything to Kafka.

The API key travels only in the connection URL (Finnhub's protocol); no log line, error or metric carries it.
"""
from __future__ import annotations

import json
import logging
import random
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any, Callable

from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI
from websockets.sync.client import connect as ws_connect

from conf.settings import Settings

from producer.backoff import Backoff, sleep_until
from producer.errors import ApiKeyRejected, FinnhubError
from conf.contracts.events import make_trade_event
from producer.secrets import RedactingAdapter, redact
from producer.sink import EventSink

log = logging.getLogger("producer.finnhub_ws")

TRADE_SOURCE = "finnhub"  # the `source` of every event from Finnhub, live or replayed: same trade, same id
# Finnhub trade fields -> trade.v1 field names, so reasons read the same as the contract's.
TRADE_FIELDS = {"s": "symbol", "p": "price", "t": "trade_ts", "v": "volume", "c": "conditions"}
RECV_STEP_SECONDS = 1.0  # longest wait for a message before checking the watchdog and the stop flag
MAX_MESSAGE_BYTES = 8 * 2**20


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def trade_item_reason(item: Any) -> str | None:
    """Why a Finnhub trade item cannot become a trade event, in trade.v1 terms; None if it can."""
    if not isinstance(item, dict):
        return "malformed_json"
    for key, field in TRADE_FIELDS.items():
        if key == "c":
            continue  # conditions are optional in Finnhub's messages
        if key not in item or item[key] is None:
            return f"{field}:required"
    if not isinstance(item["s"], str):
        return "symbol:type"
    if not _is_number(item["p"]):
        return "price:type"
    if not _is_number(item["v"]):
        return "volume:type"
    if isinstance(item["t"], bool) or not isinstance(item["t"], int):
        return "trade_ts:type"
    conditions = item.get("c")
    if conditions is not None and not (isinstance(conditions, list) and all(isinstance(c, str) for c in conditions)):
        return "conditions:type"
    return None


def trade_event_from_item(item: dict[str, Any], shift_ms: int = 0) -> dict[str, Any]:
    """A trade.v1 event from a Finnhub trade item that passed trade_item_reason()."""
    return make_trade_event(TRADE_SOURCE, item["s"], item["t"] + shift_ms, item["p"], item["v"],
                            item.get("c") or [])


class MessageHandler:
    """Turns Finnhub WebSocket messages into published events; shared by the live source and replay."""

    def __init__(self, sink: EventSink, shift_ms: int = 0):
        self.sink = sink
        self.shift_ms = shift_ms  # replay --start-time: move every trade by this much
        self.pings = 0
        self.errors: list[str] = []

    def handle(self, text: str | bytes) -> str:
        """Publish what one message holds; returns its type ("trade", "ping", "error", or what it was instead)."""
        self.sink.received()
        raw = text if isinstance(text, bytes) else text.encode("utf-8", errors="surrogateescape")
        trades_topic = self.sink.publisher.trades_topic
        try:
            message = json.loads(text)
        except (ValueError, RecursionError):  # ValueError includes UnicodeDecodeError; RecursionError: deep nesting
            self.sink.reject(raw, "malformed_json", trades_topic)
            return "malformed_json"
        kind = message.get("type") if isinstance(message, dict) else None
        if kind == "ping":
            self.pings += 1
        elif kind == "trade":
            items = message.get("data")
            if not isinstance(items, list):
                self.sink.reject(raw, "data:type", trades_topic)
                return "malformed_trade"
            for item in items:
                self._trade(item, trades_topic)
        elif kind == "error":
            # e.g. {"type":"error","msg":"Subscribing to too many symbols"}: the user must see it.
            detail = str(message.get("msg", ""))[:200]
            self.errors.append(detail)
            log.warning("finnhub says: %s", detail)
            if "api key" in detail.lower() or "token" in detail.lower():
                raise ApiKeyRejected(f"Finnhub rejected the API key ({detail}): check FINNHUB_API_KEY")
        else:
            # A message type we do not know: keep it (DLQ) so a protocol change is seen, not lost.
            self.sink.reject(raw, "finnhub:unknown_type", trades_topic)
            return "unknown"
        return kind

    def _trade(self, item: Any, trades_topic: str) -> None:
        reason = trade_item_reason(item)
        if reason is not None:
            symbol = item.get("s") if isinstance(item, dict) else None
            key = symbol.encode("utf-8") if isinstance(symbol, str) else None
            self.sink.reject(json.dumps(item, separators=(",", ":")).encode("utf-8"), reason, trades_topic, key)
            return
        self.sink.publish_trade(trade_event_from_item(item, self.shift_ms))


class Recorder:
    """Writes every received message as one JSON line: {"received_at_ms": ..., "message": "<text as received>"}.

    The message is kept as the exact text Finnhub sent (not re-encoded), so a replay sees what the client saw.
    """

    def __init__(self, path: Path, wall_clock: Callable[[], float] = time.time):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._file: IO[str] = path.open("a", encoding="utf-8", buffering=1)  # line-buffered: a crash loses nothing
        self._wall_clock = wall_clock
        self.lines = 0

    def write(self, text: str | bytes) -> None:
        if isinstance(text, bytes):
            text = text.decode("utf-8", errors="replace")
        record = {"received_at_ms": int(self._wall_clock() * 1000), "message": text}
        self._file.write(json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n")
        self.lines += 1

    def close(self) -> None:
        self._file.close()


class FinnhubTradeStream:
    """The live WebSocket source: connect, subscribe, publish, watch, reconnect, until asked to stop."""

    def __init__(self, settings: Settings, sink: EventSink, market_hours: Any, api_key: str, symbols: list[str], *,
                 recorder: Recorder | None = None, connect: Callable[..., Any] = ws_connect,
                 clock: Callable[[], float] = time.monotonic, wall_clock: Callable[[], float] = time.time,
                 sleep: Callable[[float], None] = time.sleep, rand: Callable[[], float] = random.random,
                 recv_step_seconds: float = RECV_STEP_SECONDS):
        finnhub = settings.finnhub
        if len(symbols) > finnhub.max_symbols:
            raise ValueError(f"{len(symbols)} symbols requested but finnhub.max_symbols is {finnhub.max_symbols} "
                             f"(Finnhub's free tier streams about 50 symbols per key)")
        self.url = finnhub.ws_url
        self.symbols = list(symbols)
        self.watchdog_seconds = float(finnhub.watchdog_silence_seconds)
        self.open_timeout = float(finnhub.http_timeout_seconds)
        self.sink = sink
        self.handler = MessageHandler(sink)
        self.market_hours = market_hours
        self.recorder = recorder
        self._api_key = api_key
        self._connect = connect
        self._clock, self._wall_clock, self._sleep = clock, wall_clock, sleep
        self._recv_step = recv_step_seconds
        self._ws_logger = RedactingAdapter(logging.getLogger("websockets.client"), api_key)
        self.backoff = Backoff(float(finnhub.reconnect_initial_seconds), float(finnhub.reconnect_max_seconds), rand)
        self.connections = 0                 # connections opened
        self.reconnects = 0                  # connections opened after the first
        self.watchdog_reconnects = 0         # of which the watchdog asked for
        self.waits: list[float] = []         # each backoff delay chosen, in order
        self.idle_checks = 0                 # receive waits that timed out (the watchdog looked, market open or not)
        self._market_was_open: bool | None = None

    # -- the loop -----------------------------------------------------------------------------------------

    def run(self, should_stop: Callable[[], bool]) -> dict[str, Any]:
        while not should_stop():
            connection = self._open()
            if connection is not None:
                with connection:
                    self._subscribe(connection)
                    self._receive(connection, should_stop)
            if should_stop():
                break
            self._wait(self.backoff.next_delay(), should_stop)
        return {**self.sink.summary(), "connections": self.connections, "reconnects": self.reconnects,
                "watchdog_reconnects": self.watchdog_reconnects, "pings": self.handler.pings,
                "finnhub_errors": list(self.handler.errors)}

    def _open(self):
        where = redact(self.url, self._api_key)
        try:
            connection = self._connect(f"{self.url}?token={self._api_key}", open_timeout=self.open_timeout,
                                       max_size=MAX_MESSAGE_BYTES, close_timeout=5, proxy=None,
                                       logger=self._ws_logger)
        except InvalidStatus as exc:
            status = exc.response.status_code
            if status in (401, 403):
                raise ApiKeyRejected(f"Finnhub rejected the API key (HTTP {status} from {where}): "
                                     f"check FINNHUB_API_KEY") from None
            log.warning("connecting to %s: HTTP %d, retrying", where, status)
            return None
        except InvalidURI:
            raise FinnhubError(f"finnhub.ws_url is not a valid WebSocket URL: {where}") from None
        except (OSError, TimeoutError, InvalidHandshake) as exc:
            log.warning("connecting to %s failed: %s, retrying", where,
                        redact(f"{type(exc).__name__}: {exc}", self._api_key))
            return None
        self.connections += 1
        if self.connections > 1:
            self.reconnects += 1
            if self.sink.metrics is not None:
                self.sink.metrics.reconnects.labels(self.sink.source).inc()
        log.info("connected to %s (connection %d), subscribing to %d symbols", where, self.connections,
                 len(self.symbols))
        return connection

    def _subscribe(self, connection: Any) -> None:
        for symbol in self.symbols:
            connection.send(json.dumps({"type": "subscribe", "symbol": symbol}))

    def _receive(self, connection: Any, should_stop: Callable[[], bool]) -> None:
        silent_since = self._clock()
        while not should_stop():
            try:
                text = connection.recv(timeout=self._recv_step)
            except TimeoutError:
                self.idle_checks += 1
                # Kafka's delivery callbacks (and so the published counts) are served only when polled.
                self.sink.publisher.poll(0)
                if not self._market_open():
                    silent_since = self._clock()  # silence outside market hours is normal: the clock restarts
                    continue
                silent_for = self._clock() - silent_since
                if silent_for >= self.watchdog_seconds:
                    log.warning("no trade for %.0f s during market hours: reconnecting", silent_for)
                    self.watchdog_reconnects += 1
                    return
                continue
            except ConnectionClosed as exc:
                log.warning("connection closed by the server (%s), reconnecting",
                            redact(str(exc), self._api_key))
                return
            if self.recorder is not None:
                self.recorder.write(text)
            kind = self.handler.handle(text)
            self.backoff.reset()  # the server is talking to us: the next failure starts from a short wait
            if kind == "trade":
                silent_since = self._clock()

    def _market_open(self) -> bool:
        now = datetime.fromtimestamp(self._wall_clock(), tz=timezone.utc)
        is_open = self.market_hours.is_open(now)
        if is_open != self._market_was_open:
            log.info("market hours: %s", self.market_hours.describe(now))
            self._market_was_open = is_open
        return is_open

    def _wait(self, seconds: float, should_stop: Callable[[], bool]) -> None:
        """Wait before reconnecting, in short steps so a stop request is honoured promptly."""
        self.waits.append(seconds)
        log.info("reconnecting in %.1f s", seconds)
        sleep_until(self._clock() + seconds, clock=self._clock, sleep=self._sleep, should_stop=should_stop,
                    serve=lambda: self.sink.publisher.poll(0))
