"""Replay a recorded Finnhub WebSocket log (`--source replay --file F [--speed X]`).

The log is what `--source finnhub-ws --record F` writes: one JSON object per line,
`{"received_at_ms": <epoch ms>, "message": "<the message text exactly as received>"}`. Each message goes through
the same handler as the live stream (producer.finnhub_ws.MessageHandler), so a replay publishes exactly what the
live client published: same events, same event ids, same DLQ reasons.

Pacing follows the recorded receive times, divided by --speed (1 = original pace, 10 = ten times faster), or none
at all under --no-pacing. A line that is not a record of this format goes to the DLQ as `replay:bad_line`, with
the line itself, and the replay goes on: one corrupt line never costs the rest of the file.
"""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any, Callable

from producer.backoff import sleep_until
from producer.finnhub_ws import MessageHandler
from producer.sink import EventSink

log = logging.getLogger("producer.replay")

PROGRESS_EVERY_LINES = 10_000


def parse_line(line: str) -> tuple[int, str] | None:
    """(received_at_ms, message text) of a log line, or None if the line is not a record."""
    try:
        record = json.loads(line)
    except (ValueError, RecursionError):  # RecursionError: a line nested deeper than Python's parser goes
        return None
    if not isinstance(record, dict):
        return None
    received, message = record.get("received_at_ms"), record.get("message")
    if isinstance(received, bool) or not isinstance(received, int) or not isinstance(message, str):
        return None
    return received, message


def first_trade_ms(path: Path) -> int | None:
    """The earliest trade time in a log (for --start-time), or None if it holds no valid trade."""
    earliest = None
    with path.open(encoding="utf-8", errors="replace") as lines:
        for line in lines:
            parsed = parse_line(line)
            if parsed is None:
                continue
            try:
                message = json.loads(parsed[1])
            except (ValueError, RecursionError):
                continue
            if isinstance(message, dict) and message.get("type") == "trade" and isinstance(message.get("data"), list):
                for item in message["data"]:
                    t = item.get("t") if isinstance(item, dict) else None
                    if isinstance(t, int) and not isinstance(t, bool):
                        earliest = t if earliest is None else min(earliest, t)
    return earliest


class ReplaySource:
    def __init__(self, path: Path, sink: EventSink, *, speed: float = 1.0, pacing: bool = True,
                 shift_ms: int = 0, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep):
        if not path.is_file():
            raise FileNotFoundError(f"no such replay file: {path}")
        if not speed > 0:
            raise ValueError(f"--speed must be > 0, got {speed}")
        self.path = path
        self.sink = sink
        self.handler = MessageHandler(sink, shift_ms=shift_ms)
        self.speed = speed
        self.pacing = pacing
        self._clock, self._sleep = clock, sleep
        self.lines = 0
        self.bad_lines = 0

    def run(self, should_stop: Callable[[], bool]) -> dict[str, Any]:
        started = self._clock()
        first_received: int | None = None
        stopped_by = "end_of_file"
        with self.path.open(encoding="utf-8", errors="surrogateescape") as lines:
            for line in lines:
                if should_stop():
                    stopped_by = "signal"
                    break
                line = line.rstrip("\n")
                if not line.strip():
                    continue
                self.lines += 1
                parsed = parse_line(line)
                if parsed is None:
                    self.bad_lines += 1
                    self.sink.reject(line.encode("utf-8", errors="surrogateescape"), "replay:bad_line",
                                     self.sink.publisher.trades_topic)
                    continue
                received_at_ms, message = parsed
                if first_received is None:
                    first_received = received_at_ms
                if self.pacing and not self._wait_until(started + (received_at_ms - first_received) / 1000
                                                        / self.speed, should_stop):
                    stopped_by = "signal"
                    break
                self.handler.handle(message)
                if self.lines % PROGRESS_EVERY_LINES == 0:
                    log.info("replayed %d lines: %d trades published, %d to the DLQ", self.lines,
                             self.sink.stats.trades, self.sink.stats.dlq)
        return {**self.sink.summary(), "lines": self.lines, "bad_lines": self.bad_lines,
                "pings": self.handler.pings, "finnhub_errors": list(self.handler.errors), "stopped_by": stopped_by}

    def _wait_until(self, due: float, should_stop: Callable[[], bool]) -> bool:
        """Sleep until due (clock time) in short steps, serving delivery callbacks; False if asked to stop first."""
        return sleep_until(due, clock=self._clock, sleep=self._sleep, should_stop=should_stop, step=0.1,
                           serve=lambda: self.sink.publisher.poll(0))
