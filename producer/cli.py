"""`python -m producer`: generate trade events and publish them to Kafka.

Valid events go to the trades topic keyed by symbol; invalid ones go to the DLQ with their reason. With
`--malformed-target topic` the simulator's malformed records are instead published unvalidated to the trades
topic: behave like a misbehaving upstream, to exercise the stream's quarantine.

The logic is split so it can be tested without Kafka: parse_args() validates arguments, route() decides where
a record goes, run() drives a simulator into any publisher with the KafkaPublisher interface.
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
from typing import Any, Callable, Protocol, Sequence

from conf.settings import ConfigError, Settings, load_schema, load_settings

from .events import SCHEMA_NAME, EventValidator
from .simulator import KINDS, MarketSimulator, SimRecord, validate_symbols

log = logging.getLogger("producer")

SOURCES = ("simulator",)
MALFORMED_TARGETS = ("dlq", "topic")
TRADES, DLQ = "trades", "dlq"
PACING_TICK_SECONDS = 0.01
PACING_SLACK_SECONDS = 0.001
FLUSH_MARGIN_SECONDS = 10.0
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


class Publisher(Protocol):
    """What run() needs from a publisher (producer.kafka_sink.KafkaPublisher)."""

    trades_topic: str
    dlq_topic: str
    errors: list[str]

    @property
    def delivered_total(self) -> int: ...

    @property
    def failed_total(self) -> int: ...

    def publish(self, topic: str, key: bytes | None, value: bytes) -> None: ...

    def publish_dlq(self, key: bytes | None, raw: bytes, reason: str, source: str) -> None: ...

    def poll(self, timeout: float = 0) -> int: ...

    def flush(self, timeout: float) -> int: ...


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
        description="Generate trade events and publish them to Kafka (trades topic, invalid ones to the DLQ).")
    parser.add_argument("--source", choices=SOURCES, required=True, help="where trades come from")
    parser.add_argument("--rate", type=_positive_float, required=True, help="trades per second (overall)")
    stop = parser.add_mutually_exclusive_group(required=True)
    stop.add_argument("--count", type=_positive_int, help="stop after this many records")
    stop.add_argument("--duration", type=_positive_float, metavar="SECONDS",
                      help="stop after this many seconds (of simulated time under --no-pacing)")
    parser.add_argument("--symbols", nargs="+", metavar="SYMBOL",
                        help="symbols, space- or comma-separated (default: all in simulator.symbols)")
    parser.add_argument("--seed", type=int, default=42, help="random seed (default 42)")
    parser.add_argument("--duplicate-ratio", type=_ratio, default=0.0, metavar="R",
                        help="share of records that re-send an earlier record's exact bytes")
    parser.add_argument("--late-ratio", type=_ratio, default=0.0, metavar="R",
                        help="share of trades stamped simulator.late_by_seconds in the past")
    parser.add_argument("--out-of-order-ratio", type=_ratio, default=0.0, metavar="R",
                        help="share of trades stamped up to simulator.out_of_order_max_seconds in the past")
    parser.add_argument("--malformed-ratio", type=_ratio, default=0.0, metavar="R",
                        help="share of records that break the trade.v1 contract")
    parser.add_argument("--malformed-target", choices=MALFORMED_TARGETS, default="dlq",
                        help="dlq (default): validate and send malformed records to the DLQ; topic: publish them "
                             "unvalidated to the trades topic -- behave like a misbehaving upstream, to "
                             "exercise the stream's quarantine")
    parser.add_argument("--start-time", type=parse_start_time, dest="start_ms", metavar="ISO8601",
                        help="simulated clock start, e.g. 2026-01-05T14:30:00Z (default: now, UTC)")
    parser.add_argument("--no-pacing", dest="pacing", action="store_false",
                        help="send as fast as possible (timestamps still follow --rate)")
    parser.add_argument("--summary-json", type=Path, metavar="PATH", help="also write the summary as JSON here")
    return parser


def parse_args(argv: Sequence[str] | None, settings: Settings,
               now_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000) -> argparse.Namespace:
    """Parse and validate arguments; errors exit with code 2 and a message, as argparse does.

    Adds: symbol_specs ({symbol: {price, volatility, weight}}) and start_ms (defaulted to now).
    """
    parser = build_parser()
    args = parser.parse_args(argv)
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
    ts_rule = load_schema(SCHEMA_NAME)["properties"]["trade_ts"]
    earliest = ts_rule["minimum"] + round(settings.simulator.late_by_seconds * 1000)
    if not earliest <= args.start_ms <= ts_rule["maximum"]:
        parser.error(f"--start-time: must be between {_iso(earliest)} and {_iso(ts_rule['maximum'])} "
                     f"(the trade_ts range of {SCHEMA_NAME}, allowing for late trades)")
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
        out_of_order_ratio=args.out_of_order_ratio, malformed_ratio=args.malformed_ratio, source=args.source)


def run(args: argparse.Namespace, settings: Settings, publisher_factory: Callable[[Settings], Publisher], *,
        should_stop: Callable[[], bool] = lambda: False, monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep) -> dict[str, Any]:
    """Generate, validate, route and publish records until --count/--duration or should_stop(); flush; summarise."""
    simulator = make_simulator(args, settings)
    validator = EventValidator(SCHEMA_NAME)
    publisher = publisher_factory(settings)
    stats = RunStats()
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
        _send(pending, route(pending, validator, args.malformed_target), publisher, stats, args.source)
        pending = None

    undelivered = publisher.flush(settings.producer.delivery_timeout_ms / 1000 + FLUSH_MARGIN_SECONDS)
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


def _default_publisher(settings: Settings) -> Publisher:
    from .kafka_sink import KafkaPublisher  # imported here so parsing and tests need no librdkafka handle

    return KafkaPublisher(settings)


def main(argv: Sequence[str] | None = None,
         publisher_factory: Callable[[Settings], Publisher] = _default_publisher) -> int:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"python -m producer: error: configuration: {exc}", file=sys.stderr)
        return 2
    args = parse_args(argv, settings)
    warning = future_skew_warning(args, settings, time.time_ns() // 1_000_000)
    if warning:
        log.warning(warning)

    stop_requested = False

    def request_stop(signum: int, _frame: Any) -> None:
        nonlocal stop_requested
        stop_requested = True
        log.info("%s: stopping, flushing outstanding messages (send again to abort)", signal.Signals(signum).name)
        # A second signal aborts instead of waiting for the flush.
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        summary = run(args, settings, publisher_factory, should_stop=lambda: stop_requested)
    except KeyboardInterrupt:
        log.error("aborted")
        return 130
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    print(format_summary(summary), flush=True)
    if args.summary_json is not None:
        args.summary_json.parent.mkdir(parents=True, exist_ok=True)
        args.summary_json.write_text(json.dumps(summary, indent=2) + "\n")
    return exit_code(summary)
