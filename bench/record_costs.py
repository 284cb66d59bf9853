"""Where a record's time goes: the stream's steps timed one by one on the same records, in one warm session.

The batch breakdown (bench/breakdown.py) says which part of a micro-batch is slow; this says what one record costs
in each step the stream runs it through, so the catch-up rate can be checked against its parts: both queries read
Kafka and check the contract, Bronze and Silver each append to Delta. Then each query's whole batch as a batch job:
the Bronze query's own foreachBatch function (persist, Bronze append, contract check, quarantine append) on tables
of its own, and the Silver query's work (contract check, valid rows, dedup by event id as a batch shuffle, append);
what the stream spends beyond those is the streaming engine's (offsets, state store, scheduling; the batch
breakdown shows it). The records are the first of the backlog's topic, read once into memory (the Kafka read is
timed apart), each step run to Spark's no-op sink or to a scratch Delta table on MinIO, once to warm up, then timed
RUNS times: the median counts.
"""
from __future__ import annotations

import json
import statistics
import time
from typing import Any, Callable

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

RUNS = 3


def first_records(spark: SparkSession, settings, count: int) -> DataFrame:
    """About the trades topic's first `count` records, as the stream's Kafka source reads them: from the start of
    each partition, a share of `count` in proportion to the partition's size (symbols key the records, so sizes
    differ)."""
    from confluent_kafka.admin import AdminClient

    from spark_jobs.lib.stream_io import kafka_source_options
    from spark_jobs.lib.transforms import TRADES
    from spark_jobs.lib.checkpoints import topic_offsets

    options = kafka_source_options(settings, TRADES)
    topic = options["subscribe"]
    earliest, latest = topic_offsets(AdminClient({"bootstrap.servers": settings.kafka.bootstrap_servers}), topic)
    sizes = {p: latest[p] - earliest[p] for p in latest}
    total = sum(sizes.values())
    if total < count:
        raise ValueError(f"topic {topic} holds {total:,} records, fewer than the {count:,} asked for")
    ending = {str(p): earliest[p] + size * count // total for p, size in sizes.items()}
    del options["maxOffsetsPerTrigger"]  # a streaming option
    return (spark.read.format("kafka").options(**options).option("startingOffsets", "earliest")
            .option("endingOffsets", json.dumps({topic: ending})).load())


def median_seconds(action: Callable[[], None]) -> float:
    action()  # warm-up: JIT, and the first Delta write's log and schema work
    times = []
    for _ in range(RUNS):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def to_noop(df: DataFrame) -> None:
    df.write.format("noop").mode("overwrite").save()


def record_costs(spark: SparkSession, kafka: DataFrame, settings) -> list[dict[str, Any]]:
    """[{"step", "records", "seconds", "records_per_second", "core_us_per_record"}] for each step of a record.
    Scratch tables: <layer>/record_costs in the settings' bucket."""
    from dataclasses import replace

    from conf.contracts.schemas import load_contract
    from conf.contracts.spark import struct_type
    from spark_jobs.lib.transforms import TRADES, bronze_rows, parse_events

    schema = load_contract(TRADES.schema_name)
    scratch = replace(TRADES, name="record_costs")
    # Timed before the records are cached: Spark would answer the same plan from the cache.
    kafka_seconds = median_seconds(lambda: to_noop(bronze_rows(kafka)))
    bronze = bronze_rows(kafka).persist()
    records = bronze.count()
    cores = spark.sparkContext.defaultParallelism
    steps: dict[str, Callable[[], None] | float] = {
        "Kafka read (Spark's Kafka source, the stream's options)": kafka_seconds,
        "Contract check (parse_events)": lambda: to_noop(parse_events(bronze, TRADES, schema, 300)),
        "JSON parse alone (from_json, for scale)": lambda: to_noop(bronze.select(
            F.from_json(F.col("value").cast("string"), struct_type(schema)).alias("event"))),
        "Delta append to MinIO (Bronze's columns)": lambda: bronze.write.format("delta").mode("append")
        .partitionBy("date", "hour").save(settings.lake_uri(scratch.table("bronze"))),
        "Silver query's batch (check, valid rows, dedup as a batch, append)": silver_batches(
            settings, scratch, schema, bronze),
        # Last: its own unpersist drops the cache (of the same plan), and then it reads Kafka as the stream does.
        "Bronze query's batch (its foreachBatch: Kafka read, cache, Bronze + quarantine appends)": bronze_batches(
            spark, settings, scratch, schema, bronze),
    }
    try:
        rows = []
        for step, action in steps.items():
            seconds = action if isinstance(action, float) else median_seconds(action)
            rows.append({"step": step, "records": records, "seconds": round(seconds, 2),
                         "records_per_second": round(records / seconds),
                         "core_us_per_record": round(seconds * cores / records * 1e6, 1)})
        return rows
    finally:
        bronze.unpersist()


def bronze_batches(spark: SparkSession, settings, scratch, schema: dict, bronze: DataFrame) -> Callable[[], None]:
    """The Bronze query's own foreachBatch function, each call a new batch of the same records, to `scratch`'s
    tables (a query id of its own, as the stream has inside a query)."""
    from spark_jobs.lib.tables import ensure_tables
    from spark_jobs.lib.stream_io import bronze_writer

    ensure_tables(spark, settings, scratch, schema, layers=("bronze", "quarantine"))
    write_batch = bronze_writer(settings, scratch, schema)
    batch_ids = iter(range(1_000_000))

    def run() -> None:
        spark.sparkContext.setLocalProperty("sql.streaming.queryId", "bench-record-costs")
        try:
            write_batch(bronze, next(batch_ids))
        finally:
            spark.sparkContext.setLocalProperty("sql.streaming.queryId", None)
    return run


def silver_batches(settings, scratch, schema: dict, bronze: DataFrame) -> Callable[[], None]:
    """The Silver query's work on a batch: the check, the valid rows, one row per event id (a shuffle here; the
    stream keeps the ids in its state store), appended to `scratch`'s Silver table."""
    from spark_jobs.lib.transforms import parse_events, silver_rows

    def run() -> None:
        rows = silver_rows(parse_events(bronze, scratch, schema, 300), scratch).dropDuplicates(["event_id"])
        rows.write.format("delta").mode("append").partitionBy("date", "hour").save(
            settings.lake_uri(scratch.table("silver")))
    return run
