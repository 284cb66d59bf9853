"""The simulator as a source: records at the simulated clock's pace (or as fast as possible), each handed to the
EventSink, the publish path every source shares; it stops on --count, --duration or a signal, flushes, and
summarises. With `--malformed-target topic` the simulator's malformed records go to the trades topic unvalidated:
a misbehaving upstream, to exercise the stream's quarantine."""
from __future__ import annotations

import argparse
import logging
import time
from collections import Counter
from typing import Any, Callable

from conf.settings import Settings
from producer.heartbeat import producer_heartbeat, sink_counts
from producer.simulator import KINDS, MarketSimulator, SimRecord
from producer.sink import EventSink, Publisher, flush_at_end

log = logging.getLogger("producer")

PACING_TICK_SECONDS = 0.01
PACING_SLACK_SECONDS = 0.001


def make_simulator(args: argparse.Namespace, settings: Settings) -> MarketSimulator:
    sim = settings.simulator
    return MarketSimulator(
        args.symbol_specs, rate=args.rate, seed=args.seed, start_ms=args.start_ms, annual_drift=sim.annual_drift,
        late_by_seconds=sim.late_by_seconds, out_of_order_max_seconds=sim.out_of_order_max_seconds,
        duplicate_ratio=args.duplicate_ratio, late_ratio=args.late_ratio,
        out_of_order_ratio=args.out_of_order_ratio, malformed_ratio=args.malformed_ratio, source=args.source,
        schema_version=args.schema_version)


def sent_unvalidated(record: SimRecord, malformed_target: str) -> bool:
    """Only records the simulator meant to be malformed bypass validation, and only under --malformed-target topic."""
    return record.kind == "malformed" and malformed_target == "topic"


class Pacer:
    """Where the run stands against its limits: --duration in wall time (paced) or simulated time (not paced)."""

    def __init__(self, args: argparse.Namespace, started: float):
        self.args, self.started = args, started

    def wall_duration_reached(self, now: float) -> bool:
        return self.args.duration is not None and self.args.pacing and now - self.started >= self.args.duration

    def simulated_seconds(self, record: SimRecord) -> float:
        return (record.clock_ms - self.args.start_ms) / 1000

    def simulated_duration_reached(self, record: SimRecord) -> bool:
        args = self.args
        return args.duration is not None and not args.pacing and self.simulated_seconds(record) >= args.duration

    def wait_for(self, record: SimRecord, now: float) -> float:
        """Seconds to wait before the record is due (0 when it is, or when not paced). The slack (timestamps are
        whole milliseconds anyway) guarantees each wait makes progress."""
        ahead = self.simulated_seconds(record) - (now - self.started)
        return ahead if self.args.pacing and ahead > PACING_SLACK_SECONDS else 0.0


def run(args: argparse.Namespace, settings: Settings, publisher_factory: Callable[[Settings], Publisher], *,
        should_stop: Callable[[], bool] = lambda: False, monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep, metrics: Any = None) -> dict[str, Any]:
    """Generate records and hand each to the EventSink until --count/--duration or should_stop(); flush; summarise.
    Each generated record counts as a message received from the source on `metrics` (a ProducerMetrics), as a
    live source's messages do: the DLQ rate is the DLQ's messages over those."""
    simulator = make_simulator(args, settings)
    publisher = publisher_factory(settings)
    sink = EventSink(publisher, args.source, metrics)
    heartbeat = producer_heartbeat(settings, publisher, args.source, lambda: sink_counts(sink))
    by_kind: Counter[str] = Counter()
    progress_every = float(settings.producer.progress_interval_seconds)
    started = monotonic()
    pacer, next_progress, pending = Pacer(args, started), started + progress_every, None
    stopped_by = "count"
    while True:
        if should_stop():
            stopped_by = "signal"
            break
        if args.count is not None and sink.stats.received >= args.count:
            break
        now = monotonic()
        if progress_every > 0 and now >= next_progress:
            _log_progress(sink, now - started)
            next_progress = now + progress_every
        heartbeat.tick(now)
        if pacer.wall_duration_reached(now):
            stopped_by = "duration"
            break
        pending = pending or simulator.next_record()
        if pacer.simulated_duration_reached(pending):
            stopped_by = "duration"
            break
        wait = pacer.wait_for(pending, now)
        if wait:  # not due yet: serve delivery callbacks and sleep a short step (short, so signals act quickly)
            publisher.poll(0)
            sleep(min(wait, PACING_TICK_SECONDS))
            continue
        _hand_over(pending, sink, args.malformed_target, heartbeat)
        by_kind[pending.kind] += 1
        pending = None
    undelivered = flush_at_end(publisher, settings)
    heartbeat.close(undelivered)
    return summarise(sink, by_kind, undelivered, monotonic() - started, stopped_by)


def _hand_over(record: SimRecord, sink: EventSink, malformed_target: str, heartbeat: Any) -> None:
    sink.received()
    reason = sink.publish_trade_payload(record.value, record.key, sent_unvalidated(record, malformed_target))
    if reason is None:
        heartbeat.event_sent(record.trade_ts)


def summarise(sink: EventSink, by_kind: Counter[str], undelivered: int, elapsed: float,
              stopped_by: str) -> dict[str, Any]:
    stats, publisher = sink.stats, sink.publisher
    return {
        "records": stats.received,
        "by_kind": {kind: by_kind[kind] for kind in KINDS},
        "sent_trades_topic": stats.sent,
        "sent_dlq": stats.dlq,
        "dlq_by_reason": dict(sorted(stats.dlq_by_reason.items())),
        "delivered": publisher.delivered_total,
        "delivery_failures": publisher.failed_total,
        "undelivered": undelivered,
        "elapsed_seconds": round(elapsed, 3),
        "events_per_second": round(stats.received / elapsed, 1) if elapsed > 0 else 0.0,
        "expected_quarantine_by_reason": dict(sorted(stats.unvalidated_by_reason.items())),
        "distinct_event_ids": len(stats.trade_event_ids),
        "stopped_by": stopped_by,
        "delivery_errors": list(publisher.errors),
    }


def _log_progress(sink: EventSink, elapsed: float) -> None:
    records, publisher = sink.stats.received, sink.publisher
    rate = records / elapsed if elapsed > 0 else 0.0
    log.info("records=%d rate=%.0f/s delivered=%d failed=%d", records, rate, publisher.delivered_total,
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
