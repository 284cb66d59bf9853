"""Pure DataFrame -> DataFrame transforms shared by the streaming job, the batch jobs and the tests.

Bronze: every Kafka record as received. Silver: parsed, typed, valid, deduplicated. Quarantine: every record that
broke the contract, with the reason. Nothing here reads or writes storage.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from conf.contracts.spark import parse_json

PARTITION_COLUMNS = ["date", "hour"]


@dataclass(frozen=True)
class Entity:
    """One event stream: its topic, its contract and its tables."""

    name: str                # table suffix: bronze/<name>, silver/<name>, quarantine/<name>
    schema_name: str         # its contract: every conf/schemas/<schema_name>.v<N>.json (load_contract)
    topic_setting: str       # key in the kafka settings section naming the topic
    event_ts_field: str      # epoch-millisecond event time in the payload
    event_time_column: str   # its timestamp column in Silver

    def table(self, layer: str) -> str:
        return f"{layer}/{self.name}"

    def checkpoint(self, query: str) -> str:
        return f"_checkpoints/{query}_{self.name}"


TRADES = Entity("trades", "trade", "trades_topic", "trade_ts", "trade_time")
QUOTES = Entity("quotes", "quote", "quotes_topic", "quote_ts", "quote_time")
# In the order jobs run and report them when no entity is chosen.
ENTITIES = {entity.name: entity for entity in (TRADES, QUOTES)}
# Loaded in batches by spark_jobs/backfill.py, never streamed from Kafka: kept out of ENTITIES so the jobs that
# iterate it (stream, report, maintenance) leave it alone. No topic, hence no topic setting.
BARS = Entity("bars", "bar", "", "bar_ts", "bar_time")
BATCH_ENTITIES = {BARS.name: BARS}


def with_hour_partitions(ts_column: str) -> Callable[[DataFrame], DataFrame]:
    """Add zero-padded `date` (yyyy-MM-dd) and `hour` (HH) partition columns of a timestamp.

    Rendered in the session time zone, which build_spark pins to UTC: storage is always UTC.
    """
    def add(df: DataFrame) -> DataFrame:
        return (df.withColumn("date", F.date_format(ts_column, "yyyy-MM-dd"))
                  .withColumn("hour", F.date_format(ts_column, "HH")))
    return add


def bronze_rows(kafka_df: DataFrame) -> DataFrame:
    """Kafka records as received: raw bytes plus where and when they were received. Partitioned by Kafka time,
    since a payload that cannot be parsed has no event time."""
    return (kafka_df.select(
        F.col("key").cast("string").alias("key"),
        F.col("value"),
        F.col("topic"),
        F.col("partition"),
        F.col("offset"),
        F.col("timestamp").alias("kafka_timestamp"),
        F.col("timestampType").alias("kafka_timestamp_type"),
        F.current_timestamp().alias("ingest_time"),
    ).transform(with_hour_partitions("kafka_timestamp")))


def parse_events(bronze_df: DataFrame, entity: Entity, schema: dict[str, Any],
                 max_future_skew_seconds: int) -> DataFrame:
    """Bronze rows plus `event` (typed struct) and `reasons` (every broken rule, in contract order; empty when
    valid). Besides the JSON Schema, one rule needs the record's context: an event stamped further in the
    future than the allowed skew past its Kafka timestamp is `<ts field>:future`."""
    parsed = parse_json(bronze_df, "value", schema, event_column="event", violations_column="_violations")
    event_ms = F.col("event")[entity.event_ts_field]
    limit_ms = F.unix_millis(F.col("kafka_timestamp")) + F.lit(max_future_skew_seconds * 1000)
    future = F.when(event_ms > limit_ms, F.lit(f"{entity.event_ts_field}:future"))
    # The broken rules without the nulls. Not array_compact or filter(): lambdas make Spark interpret the whole
    # projection instead of compiling it. concat_ws skips nulls; reasons never hold a comma (field names + keywords).
    joined = F.concat_ws(",", F.concat(F.col("_violations"), F.array(future)))
    reasons = F.when(joined == "", F.array().cast("array<string>")).otherwise(F.split(joined, ","))
    # The Silver and quarantine filters test `reasons`. Spark pushes a filter below the projections that compute
    # what it tests, re-inlining the whole parse into the filter (a ~100x slowdown); it never pushes one through a
    # non-deterministic projection, and spark_partition_id() (always >= 0, so this changes no value) is one.
    reasons = F.when(F.spark_partition_id() >= 0, reasons)
    return parsed.withColumn("reasons", reasons).drop("_violations")


def silver_rows(parsed_df: DataFrame, entity: Entity) -> DataFrame:
    """Valid events, typed, with their Kafka lineage, partitioned by event date and hour (UTC)."""
    return (parsed_df.where(F.size("reasons") == 0).select(
        "event.*",
        F.timestamp_millis(F.col(f"event.{entity.event_ts_field}")).alias(entity.event_time_column),
        F.col("topic").alias("kafka_topic"),
        F.col("partition").alias("kafka_partition"),
        F.col("offset").alias("kafka_offset"),
        "kafka_timestamp",
        "ingest_time",
    ).transform(with_hour_partitions(entity.event_time_column)))


def quarantine_rows(parsed_df: DataFrame) -> DataFrame:
    """Records that broke the contract: the raw record, the first reason and all of them."""
    return judged_rows(parsed_df.where(F.size("reasons") > 0))


def judged_rows(parsed_df: DataFrame) -> DataFrame:
    """Parsed records in quarantine's columns, valid ones included (their reason is null)."""
    return parsed_df.select(
        "key", "value", "topic", "partition", "offset", "kafka_timestamp", "ingest_time",
        F.get(F.col("reasons"), 0).alias("reason"),  # get: null for a valid record's empty list (ANSI mode)
        "reasons",
        "date", "hour",
    )


def deduplicate(silver_df: DataFrame, entity: Entity, watermark_delay: str) -> DataFrame:
    """Keep the first delivery of each event id, with state bounded by the watermark.

    Spark drops rows whose event time is behind the watermark of the previous micro-batch (max event time seen -
    watermark_delay) and counts them as rows dropped by watermark; a re-delivery of an event whose state has
    expired is always behind it, so it can never enter Silver twice. Late rows stay in Bronze for reconciliation.
    """
    return (silver_df.withWatermark(entity.event_time_column, watermark_delay)
                     .dropDuplicatesWithinWatermark(["event_id"]))


def missing_from_silver(parsed_bronze: DataFrame, silver: DataFrame, entity: Entity) -> DataFrame:
    """Silver rows for the valid Bronze events whose event id Silver does not hold (late arrivals the watermark
    dropped): one row per event id, from its first delivery by (kafka_timestamp, partition, offset), in
    Silver's columns and order. Quarantined records never qualify. ingest_time is the Bronze row's; a job that
    writes the rows sets its own.

    `silver` may be restricted to the partitions the events fall in: only its event_id column is read.
    """
    rows = silver_rows(parsed_bronze, entity)
    # Anti-join first: it leaves only the few late ids for first_deliveries' window.
    missing = rows.join(silver.select("event_id"), "event_id", "left_anti")
    return first_deliveries(missing).select(*rows.columns)


def first_deliveries(rows: DataFrame) -> DataFrame:
    """One row per event_id of Silver-shaped rows: its first delivery by (kafka_timestamp, kafka_partition,
    kafka_offset). A window (not an aggregate of a struct) keeps every column's type and nullability."""
    first = Window.partitionBy("event_id").orderBy("kafka_timestamp", "kafka_partition", "kafka_offset")
    return (rows.withColumn("_delivery", F.row_number().over(first))
            .where(F.col("_delivery") == 1)
            .drop("_delivery"))
