"""A local stand-in for Finnhub's WebSocket trade stream (wss://ws.finnhub.io), for tests.

A stand-in, not a mock of our code: it is a real WebSocket server (the `websockets` library) that speaks Finnhub's
protocol as Finnhub really behaves, and the client under test talks to it over TCP exactly as it would to
Finnhub. What it does, like Finnhub:
- takes the key as `?token=` and rejects the handshake with HTTP 401 when it is wrong;
- allows one connection per key: a second one while the first is open is rejected (HTTP 429), and recorded,
  so a test can assert the client never tried;
- takes `{"type":"subscribe","symbol":"AAPL"}`; past `max_symbols` it answers with an error message;
- sends `{"type":"trade","data":[{"s":..,"p":..,"t":..,"v":..,"c":[..]}, ...]}` and `{"type":"ping"}`.
What each connection does beyond that is scripted by the test: one behaviour function per connection (the last
one repeats), which can send trades (also the same trade twice), ping, go silent, or drop the connection.
"""
from __future__ import annotations

import json
import logging
import socket
import threading
import time
from typing import Any, Callable
from urllib.parse import parse_qs, urlsplit

from websockets.exceptions import ConnectionClosed
from websockets.protocol import State
from websockets.sync.server import Server, ServerConnection, serve


STANDIN_LOGGER = "tests.standin.finnhub_ws"


def trade_item(symbol: str, price: float, ts_ms: int, volume: float, conditions: list[str] | None = None) -> dict:
    return {"s": symbol, "p": price, "t": ts_ms, "v": volume, "c": conditions if conditions is not None else ["1"]}


class Session:
    """One client connection, as the stand-in sees it; behaviours drive it."""

    def __init__(self, standin: "FinnhubWsStandIn", connection: ServerConnection, index: int):
        self.standin = standin
        self.connection = connection
        self.index = index
        self.subscriptions: list[str] = []
        self.closed_by_client = False

    def wait_subscribed(self, count: int, timeout: float = 10.0) -> list[str]:
        """Read client messages until `count` subscriptions have arrived (the client's resubscribe)."""
        deadline = time.monotonic() + timeout
        while len(self.subscriptions) < count:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"connection {self.index}: {len(self.subscriptions)} of {count} subscriptions")
            self._read_one(left)
        return list(self.subscriptions)

    def _read_one(self, timeout: float) -> None:
        text = self.connection.recv(timeout=timeout)
        message = json.loads(text)
        if message.get("type") == "subscribe":
            if len(self.subscriptions) >= self.standin.max_symbols:
                self.send({"type": "error", "msg": "Subscribing to too many symbols"})
            else:
                self.subscriptions.append(message["symbol"])

    def send(self, message: dict) -> None:
        self.send_raw(json.dumps(message))

    def send_raw(self, text: str) -> None:
        self.connection.send(text)
        self.standin.sent_messages.append(text)

    def send_trades(self, items: list[dict]) -> None:
        """One trade message; the items are recorded as sent (duplicates too, as Finnhub repeats them)."""
        self.send({"type": "trade", "data": items})
        self.standin.sent_trades.extend(items)

    def ping(self) -> None:
        self.send({"type": "ping"})

    def drop(self) -> None:
        """Cut the TCP connection without a close frame, as a network fault or Finnhub restart would."""
        self.connection.socket.shutdown(socket.SHUT_RDWR)
        self.connection.socket.close()

    def idle_until_closed(self, timeout: float = 60.0) -> None:
        """Send nothing (Finnhub going silent) until the client closes; subscriptions are still read."""
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                try:
                    self._read_one(min(0.5, max(0.01, deadline - time.monotonic())))
                except TimeoutError:
                    continue
        except ConnectionClosed:
            self.closed_by_client = True


Behaviour = Callable[[Session], None]


class FinnhubWsStandIn:
    def __init__(self, api_key: str, behaviours: list[Behaviour], max_symbols: int = 50):
        if not behaviours:
            raise ValueError("give at least one behaviour")
        self.api_key = api_key
        self.behaviours = behaviours
        self.max_symbols = max_symbols
        self.sessions: list[Session] = []
        self.sent_trades: list[dict] = []
        self.sent_messages: list[str] = []
        self.rejected: list[int] = []      # HTTP statuses of rejected handshakes
        self.request_paths: list[str] = []  # with the token masked
        self._lock = threading.Lock()
        self._server: Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        assert self._server is not None, "start the stand-in first (with FinnhubWsStandIn(...) as server)"
        return f"ws://127.0.0.1:{self._server.socket.getsockname()[1]}"

    def __enter__(self) -> "FinnhubWsStandIn":
        self._server = serve(self._handle, "127.0.0.1", 0, process_request=self._check_request,
                             ping_interval=None, logger=logging.getLogger(STANDIN_LOGGER))
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        assert self._server is not None and self._thread is not None
        self._server.shutdown()
        self._thread.join(10)

    def wait_for(self, condition: Callable[[], bool], timeout: float = 20.0, what: str = "condition") -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise TimeoutError(f"stand-in: timed out waiting for {what}")
            time.sleep(0.01)

    def _check_request(self, connection: ServerConnection, request: Any):
        token = parse_qs(urlsplit(request.path).query).get("token", [""])[0]
        self.request_paths.append(request.path.replace(token, "***") if token else request.path)
        if token != self.api_key:
            self.rejected.append(401)
            return connection.respond(401, "Invalid API key\n")
        with self._lock:
            # A session counts as open until its close handshake starts or its socket is gone, as Finnhub sees it.
            if any(session.connection.state is State.OPEN for session in self.sessions):
                self.rejected.append(429)
                return connection.respond(429, "Too many connections for this API key\n")
        return None

    def _handle(self, connection: ServerConnection) -> None:
        with self._lock:
            session = Session(self, connection, len(self.sessions))
            self.sessions.append(session)
        behaviour = self.behaviours[min(session.index, len(self.behaviours) - 1)]
        try:
            behaviour(session)
        except (ConnectionClosed, OSError):
            session.closed_by_client = True
