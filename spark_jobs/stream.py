"""Streaming job: Kafka -> Bronze + quarantine, and Kafka -> Silver, as Delta tables on S3/MinIO.

    spark-submit spark_jobs/stream.py [--trigger processing-time[=INTERVAL] | --trigger available-now]
                                      [--entity trades] [--entity quotes] [--metrics-port N]

Entities (spark_jobs/transforms.ENTITIES): trades from kafka.trades_topic, quotes from kafka.quotes_topic; all of
them unless --entity picks some. Two queries per entity, each with its own checkpoint on the object store:
- bronze_<entity>: every record as received into bronze/<entity>, and the records that break the contract into
  quarantine/<entity> with the reason. One foreachBatch writes both, each append exactly-once per (checkpoint's
  query id, batch id) through spark_jobs/lib/exactly_once.py: a replayed batch is never written twice, and Delta
  rebuilds the table's state for it once per run, not per batch.
- silver_<entity>: parsed, valid events, deduplicated on event_id within the watermark (RocksDB state), appended
  to silver/<entity> by a foreachBatch through the same exactly-once appends.

`--trigger available-now` processes everything in Kafka up to now and exits (batch-style catch-up);
the default `processing-time` runs until stopped (SIGTERM/SIGINT stop it between batches).

Observability (names and columns: spark_jobs/lib/stream_metrics.py): one JSON progress line per batch and query
(spark_jobs/lib/listener.py); a Prometheus endpoint on `--metrics-port N` (default stream.metrics_port; 0 = off; the
bound port is logged as {"event": "metrics_listening", "port": N}); and every batch's progress appended to the
Delta table stream.metrics_table every stream.metrics_flush_seconds and when the queries stop. The silver queries
count quarantined rows with a named observation of their parsed rows (rows_quarantined), which leaves the rows
themselves untouched.
"""
from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
import time

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from conf.kafka_security import client_config
from conf.preflight import preflight, s3_client
from conf.contracts.schemas import load_contract
from conf.settings import ConfigError, Settings, interval_seconds, load_settings
from spark_jobs.lib.data_loss import CheckFailed, Gap, describe, find_gaps
from spark_jobs.lib.heartbeat import stream_heartbeat
from spark_jobs.lib.listener import LOGGER_NAME, ProgressLogger, parse_observation_name
from spark_jobs.lib.logs import LOG_FORMAT
from spark_jobs.lib.session import build_spark
from spark_jobs.lib.stream_metrics import MetricsTable, StreamMetrics, ensure_metrics_table
from spark_jobs.lib.transforms import (BARS, ENTITIES, TRADES, Entity, bronze_rows, deduplicate,
                                       parse_events, silver_rows)
from spark_jobs.lib.stream_io import bronze_writer, kafka_stream, silver_writer
from spark_jobs.lib.tables import ensure_tables

log = logging.getLogger(LOGGER_NAME)

# After the queries stop, how long to wait for their last progress events to reach the listener before the
# final metrics flush (they normally arrive within milliseconds).
LAST_PROGRESS_WAIT_SECONDS = 30


def parse_trigger(text: str) -> dict:
    """'available-now' or 'processing-time[=INTERVAL]' -> keyword arguments for DataStreamWriter.trigger."""
    if text == "available-now":
        return {"availableNow": True}
    name, _, interval = text.partition("=")
    if name == "processing-time":
        if interval:
            try:
                interval_seconds(interval)
            except ValueError as exc:
                raise argparse.ArgumentTypeError(str(exc)) from None
        return {"processingTime": interval} if interval else {"processingTime": None}
    raise argparse.ArgumentTypeError(f"unknown trigger {text!r}: use processing-time[=INTERVAL] or available-now")


def start_queries(spark: SparkSession, settings: Settings, entity: Entity, trigger: dict,
                  fail_on_data_loss: bool = True) -> list:
    schema = load_contract(entity.schema_name)
    ensure_tables(spark, settings, entity, schema)
    if entity is TRADES:
        # Gold reads the backfill's daily bars beside the trades: an empty silver/bars until a backfill runs (the
        # backfill's own table, same code), so a Gold build never meets a missing table.
        ensure_tables(spark, settings, BARS, load_contract(BARS.schema_name), layers=("silver",))
    if trigger.get("processingTime", "") is None:
        trigger = {"processingTime": settings.stream.trigger_interval}

    bronze = bronze_rows(kafka_stream(spark, settings, entity, fail_on_data_loss))
    bronze_query = (bronze.writeStream.queryName(f"bronze_{entity.name}")
                    .foreachBatch(bronze_writer(settings, entity, schema))
                    .option("checkpointLocation", settings.lake_uri(entity.checkpoint("bronze")))
                    .trigger(**trigger)
                    .start())

    silver_name = f"silver_{entity.name}"
    parsed = parse_events(bronze_rows(kafka_stream(spark, settings, entity, fail_on_data_loss)), entity, schema,
                          settings.stream.max_future_skew_seconds)
    # Counted before the valid-rows filter, in the same pass over the batch: the quarantine count per batch
    # costs no extra job (results in the progress's observedMetrics, read by listener.progress_record).
    parsed = parsed.observe(parse_observation_name(silver_name), F.count(F.lit(1)).alias("rows_parsed"),
                            F.count_if(F.size("reasons") > 0).alias("rows_quarantined"))
    silver = deduplicate(silver_rows(parsed, entity), entity, settings.stream.watermark_delay)
    # foreachBatch, not Delta's sink: the same exactly-once appends as Bronze (appId = the query id, the sink's own,
    # so a checkpoint written by the sink continues exactly). The batch is written once: its dedup state and the
    # parse observation run once (Spark hands foreachBatch the incremental execution's own RDD).
    silver_query = (silver.writeStream.queryName(silver_name)
                    .foreachBatch(silver_writer(settings, entity)).outputMode("append")
                    .option("checkpointLocation", settings.lake_uri(entity.checkpoint("silver")))
                    .trigger(**trigger)
                    .start())
    return [bronze_query, silver_query]


def parse_args(argv: list[str]) -> argparse.Namespace:
    """Options; `entities` holds the Entity objects to run, each once, all of them by default."""
    parser = argparse.ArgumentParser(prog="spark_jobs/stream.py", description=__doc__.splitlines()[0])
    parser.add_argument("--trigger", type=parse_trigger, default="processing-time",
                        help="processing-time[=INTERVAL] (default; interval from conf) or available-now")
    parser.add_argument("--entity", choices=list(ENTITIES), action="append",
                        help="an event stream to run; repeat for several (default: all)")
    parser.add_argument("--accept-data-loss", action="store_true",
                        help="recovery only: skip records Kafka no longer holds (logged), with --trigger available-now")
    parser.add_argument("--metrics-port", type=int, metavar="N",
                        help="serve Prometheus metrics on this port (default stream.metrics_port; 0 = off)")
    args = parser.parse_args(argv)  # argparse applies parse_trigger to the default too
    if args.accept_data_loss and "availableNow" not in args.trigger:
        # A long-running stream must never skip silently: accepting a gap is a one-off, watched run.
        parser.error("--accept-data-loss: only with --trigger available-now")
    if args.metrics_port is not None and not 0 <= args.metrics_port <= 65535:
        parser.error(f"--metrics-port: must be 0 (off) to 65535, got {args.metrics_port}")
    # Each entity once: a repeated --entity would otherwise start two queries on one checkpoint.
    args.entities = [ENTITIES[name] for name in dict.fromkeys(args.entity or ENTITIES)]
    return args


class JvmSignalHandler:
    """A sun.misc.SignalHandler implemented in Python (a py4j callback).

    spark-submit runs this driver as a child of its JVM, and a stop signal usually reaches the JVM too (the whole
    process group, or the JVM alone as a container's PID 1). By default the JVM then exits through its shutdown
    hooks, stopping the SparkContext under the running batch and the final metrics flush. Routed here instead,
    the signal only asks the driver to stop, the same way the driver's own handler does.
    """

    def __init__(self, on_signal):
        self._on_signal = on_signal

    def handle(self, jvm_signal) -> None:
        self._on_signal(f"SIG{jvm_signal.getName()}")

    class Java:
        implements = ["sun.misc.SignalHandler"]


def route_jvm_stop_signals(spark: SparkSession, on_signal) -> JvmSignalHandler:
    from pyspark.java_gateway import ensure_callback_server_started

    gateway = spark.sparkContext._gateway
    ensure_callback_server_started(gateway)
    handler = JvmSignalHandler(on_signal)  # the caller keeps it referenced for the JVM's sake
    for name in ("TERM", "INT"):
        try:
            gateway.jvm.sun.misc.Signal.handle(gateway.jvm.sun.misc.Signal(name), handler)
        except Exception as exc:  # e.g. a JVM run with -Xrs: it keeps its default handling of this signal
            log.warning(json.dumps({"event": "jvm_signal_not_routed", "signal": f"SIG{name}",
                                    "error": (str(exc) or type(exc).__name__).splitlines()[0]}))
    return handler


def check_data_loss(settings: Settings, entities: list[Entity]) -> list[Gap]:
    """Records the checkpoints still have to read that Kafka no longer holds (spark_jobs/lib/data_loss.py)."""
    from confluent_kafka.admin import AdminClient

    return find_gaps(settings, s3_client(settings), AdminClient(client_config(settings)), entities)


def flush_after_stop(spark: SparkSession, listener: ProgressLogger, metrics_table: MetricsTable,
                     queries: list) -> None:
    """The final metrics flush, once the stopped queries' last progress events have reached the listener."""
    try:
        stopped = [str(query.id) for query in queries if not query.isActive]
        listener.wait_terminated(stopped, LAST_PROGRESS_WAIT_SECONDS)
    except Exception as exc:  # the JVM may be gone already; flush what arrived
        log.debug("waiting for the last progress events failed: %s", exc)
    metrics_table.flush(spark)


def check_start(settings: Settings, args: argparse.Namespace) -> int:
    """The checks before any JVM starts: settings, credentials, object store, brokers and topics, then the
    checkpoints against what Kafka still holds (gaps accepted with --accept-data-loss are logged). The exit
    code: non-zero means stop."""
    try:
        preflight(settings, object_store=True, kafka_topics=[e.topic_setting for e in args.entities])
    except ConfigError as exc:
        print(f"stream: configuration error: {exc}", file=sys.stderr)
        return 2
    try:
        lost = check_data_loss(settings, args.entities)
    except (CheckFailed, ConfigError) as exc:
        print(f"stream: error: cannot check the checkpoints against Kafka: {exc}", file=sys.stderr)
        return 2
    if lost and not args.accept_data_loss:
        print(f"stream: error: Kafka data loss: {describe(lost)}. Stopping rather than skipping them; see the "
              f"README, Operations, \"Recovering from Kafka data loss\"", file=sys.stderr)
        return 3
    for gap in lost:
        log.warning(json.dumps({"event": "data_loss_accepted", "query": gap.query, "topic": gap.topic,
                                "partition": gap.partition, "from_offset": gap.start,
                                "to_offset": gap.earliest - 1, "records": gap.records}))
    return 0


def metrics_port(settings: Settings, args: argparse.Namespace) -> int:
    return settings.stream.metrics_port if args.metrics_port is None else args.metrics_port


def serve_metrics(settings: Settings, args: argparse.Namespace, metrics: StreamMetrics):
    """The Prometheus endpoint when on (None when off); bound before Spark starts, so a port in use fails in a
    second, not after the JVM is up. OSError when the port cannot be bound."""
    if not metrics_port(settings, args):
        return None
    server = metrics.serve(settings.stream.metrics_host, metrics_port(settings, args))
    log.info(json.dumps({"event": "metrics_listening", "port": server.server_port}))
    return server


def run(argv: list[str], spark: SparkSession | None = None) -> int:
    """Entry point. Pass `spark` to run the queries in an existing session (tests, a notebook): it is left
    running, and stop signals stay its owner's (the queries end by their trigger or by failing)."""
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"stream: configuration error: {exc}", file=sys.stderr)
        return 2
    code = check_start(settings, args)
    if code:
        return code
    metrics = StreamMetrics()
    try:
        metrics_server = serve_metrics(settings, args, metrics)
    except OSError as exc:
        print(f"stream: error: cannot serve metrics on {settings.stream.metrics_host}:{metrics_port(settings, args)} "
              f"(stream.metrics_port / --metrics-port): {exc.strerror or exc}", file=sys.stderr)
        return 2
    owned = spark is None
    if owned:
        try:
            spark = build_spark("stocklake-stream", settings)
        except ConfigError as exc:
            print(f"stream: configuration error: {exc}", file=sys.stderr)
            return 2
        spark.sparkContext.setLogLevel("WARN")
    try:
        failed = run_queries(spark, settings, args, metrics if metrics_server else None, handle_signals=owned)
    finally:
        if metrics_server is not None:
            metrics_server.shutdown()
        if owned:
            spark.stop()
    return 1 if failed else 0


def run_queries(spark: SparkSession, settings: Settings, args: argparse.Namespace, metrics: StreamMetrics | None,
                handle_signals: bool) -> bool:
    """Start every entity's queries and watch them until they end or a stop is asked; True when one failed.
    `metrics`: the served Prometheus metrics, or None. The listeners it adds to the session are removed again
    (the session may outlive the run)."""
    metrics_table = MetricsTable(settings.lake_uri(settings.stream.metrics_table))
    ensure_metrics_table(spark, metrics_table.path)
    listener = ProgressLogger(sinks=[metrics_table.add] + ([metrics.add] if metrics else []))
    spark.streams.addListener(listener)
    heartbeat = stream_heartbeat(settings).attach(spark)
    stopping = threading.Event()

    def request_stop(name: str) -> None:
        # Only flag it here: the watch loop stops the queries between its short waits.
        if not stopping.is_set():
            log.info(json.dumps({"event": "stopping", "signal": name}))
        stopping.set()

    jvm_signal_handler = None  # noqa: F841 (kept referenced for the JVM while the queries run)
    if handle_signals:
        signal.signal(signal.SIGTERM, lambda signum, _frame: request_stop(signal.Signals(signum).name))
        signal.signal(signal.SIGINT, lambda signum, _frame: request_stop(signal.Signals(signum).name))
        jvm_signal_handler = route_jvm_stop_signals(spark, request_stop)  # noqa: F841
    queries: list = []
    failed = False
    try:
        for entity in args.entities:
            entity_queries = start_queries(spark, settings, entity, args.trigger,
                                           fail_on_data_loss=not args.accept_data_loss)
            queries.extend(entity_queries)
            for query in entity_queries:
                if metrics:
                    metrics.declare(query.name)
        failed = watch(spark, queries, stopping, metrics_table, heartbeat, settings.stream.metrics_flush_seconds)
    finally:
        flush_after_stop(spark, listener, metrics_table, queries)
        heartbeat.close(queries)
        spark.streams.removeListener(listener)
        if heartbeat.enabled:
            spark.streams.removeListener(heartbeat)
    log.info(json.dumps({"event": "stream_finished", "totals": listener.totals, "stopped_by_signal":
                         stopping.is_set(), "failed": failed, "metrics_rows_unflushed": metrics_table.pending()}))
    return failed


def watch(spark: SparkSession, queries: list, stopping: threading.Event, metrics_table: MetricsTable, heartbeat,
          flush_every: float) -> bool:
    """Wait for the queries in short steps: stop them all when asked or when one fails, flush the metrics table
    and send heartbeats when due. True when a query failed."""
    failed = False
    next_flush = time.monotonic() + flush_every
    while any(query.isActive for query in queries):
        if stopping.is_set():
            for query in queries:
                query.stop()  # waits for the running batch: nothing is left half-committed
            break
        for query in queries:
            try:
                query.awaitTermination(1)
            except Exception as exc:  # StreamingQueryException; Spark logged the full cause above
                failed = True
                log.error(json.dumps({"event": "query_failed", "query": query.name,
                                      "error": str(exc).splitlines()[0]}))
                if "data may have been lost" in str(exc):
                    # Retention overtook a running query: the same runbook as the check at start-up.
                    print(f"stream: error: Kafka data loss while {query.name} was running; see the README, "
                          f"Operations, \"Recovering from Kafka data loss\"", file=sys.stderr)
                stopping.set()
        # Here, not in the listener: a Spark job inside a listener callback is unsafe.
        if time.monotonic() >= next_flush:
            metrics_table.flush(spark)
            next_flush = time.monotonic() + flush_every
        heartbeat.tick()
    return failed


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))
