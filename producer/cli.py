"""`python -m producer`: take market data from a source, validate it, publish it to Kafka keyed by symbol.

Sources:
    simulator      seeded synthetic trades (duplicates, late, out-of-order and malformed on request)
    finnhub-ws     Finnhub's WebSocket trade stream (key in FINNHUB_API_KEY; --record F keeps what arrives)
    finnhub-rest   Finnhub's REST /quote, polled into the quotes topic (key in FINNHUB_API_KEY)
    replay         a log recorded with --record, through the same path as the live stream (--file, --speed)

Valid events go to their topic keyed by symbol; invalid ones go to the DLQ with their reason, through the one
publish path every source shares (producer/sink.py EventSink). With `--malformed-target topic` the simulator's
malformed records are instead published unvalidated to the trades topic: behave like a misbehaving upstream, to
exercise the stream's quarantine.

This module is the entry point only: the arguments are producer/arguments.py, the simulator's run
producer/simulator_run.py, the other sources' producer/live_run.py; each runs into a publisher with the
KafkaPublisher interface, so all of it is tested without Kafka.
"""
from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import time
from typing import Any, Callable, Sequence

from conf.settings import ConfigError, Settings, load_settings
from producer.arguments import LIVE_SOURCES, future_skew_warning, parse_args
from producer.errors import FinnhubError
from producer.simulator_run import exit_code, format_summary, run
from producer.sink import Publisher

log = logging.getLogger("producer")
PROG = "python -m producer"


class StartError(Exception):
    """The run cannot start (configuration, the API key, the metrics port): one line on stderr, exit 2."""


def source_topics(source: str) -> tuple[str, ...]:
    """The kafka.* topic settings a source publishes to (checked at start-up)."""
    return ("quotes_topic", "dlq_topic") if source == "finnhub-rest" else ("trades_topic", "dlq_topic")


def live_prerequisites(settings: Settings) -> tuple[str, Any]:
    """(API key, market hours) of a Finnhub source; StartError when the key is missing or the calendar unknown."""
    from producer.market_calendar import MarketHours
    from producer.secrets import MissingApiKey, api_key, install_redaction

    try:
        key = api_key()
    except MissingApiKey as exc:
        raise StartError(str(exc)) from None
    install_redaction(key)  # a second line of defence: nothing we log should hold it in the first place
    try:
        return key, MarketHours.from_settings(settings)
    except ValueError as exc:  # e.g. an unknown market_hours.calendar
        raise StartError(f"configuration: market_hours: {exc}") from None


def check_kafka(settings: Settings, source: str) -> None:
    """The brokers must answer and the topics exist: fail now in one line rather than after delivery.timeout.ms of
    retries."""
    from conf.preflight import preflight

    try:
        preflight(settings, kafka_topics=source_topics(source))
    except ConfigError as exc:
        raise StartError(f"configuration: {exc}") from None


def serve_metrics(args: argparse.Namespace, settings: Settings) -> tuple[Any, Any]:
    """(ProducerMetrics, its HTTP server or None when the port is 0)."""
    from producer.metrics import ProducerMetrics

    metrics = ProducerMetrics()
    port = settings.producer.metrics_port if args.metrics_port is None else args.metrics_port
    if not port:
        return metrics, None
    host = settings.producer.metrics_host
    try:
        server = metrics.serve(host, port)
    except OSError as exc:
        raise StartError(f"cannot serve metrics on {host}:{port}: {exc.strerror or exc}") from None
    log.info("prometheus metrics on http://%s:%d/metrics", host, server.server_port)
    return metrics, server


def kafka_publisher_factory(metrics: Any) -> Callable[[Settings], Publisher]:
    from producer.kafka_sink import KafkaPublisher  # imported here so parsing and tests need no librdkafka handle

    return lambda settings: KafkaPublisher(settings, metrics=metrics)


def install_stop_handlers() -> tuple[Callable[[], bool], dict]:
    """(whether a stop was requested, the previous handlers). The first SIGINT/SIGTERM asks the run to stop and
    flush; a second one aborts instead of waiting for the flush."""
    requested = []

    def request_stop(signum: int, _frame: Any) -> None:
        requested.append(signum)
        log.info("%s: stopping, flushing outstanding messages (send again to abort)", signal.Signals(signum).name)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    return lambda: bool(requested), previous


def run_source(args: argparse.Namespace, settings: Settings, publisher_factory: Callable[[Settings], Publisher],
               metrics: Any, live: tuple[str | None, Any]) -> tuple[dict[str, Any], str]:
    """(summary, its text) of the run, stopping on a signal."""
    should_stop, previous = install_stop_handlers()
    try:
        if args.source == "simulator":
            summary = run(args, settings, publisher_factory, should_stop=should_stop, metrics=metrics)
            return summary, format_summary(summary)
        from producer.live_run import format_live_summary, run_live

        key, market_hours = live
        summary = run_live(args, settings, publisher_factory(settings), metrics, should_stop=should_stop,
                           api_key=key, market_hours=market_hours)
        return summary, format_live_summary(summary)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def main(argv: Sequence[str] | None = None,
         publisher_factory: Callable[[Settings], Publisher] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"{PROG}: error: configuration: {exc}", file=sys.stderr)
        return 2
    args = parse_args(argv, settings)
    if args.source == "simulator" and (warning := future_skew_warning(args, settings, time.time_ns() // 1_000_000)):
        log.warning(warning)
    metrics_server = None
    try:
        live = live_prerequisites(settings) if args.source in LIVE_SOURCES else (None, None)
        if publisher_factory is None:
            check_kafka(settings, args.source)
        metrics, metrics_server = serve_metrics(args, settings)
        summary, text = run_source(args, settings, publisher_factory or kafka_publisher_factory(metrics),
                                   metrics, live)
    except (StartError, FinnhubError) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        log.error("aborted")
        return 130
    finally:
        if metrics_server is not None:
            metrics_server.shutdown()
    print(text, flush=True)
    if args.summary_json is not None:
        args.summary_json.parent.mkdir(parents=True, exist_ok=True)
        args.summary_json.write_text(json.dumps(summary, indent=2) + "\n")
    return exit_code(summary)
