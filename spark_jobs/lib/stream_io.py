"""The stream's source and sinks: the Kafka source of an entity's topic, and the foreachBatch writers that append
each micro-batch exactly once to Bronze (with its quarantine) and to Silver (spark_jobs/lib/exactly_once.py).
Shared by the streaming job and `make bench`, which measures these very writers."""
from __future__ import annotations

import json
import logging
import time
from typing import Callable, TypeVar

from pyspark.sql import DataFrame, SparkSession

from conf.kafka_security import spark_kafka_options
from conf.settings import Settings
from spark_jobs.lib.exactly_once import BatchAppends
from spark_jobs.lib.listener import LOGGER_NAME
from spark_jobs.lib.transforms import Entity, parse_events, quarantine_rows

log = logging.getLogger(LOGGER_NAME)
T = TypeVar("T")


def kafka_source_options(settings: Settings, entity: Entity, fail_on_data_loss: bool = True) -> dict[str, str]:
    """The Kafka source's options for one entity's topic."""
    stream = settings.stream
    return {
        "kafka.bootstrap.servers": settings.kafka.bootstrap_servers,
        **spark_kafka_options(settings),
        "subscribe": settings.kafka[entity.topic_setting],
        "startingOffsets": stream.starting_offsets,
        "maxOffsetsPerTrigger": str(stream.max_offsets_per_trigger),
        # A live micro-batch reads to the end of each partition, where the broker holds a fetch that finds no record
        # for fetch.max.wait.ms (Kafka's default 500 ms) before answering: a task slot held idle per partition, about
        # a second per batch on 2 cores (README, Performance).
        "kafka.fetch.max.wait.ms": str(stream.kafka_fetch_max_wait_ms),
        # Offsets lost to retention before we read them must stop the job loudly, never be skipped; only an
        # operator's --accept-data-loss run (README: "Recovering from Kafka data loss") passes over them.
        "failOnDataLoss": str(fail_on_data_loss).lower(),
    }


def kafka_stream(spark: SparkSession, settings: Settings, entity: Entity, fail_on_data_loss: bool = True) -> DataFrame:
    return (spark.readStream.format("kafka")
            .options(**kafka_source_options(settings, entity, fail_on_data_loss))
            .load())


def appends_per_query(make: Callable[[str], T]) -> Callable[[DataFrame], T]:
    """A foreachBatch's exactly-once appenders (spark_jobs/lib/exactly_once.py), made by `make` once per streaming query
    id. The query id survives restarts but changes with a new checkpoint, so a fresh checkpoint never has its
    batches mistaken for already-written ones."""
    made: dict[str, T] = {}

    def of(batch: DataFrame) -> T:
        query_id = batch.sparkSession.sparkContext.getLocalProperty("sql.streaming.queryId")
        if not query_id:
            raise RuntimeError("streaming query id unavailable in foreachBatch; refusing a non-idempotent write")
        if query_id not in made:
            made[query_id] = make(query_id)
        return made[query_id]

    return of


def bronze_writer(settings: Settings, entity: Entity, schema: dict):
    bronze_path = settings.lake_uri(entity.table("bronze"))
    quarantine_path = settings.lake_uri(entity.table("quarantine"))
    skew = settings.stream.max_future_skew_seconds
    appends = appends_per_query(lambda query_id: (BatchAppends(bronze_path, f"bronze-{query_id}"),
                                                  BatchAppends(quarantine_path, f"quarantine-{query_id}")))

    def write_batch(batch: DataFrame, batch_id: int) -> None:
        bronze, quarantine = appends(batch)
        started = time.monotonic()
        batch.persist()
        try:
            bronze.append(batch, batch_id)
            bronze_done = time.monotonic()
            quarantine.append(quarantine_rows(parse_events(batch, entity, schema, skew)), batch_id)
        finally:
            batch.unpersist()
        # Inside the query's addBatch: where a Bronze batch's time goes (make bench reads these lines).
        log.info(json.dumps({"event": "bronze_batch_written", "query": f"bronze_{entity.name}", "batch_id": batch_id,
                             "bronze_write_ms": round((bronze_done - started) * 1000),
                             "quarantine_write_ms": round((time.monotonic() - bronze_done) * 1000)}))

    return write_batch


def silver_writer(settings: Settings, entity: Entity):
    silver_path = settings.lake_uri(entity.table("silver"))
    # The application id is the query id itself: the Delta sink's txnAppId, which checkpoints it wrote continue.
    appends = appends_per_query(lambda query_id: BatchAppends(silver_path, query_id))

    def write_batch(batch: DataFrame, batch_id: int) -> None:
        appends(batch).append(batch, batch_id)

    return write_batch
