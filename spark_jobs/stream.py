"""Streaming job: Kafka -> Bronze + quarantine, and Kafka -> Silver, as Delta tables on S3/MinIO.

    spark-submit spark_jobs/stream.py [--trigger processing-time[=INTERVAL] | --trigger available-now]
                                      [--entity trades] [--entity quotes]

Entities (spark_jobs/transforms.ENTITIES): trades from kafka.trades_topic, quotes from kafka.quotes_topic; all of
them unless --entity picks some. Two queries per entity, each with its own checkpoint on the object store:
- bronze_<entity>: every record as received into bronze/<entity>, and the records that break the contract into
  quarantine/<entity> with the reason. One foreachBatch writes both, each append made idempotent with Delta's
  txnAppId/txnVersion (the checkpoint's query id and the batch id), so a replayed batch is never written twice.
- silver_<entity>: parsed, valid events, deduplicated on event_id within the watermark (RocksDB state), appended
  to silver/<entity> through Delta's exactly-once streaming sink.

`--trigger available-now` processes everything in Kafka up to now and exits (batch-style catch-up);
the default `processing-time` runs until stopped (SIGTERM/SIGINT stop it between batches).
"""
from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
from pathlib import Path

if __package__ in (None, ""):
    # Run as a file by spark-submit: make the repository's packages importable.
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from delta.tables import DeltaTable  # noqa: E402
from pyspark.sql import DataFrame, SparkSession  # noqa: E402
from pyspark.sql.types import (BinaryType, IntegerType, LongType, StringType, StructField, StructType,  # noqa: E402
                               TimestampType)

from conf.settings import ConfigError, Settings, interval_seconds, load_schema, load_settings  # noqa: E402
from spark_jobs.listener import LOG_FORMAT, LOGGER_NAME, ProgressLogger  # noqa: E402
from spark_jobs.session import build_spark  # noqa: E402
from spark_jobs.transforms import (ENTITIES, PARTITION_COLUMNS, Entity, bronze_rows, deduplicate,  # noqa: E402
                                   parse_events, quarantine_rows, silver_rows)

log = logging.getLogger(LOGGER_NAME)

# The Kafka source's schema, for creating the tables before the first batch arrives.
KAFKA_SCHEMA = StructType([
    StructField("key", BinaryType()), StructField("value", BinaryType()), StructField("topic", StringType()),
    StructField("partition", IntegerType()), StructField("offset", LongType()),
    StructField("timestamp", TimestampType()), StructField("timestampType", IntegerType()),
])


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


def kafka_stream(spark: SparkSession, settings: Settings, entity: Entity) -> DataFrame:
    stream = settings.stream
    return (spark.readStream.format("kafka")
            .option("kafka.bootstrap.servers", settings.kafka.bootstrap_servers)
            .option("subscribe", settings.kafka[entity.topic_setting])
            .option("startingOffsets", stream.starting_offsets)
            .option("maxOffsetsPerTrigger", stream.max_offsets_per_trigger)
            # Offsets lost to retention before we read them must stop the job loudly, never be skipped.
            .option("failOnDataLoss", "true")
            .load())


def ensure_tables(spark: SparkSession, settings: Settings, entity: Entity, schema: dict) -> None:
    """Create the entity's tables (empty, partitioned) so readers never meet a missing table."""
    empty = bronze_rows(spark.createDataFrame([], KAFKA_SCHEMA))
    parsed = parse_events(empty, entity, schema, settings.stream.max_future_skew_seconds)
    for layer, df in (("bronze", empty), ("silver", silver_rows(parsed, entity)),
                      ("quarantine", quarantine_rows(parsed))):
        (DeltaTable.createIfNotExists(spark)
         .location(settings.lake_uri(entity.table(layer)))
         .addColumns(df.schema)
         .partitionedBy(*PARTITION_COLUMNS)
         .execute())


def bronze_writer(settings: Settings, entity: Entity, schema: dict):
    bronze_path = settings.lake_uri(entity.table("bronze"))
    quarantine_path = settings.lake_uri(entity.table("quarantine"))
    skew = settings.stream.max_future_skew_seconds

    def write_batch(batch: DataFrame, batch_id: int) -> None:
        # The query id survives restarts but changes with a new checkpoint, so a fresh checkpoint never
        # has its batches mistaken for already-written ones.
        query_id = batch.sparkSession.sparkContext.getLocalProperty("sql.streaming.queryId")
        if not query_id:
            raise RuntimeError("streaming query id unavailable in foreachBatch; refusing a non-idempotent write")
        batch.persist()
        try:
            (batch.write.format("delta").mode("append")
             .option("txnAppId", f"bronze-{query_id}").option("txnVersion", batch_id)
             .save(bronze_path))
            quarantined = quarantine_rows(parse_events(batch, entity, schema, skew))
            (quarantined.write.format("delta").mode("append")
             .option("txnAppId", f"quarantine-{query_id}").option("txnVersion", batch_id)
             .save(quarantine_path))
        finally:
            batch.unpersist()

    return write_batch


def start_queries(spark: SparkSession, settings: Settings, entity: Entity, trigger: dict) -> list:
    schema = load_schema(entity.schema_name)
    ensure_tables(spark, settings, entity, schema)
    if trigger.get("processingTime", "") is None:
        trigger = {"processingTime": settings.stream.trigger_interval}

    bronze = bronze_rows(kafka_stream(spark, settings, entity))
    bronze_query = (bronze.writeStream.queryName(f"bronze_{entity.name}")
                    .foreachBatch(bronze_writer(settings, entity, schema))
                    .option("checkpointLocation", settings.lake_uri(entity.checkpoint("bronze")))
                    .trigger(**trigger)
                    .start())

    parsed = parse_events(bronze_rows(kafka_stream(spark, settings, entity)), entity, schema,
                          settings.stream.max_future_skew_seconds)
    silver = deduplicate(silver_rows(parsed, entity), entity, settings.stream.watermark_delay)
    silver_query = (silver.writeStream.queryName(f"silver_{entity.name}")
                    .format("delta").outputMode("append")
                    .partitionBy(*PARTITION_COLUMNS)
                    .option("checkpointLocation", settings.lake_uri(entity.checkpoint("silver")))
                    .trigger(**trigger)
                    .start(settings.lake_uri(entity.table("silver"))))
    return [bronze_query, silver_query]


def parse_args(argv: list[str]) -> argparse.Namespace:
    """Options; `entities` holds the Entity objects to run, each once, all of them by default."""
    parser = argparse.ArgumentParser(prog="spark_jobs/stream.py", description=__doc__.splitlines()[0])
    parser.add_argument("--trigger", type=parse_trigger, default="processing-time",
                        help="processing-time[=INTERVAL] (default; interval from conf) or available-now")
    parser.add_argument("--entity", choices=list(ENTITIES), action="append",
                        help="an event stream to run; repeat for several (default: all)")
    args = parser.parse_args(argv)  # argparse applies parse_trigger to the default too
    # Each entity once: a repeated --entity would otherwise start two queries on one checkpoint.
    args.entities = [ENTITIES[name] for name in dict.fromkeys(args.entity or ENTITIES)]
    return args


def run(argv: list[str]) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)

    try:
        settings = load_settings()
        spark = build_spark("stocklake-stream", settings)
    except ConfigError as exc:
        print(f"stream: configuration error: {exc}", file=sys.stderr)
        return 2
    spark.sparkContext.setLogLevel("WARN")
    listener = ProgressLogger()
    spark.streams.addListener(listener)

    queries = []
    stopping = threading.Event()

    def request_stop(signum, _frame):
        # Only flag it here: the main loop stops the queries between its short waits.
        log.info(json.dumps({"event": "stopping", "signal": signal.Signals(signum).name}))
        stopping.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)

    for entity in args.entities:
        queries.extend(start_queries(spark, settings, entity, args.trigger))

    failed = False
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
                stopping.set()
    log.info(json.dumps({"event": "stream_finished", "totals": listener.totals, "stopped_by_signal":
                         stopping.is_set(), "failed": failed}))
    spark.stop()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))
