"""`python -m producer`: take market data from a source, validate it, publish it to Kafka keyed by symbol.

Sources:
    simulator      seeded synthetic trades (duplicates, late, out-of-order and malformed on request)
    finnhub-ws     Finnhub's WebSocket trade stream (key in FINNHUB_API_KEY; --record F keeps what arrives)
    finnhub-rest   Finnhub's REST /quote, polled into the quotes topic (key in FINNHUB_API_KEY)
    replay         a log recorded with --record, through the same path as the live stream (--file, --speed)

Valid events go to their topic keyed by symbol; invalid ones go to the DLQ with their reason. With
`--malformed-target topic` the simulator's malformed records are instead published unvalidated to the trades
topic: behave like a misbehaving upstream, to exercise the stream's quarantine.

The logic is split so it can be tested without Kafka: parse_args() validates arguments, route() decides where
a simulator record goes, run() drives a simulator and run_live() any other source into a publisher with the
KafkaPublisher interface.
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import signal
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable, Sequence

from conf.identifiers import is_symbol
from conf.settings import ConfigError, Settings, load_settings

from conf.contracts.events import SCHEMA_NAME, TRADE_SCHEMA_VERSIONS, EventValidator
from producer.heartbeat import producer_heartbeat, simulator_counts, sink_counts
from producer.simulator import KINDS, MarketSimulator, SimRecord, validate_symbols
from producer.sink import Publisher

log = logging.getLogger("producer")

SOURCES = ("simulator", "finnhub-ws", "finnhub-rest", "replay")
LIVE_SOURCES = ("finnhub-ws", "finnhub-rest")
MALFORMED_TARGETS = ("dlq", "topic")
TRADES, DLQ = "trades", "dlq"
PACING_TICK_SECONDS = 0.01
PACING_SLACK_SECONDS = 0.001
FLUSH_MARGIN_SECONDS = 10.0
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


# -- argument parsing -------------------------------------------------------------------------------------

def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text!r}")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text!r}")
    return value


def _ratio(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0.0 <= value <= 1.0:  # also refuses NaN
        raise argparse.ArgumentTypeError(f"must be within [0, 1], got {text!r}")
    return value


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


# -- routing ----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Route:
    """Where a record goes: destination TRADES or DLQ, and the contract violation if any.

    destination == TRADES with a reason is a malformed record deliberately sent to the trades topic: the
    stream is expected to quarantine it with that reason.
    """

    destination: str
    reason: str | None


def route(record: SimRecord, validator: EventValidator, malformed_target: str) -> Route:
    """Valid -> trades topic; invalid -> DLQ, except malformed records under --malformed-target topic."""
    _, reason = validator.validate_payload(record.value)
    if reason is None:
        return Route(TRADES, None)
    if record.kind == "malformed" and malformed_target == "topic":
        return Route(TRADES, reason)
    return Route(DLQ, reason)


# -- running ----------------------------------------------------------------------------------------------

@dataclass
class RunStats:
    records: int = 0
    by_kind: Counter[str] = field(default_factory=Counter)
    sent_trades_topic: int = 0
    sent_dlq: int = 0
    dlq_by_reason: Counter[str] = field(default_factory=Counter)
    expected_quarantine_by_reason: Counter[str] = field(default_factory=Counter)
    # 64-bit prefixes of the sha256 ids: exact in practice, and a fraction of the memory of the full strings.
    event_id_prefixes: set[int] = field(default_factory=set)


def make_simulator(args: argparse.Namespace, settings: Settings) -> MarketSimulator:
    sim = settings.simulator
    return MarketSimulator(
        args.symbol_specs, rate=args.rate, seed=args.seed, start_ms=args.start_ms, annual_drift=sim.annual_drift,
        late_by_seconds=sim.late_by_seconds, out_of_order_max_seconds=sim.out_of_order_max_seconds,
        duplicate_ratio=args.duplicate_ratio, late_ratio=args.late_ratio,
        out_of_order_ratio=args.out_of_order_ratio, malformed_ratio=args.malformed_ratio, source=args.source,
        schema_version=args.schema_version)


def run(args: argparse.Namespace, settings: Settings, publisher_factory: Callable[[Settings], Publisher], *,
        should_stop: Callable[[], bool] = lambda: False, monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep, metrics: Any = None) -> dict[str, Any]:
    """Generate, validate, route and publish records until --count/--duration or should_stop(); flush; summarise.
    Each generated record counts as a message received from the source on `metrics` (a ProducerMetrics), as a
    live source's messages do: the DLQ rate is the DLQ's messages over those."""
    simulator = make_simulator(args, settings)
    validator = EventValidator(SCHEMA_NAME)
    publisher = publisher_factory(settings)
    stats = RunStats()
    heartbeat = producer_heartbeat(settings, publisher, args.source, lambda: simulator_counts(stats, publisher))
    progress_every = float(settings.producer.progress_interval_seconds)
    started = monotonic()
    next_progress = started + progress_every
    stopped_by = "count"
    pending: SimRecord | None = None

    while True:
        if should_stop():
            stopped_by = "signal"
            break
        if args.count is not None and stats.records >= args.count:
            break
        now = monotonic()
        if progress_every > 0 and now >= next_progress:
            _log_progress(stats, publisher, now - started)
            next_progress = now + progress_every
        heartbeat.tick(now)
        wall_s = now - started
        if args.duration is not None and args.pacing and wall_s >= args.duration:
            stopped_by = "duration"
            break
        if pending is None:
            pending = simulator.next_record()
        sim_s = (pending.clock_ms - args.start_ms) / 1000
        if args.duration is not None and not args.pacing and sim_s >= args.duration:
            stopped_by = "duration"
            break
        if args.pacing and sim_s > wall_s + PACING_SLACK_SECONDS:
            # Not due yet: serve delivery callbacks and sleep a short step (short, so signals act quickly).
            # The slack (timestamps are whole milliseconds anyway) guarantees each sleep makes progress.
            publisher.poll(0)
            sleep(min(sim_s - wall_s, PACING_TICK_SECONDS))
            continue
        if metrics is not None:
            metrics.message_received(args.source)
        decision = route(pending, validator, args.malformed_target)
        _send(pending, decision, publisher, stats, args.source)
        if decision.destination == TRADES and decision.reason is None:
            heartbeat.event_sent(pending.trade_ts)
        pending = None

    undelivered = publisher.flush(settings.producer.delivery_timeout_ms / 1000 + FLUSH_MARGIN_SECONDS)
    heartbeat.close(undelivered)
    elapsed = monotonic() - started
    return {
        "records": stats.records,
        "by_kind": {kind: stats.by_kind[kind] for kind in KINDS},
        "sent_trades_topic": stats.sent_trades_topic,
        "sent_dlq": stats.sent_dlq,
        "dlq_by_reason": dict(sorted(stats.dlq_by_reason.items())),
        "delivered": publisher.delivered_total,
        "delivery_failures": publisher.failed_total,
        "undelivered": undelivered,
        "elapsed_seconds": round(elapsed, 3),
        "events_per_second": round(stats.records / elapsed, 1) if elapsed > 0 else 0.0,
        "expected_quarantine_by_reason": dict(sorted(stats.expected_quarantine_by_reason.items())),
        "distinct_event_ids": len(stats.event_id_prefixes),
        "stopped_by": stopped_by,
        "delivery_errors": list(publisher.errors),
    }


def _send(record: SimRecord, decision: Route, publisher: Publisher, stats: RunStats, source: str) -> None:
    stats.records += 1
    stats.by_kind[record.kind] += 1
    if decision.destination == TRADES:
        publisher.publish(publisher.trades_topic, record.key, record.value)
        stats.sent_trades_topic += 1
        if decision.reason is not None:
            stats.expected_quarantine_by_reason[decision.reason] += 1
        elif record.event_id is not None:
            stats.event_id_prefixes.add(int(record.event_id[:16], 16))
    else:
        publisher.publish_dlq(record.key, record.value, decision.reason or "unknown", source)
        stats.sent_dlq += 1
        stats.dlq_by_reason[decision.reason or "unknown"] += 1


def _log_progress(stats: RunStats, publisher: Publisher, elapsed: float) -> None:
    rate = stats.records / elapsed if elapsed > 0 else 0.0
    log.info("records=%d rate=%.0f/s delivered=%d failed=%d", stats.records, rate, publisher.delivered_total,
             publisher.failed_total)


def exit_code(summary: dict[str, Any]) -> int:
    """0 when everything was delivered, 1 when anything failed or stayed undelivered."""
    return 0 if summary["delivery_failures"] == 0 and summary["undelivered"] == 0 else 1


def format_summary(summary: dict[str, Any]) -> str:
    lines = [f"records: {summary['records']}"]
    lines += [f"  {kind}: {n}" for kind, n in summary["by_kind"].items() if n]
    lines.append(f"sent to trades topic: {summary['sent_trades_topic']} "
                 f"(distinct event ids: {summary['distinct_event_ids']})")
    lines += [f"  expected quarantine {reason}: {n}"
              for reason, n in summary["expected_quarantine_by_reason"].items()]
    lines.append(f"sent to dlq: {summary['sent_dlq']}")
    lines += [f"  {reason}: {n}" for reason, n in summary["dlq_by_reason"].items()]
    lines.append(f"delivered: {summary['delivered']}, delivery failures: {summary['delivery_failures']}, "
                 f"undelivered: {summary['undelivered']}")
    lines += [f"  error: {error}" for error in summary.get("delivery_errors", [])]
    lines.append(f"elapsed: {summary['elapsed_seconds']} s ({summary['events_per_second']} records/s), "
                 f"stopped by {summary.get('stopped_by', '?')}")
    return "\n".join(lines)


# -- the finnhub and replay sources --------------------------------------------------------------------------

def run_live(args: argparse.Namespace, settings: Settings, publisher: Any, metrics: Any, *,
             should_stop: Callable[[], bool] = lambda: False, api_key: str | None = None,
             market_hours: Any = None, monotonic: Callable[[], float] = time.monotonic) -> dict[str, Any]:
    """Run a finnhub or replay source into the publisher until it ends, --duration passes or should_stop();
    then flush, whatever happened, and summarise."""
    from producer.finnhub_rest import QuotePoller
    from producer.finnhub_ws import FinnhubTradeStream, Recorder
    from producer.market_calendar import MarketHours
    from producer.replay import ReplaySource, first_trade_ms
    from producer.sink import EventSink

    heartbeat = producer_heartbeat(settings, publisher, args.source, lambda: sink_counts(sink))
    sink = EventSink(heartbeat.observing(publisher), args.source, metrics)
    started = monotonic()

    def stop() -> bool:  # every source asks at least about once a second: the heartbeat's clock too
        heartbeat.tick(monotonic())
        return should_stop() or (args.duration is not None and monotonic() - started >= args.duration)

    recorder = None
    stopped_by = "end_of_source"
    try:
        if args.source == "replay":
            shift_ms = 0
            if args.start_ms is not None:
                first = first_trade_ms(args.file)
                shift_ms = 0 if first is None else args.start_ms - first
            source: Any = ReplaySource(args.file, sink, speed=args.speed, pacing=args.pacing, shift_ms=shift_ms)
        else:
            hours = market_hours or MarketHours.from_settings(settings)
            if args.source == "finnhub-ws":
                recorder = Recorder(args.record) if args.record is not None else None
                source = FinnhubTradeStream(settings, sink, hours, api_key or "", args.symbols, recorder=recorder)
            else:
                source = QuotePoller(settings, sink, hours, api_key or "", args.symbols)
        summary = source.run(stop)
    finally:
        if recorder is not None:
            recorder.close()
        undelivered = publisher.flush(settings.producer.delivery_timeout_ms / 1000 + FLUSH_MARGIN_SECONDS)
        heartbeat.close(undelivered)
    if should_stop():
        stopped_by = "signal"
    elif args.duration is not None and monotonic() - started >= args.duration:
        stopped_by = "duration"
    elapsed = monotonic() - started
    summary = {**summary, **sink.summary(), "undelivered": undelivered, "elapsed_seconds": round(elapsed, 3),
               "stopped_by": stopped_by}
    if recorder is not None:
        summary["recorded_lines"] = recorder.lines
    return summary


def format_live_summary(summary: dict[str, Any]) -> str:
    lines = [f"source: {summary['source']}",
             f"messages received: {summary['messages_received']}"
             + (f" (pings {summary['pings']})" if "pings" in summary else "")]
    if "lines" in summary:
        lines.append(f"log lines: {summary['lines']} (not records of the log format: {summary['bad_lines']})")
    if summary["trades_published"] or summary["source"] != "finnhub-rest":
        lines.append(f"trades published: {summary['trades_published']} "
                     f"(distinct event ids: {summary['distinct_trade_event_ids']})")
    if summary["quotes_published"] or summary["source"] == "finnhub-rest":
        lines.append(f"quotes published: {summary['quotes_published']} "
                     f"(distinct event ids: {summary['distinct_quote_event_ids']})")
    lines.append(f"sent to dlq: {summary['sent_dlq']}")
    lines += [f"  {reason}: {n}" for reason, n in summary["dlq_by_reason"].items()]
    lines.append(f"delivered: {summary['delivered']}, delivery failures: {summary['delivery_failures']}, "
                 f"undelivered: {summary['undelivered']}")
    lines += [f"  error: {error}" for error in summary.get("delivery_errors", [])]
    if "connections" in summary:
        lines.append(f"connections: {summary['connections']}, reconnects: {summary['reconnects']} "
                     f"(by the silence watchdog: {summary['watchdog_reconnects']})")
    if "polls" in summary:
        lines.append(f"polls: {summary['polls']}, rate limited (429): {summary['rate_limited']}, "
                     f"errors: {summary['errors']}")
    if "recorded_lines" in summary:
        lines.append(f"recorded: {summary['recorded_lines']} messages")
    lines.append(f"elapsed: {summary['elapsed_seconds']} s, stopped by {summary['stopped_by']}")
    return "\n".join(lines)


# -- entry point ----------------------------------------------------------------------------------------------

def source_topics(source: str) -> tuple[str, ...]:
    """The kafka.* topic settings a source publishes to (checked at start-up)."""
    return ("quotes_topic", "dlq_topic") if source == "finnhub-rest" else ("trades_topic", "dlq_topic")


def main(argv: Sequence[str] | None = None,
         publisher_factory: Callable[[Settings], Publisher] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"python -m producer: error: configuration: {exc}", file=sys.stderr)
        return 2
    args = parse_args(argv, settings)
    if args.source == "simulator":
        warning = future_skew_warning(args, settings, time.time_ns() // 1_000_000)
        if warning:
            log.warning(warning)

    key = market_hours = None
    if args.source in LIVE_SOURCES:
        from producer.market_calendar import MarketHours
        from producer.secrets import MissingApiKey, api_key, install_redaction
        try:
            key = api_key()
        except MissingApiKey as exc:
            print(f"python -m producer: error: {exc}", file=sys.stderr)
            return 2
        install_redaction(key)  # a second line of defence: nothing we log should hold it in the first place
        try:
            market_hours = MarketHours.from_settings(settings)
        except ValueError as exc:  # e.g. an unknown market_hours.calendar
            print(f"python -m producer: error: configuration: market_hours: {exc}", file=sys.stderr)
            return 2

    if publisher_factory is None:
        # The real Kafka: the brokers must answer and the topics exist, or fail now in one line rather than
        # after delivery.timeout.ms of retries.
        from conf.preflight import preflight
        try:
            preflight(settings, kafka_topics=source_topics(args.source))
        except ConfigError as exc:
            print(f"python -m producer: error: configuration: {exc}", file=sys.stderr)
            return 2

    from producer.metrics import ProducerMetrics
    metrics = ProducerMetrics()
    metrics_server = None
    port = settings.producer.metrics_port if args.metrics_port is None else args.metrics_port
    if port:
        host = settings.producer.metrics_host
        try:
            metrics_server = metrics.serve(host, port)
        except OSError as exc:
            print(f"python -m producer: error: cannot serve metrics on {host}:{port}: {exc.strerror or exc}",
                  file=sys.stderr)
            return 2
        log.info("prometheus metrics on http://%s:%d/metrics", host, metrics_server.server_port)

    if publisher_factory is None:
        from producer.kafka_sink import KafkaPublisher  # imported here so parsing and tests need no librdkafka handle

        def publisher_factory(settings: Settings) -> Publisher:
            return KafkaPublisher(settings, metrics=metrics)

    stop_requested = False

    def request_stop(signum: int, _frame: Any) -> None:
        nonlocal stop_requested
        stop_requested = True
        log.info("%s: stopping, flushing outstanding messages (send again to abort)", signal.Signals(signum).name)
        # A second signal aborts instead of waiting for the flush.
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    from producer.errors import FinnhubError
    try:
        if args.source == "simulator":
            summary = run(args, settings, publisher_factory, should_stop=lambda: stop_requested, metrics=metrics)
            text = format_summary(summary)
        else:
            summary = run_live(args, settings, publisher_factory(settings), metrics,
                               should_stop=lambda: stop_requested, api_key=key, market_hours=market_hours)
            text = format_live_summary(summary)
    except FinnhubError as exc:
        print(f"python -m producer: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        log.error("aborted")
        return 130
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if metrics_server is not None:
            metrics_server.shutdown()
    print(text, flush=True)
    if args.summary_json is not None:
        args.summary_json.parent.mkdir(parents=True, exist_ok=True)
        args.summary_json.write_text(json.dumps(summary, indent=2) + "\n")
    return exit_code(summary)
