"""Where a record's time goes: the stream's steps timed one by one on the same records, in one warm session.

The batch breakdown (bench/breakdown.py) says which part of a micro-batch is slow; this says what one record costs
in each step the stream runs it through, so the catch-up rate can be checked against its parts: both queries read
Kafka and check the contract, Bronze and Silver each append to Delta. The records are the first of the backlog's
topic, read once into memory (the Kafka read is timed apart), each step run to Spark's no-op sink (the append to a
scratch Delta table on MinIO), once to warm up, then timed RUNS times: the median counts.
"""
from __future__ import annotations

import json
import statistics
import time
from typing import Any, Callable

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

RUNS = 3


def first_records(spark: SparkSession, bootstrap_servers: str, topic: str, count: int) -> DataFrame:
    """About the topic's first `count` records, as the Kafka source reads them: from the start of each partition,
    a share of `count` in proportion to the partition's size (symbols key the records, so sizes differ)."""
    from confluent_kafka.admin import AdminClient

    from spark_jobs.watchdog import topic_offsets

    earliest, latest = topic_offsets(AdminClient({"bootstrap.servers": bootstrap_servers}), topic)
    sizes = {p: latest[p] - earliest[p] for p in latest}
    total = sum(sizes.values())
    if total < count:
        raise ValueError(f"topic {topic} holds {total:,} records, fewer than the {count:,} asked for")
    ending = {str(p): earliest[p] + size * count // total for p, size in sizes.items()}
    return (spark.read.format("kafka").option("kafka.bootstrap.servers", bootstrap_servers)
            .option("subscribe", topic).option("startingOffsets", "earliest")
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


def record_costs(spark: SparkSession, kafka: DataFrame, scratch_uri: str) -> list[dict[str, Any]]:
    """[{"step", "records", "seconds", "records_per_second", "core_us_per_record"}] for each step of a record."""
    from conf.settings import load_contract
    from spark_jobs.schemas import struct_type
    from spark_jobs.transforms import TRADES, bronze_rows, parse_events

    schema = load_contract(TRADES.schema_name)
    bronze = bronze_rows(kafka).persist()
    records = bronze.count()
    cores = spark.sparkContext.defaultParallelism
    steps: dict[str, Callable[[], None]] = {
        "Kafka read (Spark's Kafka source)": lambda: to_noop(bronze_rows(kafka)),
        "Contract check (parse_events)": lambda: to_noop(parse_events(bronze, TRADES, schema, 300)),
        "JSON parse alone (from_json, for scale)": lambda: to_noop(bronze.select(
            F.from_json(F.col("value").cast("string"), struct_type(schema)).alias("event"))),
        "Delta append to MinIO (Bronze's columns)": lambda: bronze.write.format("delta").mode("append")
        .partitionBy("date", "hour").save(scratch_uri),
    }
    try:
        rows = []
        for step, action in steps.items():
            seconds = median_seconds(action)
            rows.append({"step": step, "records": records, "seconds": round(seconds, 2),
                         "records_per_second": round(records / seconds),
                         "core_us_per_record": round(seconds * cores / records * 1e6, 1)})
        return rows
    finally:
        bronze.unpersist()
