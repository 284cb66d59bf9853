"""The Finnhub sources and replay: each runs into the EventSink (the publish path every source shares) until it
ends, --duration passes or a signal arrives; then the run flushes, whatever happened, and summarises."""
from __future__ import annotations

import argparse
import time
from typing import Any, Callable

from conf.settings import Settings
from producer.finnhub_rest import QuotePoller
from producer.finnhub_ws import FinnhubTradeStream, Recorder
from producer.heartbeat import producer_heartbeat, sink_counts
from producer.market_calendar import MarketHours
from producer.replay import ReplaySource, first_trade_ms
from producer.sink import EventSink, flush_at_end


def run_live(args: argparse.Namespace, settings: Settings, publisher: Any, metrics: Any, *,
             should_stop: Callable[[], bool] = lambda: False, api_key: str | None = None,
             market_hours: Any = None, monotonic: Callable[[], float] = time.monotonic) -> dict[str, Any]:
    """Run a finnhub or replay source into the publisher until it ends, --duration passes or should_stop();
    then flush, whatever happened, and summarise."""
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
        undelivered = flush_at_end(publisher, settings)
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
