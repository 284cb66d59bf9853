"""`python -m producer`'s arguments: parsed and checked against the settings and the contract before anything
runs (errors exit 2 with one line, as argparse does)."""
from __future__ import annotations

import argparse
import math
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Callable, Sequence

from conf.contracts.events import SCHEMA_NAME, TRADE_SCHEMA_VERSIONS, EventValidator
from conf.identifiers import is_symbol
from conf.settings import Settings
from producer.simulator import validate_symbols

SOURCES = ("simulator", "finnhub-ws", "finnhub-rest", "replay")
LIVE_SOURCES = ("finnhub-ws", "finnhub-rest")
MALFORMED_TARGETS = ("dlq", "topic")
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def _number(text: str, parse: Callable[[str], float], what: str, ok: Callable[[float], bool], rule: str) -> float:
    """An option's number: `parse` it (else "not <what>"), then check it (else "must be <rule>")."""
    try:
        value = parse(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not {what}: {text!r}") from None
    if not ok(value):
        raise argparse.ArgumentTypeError(f"must be {rule}, got {text!r}")
    return value


def _positive_float(text: str) -> float:
    return _number(text, float, "a number", lambda v: math.isfinite(v) and v > 0, "a finite number > 0")


def _positive_int(text: str) -> int:
    return int(_number(text, int, "a whole number", lambda v: v > 0, "> 0"))


def _ratio(text: str) -> float:
    return _number(text, float, "a number", lambda v: 0.0 <= v <= 1.0, "within [0, 1]")  # also refuses NaN


def parse_start_time(text: str) -> int:
    """ISO 8601 (e.g. 2026-01-05T14:30:00Z) -> epoch milliseconds; a time without an offset is UTC."""
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {text!r} (e.g. 2026-01-05T14:30:00Z)") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return (moment - _EPOCH) // timedelta(milliseconds=1)


def split_symbols(values: Sequence[str]) -> list[str]:
    """['AAPL,MSFT', 'NVDA'] -> ['AAPL', 'MSFT', 'NVDA']."""
    return [part.strip() for value in values for part in value.split(",") if part.strip()]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m producer",
        description="Take market data from a source, validate it and publish it to Kafka keyed by symbol "
                    "(invalid records to the DLQ with the reason).")
    parser.add_argument("--source", choices=SOURCES, required=True,
                        help="simulator, finnhub-ws (trades), finnhub-rest (quotes) or replay (a recorded log)")
    stop = parser.add_mutually_exclusive_group()
    stop.add_argument("--count", type=_positive_int, help="simulator: stop after this many records")
    stop.add_argument("--duration", type=_positive_float, metavar="SECONDS",
                      help="stop after this many seconds (simulator: of simulated time under --no-pacing; "
                           "other sources run until SIGTERM/SIGINT without it)")
    parser.add_argument("--symbols", nargs="+", metavar="SYMBOL",
                        help="symbols, space- or comma-separated (default: simulator.symbols for the simulator, "
                             "finnhub.symbols for the finnhub sources)")
    parser.add_argument("--metrics-port", type=int, metavar="PORT",
                        help="serve Prometheus metrics on this port (default producer.metrics_port; 0 = off)")
    parser.add_argument("--summary-json", type=Path, metavar="PATH", help="also write the summary as JSON here")
    sim = parser.add_argument_group("simulator")
    sim.add_argument("--rate", type=_positive_float, help="trades per second, overall (required)")
    sim.add_argument("--seed", type=int, help="random seed (default 42)")
    sim.add_argument("--duplicate-ratio", type=_ratio, metavar="R",
                     help="share of records that re-send an earlier record's exact bytes")
    sim.add_argument("--late-ratio", type=_ratio, metavar="R",
                     help="share of trades stamped simulator.late_by_seconds in the past")
    sim.add_argument("--out-of-order-ratio", type=_ratio, metavar="R",
                     help="share of trades stamped up to simulator.out_of_order_max_seconds in the past")
    sim.add_argument("--malformed-ratio", type=_ratio, metavar="R",
                     help="share of records that break the trade contract")
    sim.add_argument("--schema-version", type=int, metavar="N",
                     help="trade event schema version to emit (conf/schemas/trade.v<N>.json; default "
                          "producer.trade_schema_version)")
    sim.add_argument("--malformed-target", choices=MALFORMED_TARGETS,
                     help="dlq (default): validate and send malformed records to the DLQ; topic: publish them "
                          "unvalidated to the trades topic -- behave like a misbehaving upstream, to "
                          "exercise the stream's quarantine")
    both = parser.add_argument_group("simulator and replay")
    both.add_argument("--start-time", type=parse_start_time, dest="start_ms", metavar="ISO8601",
                      help="simulator: clock start, e.g. 2026-01-05T14:30:00Z (default: now, UTC); replay: move "
                           "every trade so the log's first trade is at this time (default: as recorded)")
    both.add_argument("--no-pacing", dest="pacing", action="store_false",
                      help="send as fast as possible (simulator: timestamps still follow --rate)")
    live = parser.add_argument_group("finnhub-ws and replay")
    live.add_argument("--record", type=Path, metavar="FILE",
                      help="finnhub-ws: also append every received message to FILE (the replay format)")
    live.add_argument("--file", type=Path, metavar="FILE", help="replay: the recorded log to replay (required)")
    live.add_argument("--speed", type=_positive_float, metavar="X",
                      help="replay: X times the recorded pace (default 1)")
    return parser


SIMULATOR_DEFAULTS = {"rate": None, "seed": 42, "duplicate_ratio": 0.0, "late_ratio": 0.0,
                      "out_of_order_ratio": 0.0, "malformed_ratio": 0.0, "malformed_target": "dlq"}
# Options that only some sources take: giving one to another source is an error, not silently ignored.
SOURCE_OPTIONS = {
    "count": ("simulator",), "rate": ("simulator",), "seed": ("simulator",), "duplicate_ratio": ("simulator",),
    "late_ratio": ("simulator",), "out_of_order_ratio": ("simulator",), "malformed_ratio": ("simulator",),
    "malformed_target": ("simulator",), "schema_version": ("simulator",), "start_ms": ("simulator", "replay"),
    "record": ("finnhub-ws",), "file": ("replay",), "speed": ("replay",),
    "symbols": ("simulator", "finnhub-ws", "finnhub-rest"),
}


def parse_args(argv: Sequence[str] | None, settings: Settings,
               now_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000) -> argparse.Namespace:
    """Parse and validate arguments; errors exit with code 2 and a message, as argparse does.

    Adds: symbol_specs ({symbol: {price, volatility, weight}}) and start_ms (defaulted to now).
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    for dest, sources in SOURCE_OPTIONS.items():
        if getattr(args, dest) is not None and args.source not in sources:
            flag = "--start-time" if dest == "start_ms" else "--" + dest.replace("_", "-")
            parser.error(f"{flag} applies to --source {' or '.join(sources)}, not {args.source}")
    if not args.pacing and args.source not in ("simulator", "replay"):
        parser.error(f"--no-pacing applies to --source simulator or replay, not {args.source}")
    if args.metrics_port is not None and not 0 <= args.metrics_port <= 65535:
        parser.error(f"--metrics-port: must be 0 (off) to 65535, got {args.metrics_port}")
    if args.source != "simulator":
        return _parse_source_args(parser, args, settings)
    for dest, default in SIMULATOR_DEFAULTS.items():
        if getattr(args, dest) is None:
            setattr(args, dest, default)
    if args.rate is None:
        parser.error("--source simulator needs --rate")
    if args.count is None and args.duration is None:
        parser.error("--source simulator needs one of --count or --duration")
    if args.schema_version is None:
        args.schema_version = settings.producer.trade_schema_version
    if args.schema_version not in TRADE_SCHEMA_VERSIONS:
        known = ", ".join(str(v) for v in TRADE_SCHEMA_VERSIONS)
        parser.error(f"--schema-version / producer.trade_schema_version: {args.schema_version} is not a trade "
                     f"schema version in conf/schemas (known: {known})")
    ratios = args.duplicate_ratio + args.late_ratio + args.out_of_order_ratio + args.malformed_ratio
    if ratios > 1.0 + 1e-9:
        parser.error(f"--duplicate-ratio, --late-ratio, --out-of-order-ratio and --malformed-ratio "
                     f"must sum to at most 1, got {ratios:g}")
    symbols = split_symbols(args.symbols) if args.symbols is not None else list(settings.simulator.symbols)
    if not symbols:
        parser.error("--symbols: no symbols given")
    try:
        args.symbol_specs = validate_symbols(symbols, settings.simulator.symbols)
    except ValueError as exc:
        parser.error(f"--symbols: {exc}")
    args.symbols = list(args.symbol_specs)
    if args.start_ms is None:
        args.start_ms = now_ms()
    # Every stamped time, late ones included, must be within the contract's trade_ts range.
    ts_rule = EventValidator(SCHEMA_NAME).schema["properties"]["trade_ts"]
    earliest = ts_rule["minimum"] + round(settings.simulator.late_by_seconds * 1000)
    if not earliest <= args.start_ms <= ts_rule["maximum"]:
        parser.error(f"--start-time: must be between {_iso(earliest)} and {_iso(ts_rule['maximum'])} "
                     f"(the trade_ts range of {SCHEMA_NAME}, allowing for late trades)")
    return args


def _parse_source_args(parser: argparse.ArgumentParser, args: argparse.Namespace,
                       settings: Settings) -> argparse.Namespace:
    """The checks of the finnhub and replay sources (the symbol list, the cap, the replay file)."""
    if args.source == "replay":
        if args.file is None:
            parser.error("--source replay needs --file (a log written by --source finnhub-ws --record)")
        if not args.file.is_file():
            parser.error(f"--file: no such file: {args.file}")
        if args.speed is None:
            args.speed = 1.0
        return args
    symbols = split_symbols(args.symbols) if args.symbols is not None else list(settings.finnhub.symbols)
    if not symbols:
        parser.error("--symbols: no symbols given")
    bad = [symbol for symbol in symbols if not is_symbol(symbol)]  # conf/schemas/trade.v1.json's pattern
    if bad:
        parser.error(f"--symbols: invalid symbol {bad[0]!r} (upper case, e.g. AAPL, BRK.B, BINANCE:BTCUSDT)")
    args.symbols = list(dict.fromkeys(symbols))  # a symbol twice would be subscribed twice
    cap = settings.finnhub.max_symbols
    if args.source == "finnhub-ws" and len(args.symbols) > cap:
        parser.error(f"--symbols: {len(args.symbols)} symbols is more than finnhub.max_symbols ({cap}); Finnhub "
                     f"streams about 50 symbols per API key on the free tier and allows one connection per key")
    return args


def _iso(ms: int) -> str:
    return (_EPOCH + timedelta(milliseconds=ms)).strftime("%Y-%m-%dT%H:%M:%SZ")


def future_skew_warning(args: argparse.Namespace, settings: Settings, now_ms: int) -> str | None:
    """A warning when trades would be stamped further ahead of wall time than the stream tolerates."""
    if args.pacing:
        span_s = 0.0  # paced: the simulated clock tracks the wall clock from start_ms
    else:
        span_s = args.duration if args.duration is not None else args.count / args.rate
    ahead_s = (args.start_ms - now_ms) / 1000 + span_s
    limit = settings.stream.max_future_skew_seconds
    if ahead_s > limit:
        return (f"trades will be stamped up to {ahead_s:.0f} s ahead of wall time; the stream quarantines trades "
                f"more than {limit} s in the future as trade_ts:future (use an earlier --start-time, pacing, "
                f"or fewer records)")
    return None
