"""Faults against the real local stack, each counting every event end to end.

Stream job SIGKILLed again and again (at random moments and right after a Delta commit), the Kafka broker restarted
under load, MinIO stopped mid-run, the producer SIGKILLed, and records lost to retention before the stream read
them. `make test` runs a short chaos (CHAOS_KILLS, default 3 kills); `make chaos` runs the full length.
"""
from __future__ import annotations

import json
import os
import random
import re
import subprocess
import sys
import time
import urllib.request
from collections import Counter

import pytest
from confluent_kafka import KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec
from pyspark.sql import functions as F

from scripts.services import Kafka, MinIO
from spark_jobs.listener import read_progress
from spark_jobs.report import account
from spark_jobs.transforms import TRADES
from tests.integration.stack import (REPO, expected_records, free_port, kill_process_group, producer_args,
                                     run_producer, run_stream_available_now, s3_client, start_stream,
                                     stream_command, wait_for)

pytestmark = pytest.mark.integration

CHAOS_KILLS = int(os.environ.get("CHAOS_KILLS", "3"))
CHAOS_SEED = int(os.environ.get("CHAOS_SEED", "20261122"))
# Small, frequent batches: many commits to land a kill in, and several batches per run of the job.
SMALL_BATCHES = {"STOCKLAKE_STREAM_MAX_OFFSETS_PER_TRIGGER": "400", "STOCKLAKE_STREAM_TRIGGER_INTERVAL": "1 second"}


def table(spark, settings, layer):
    return spark.read.format("delta").load(settings.lake_uri(f"{layer}/trades"))


def assert_every_event_exactly_once(spark, settings, records) -> dict:
    """Bronze = every record produced, once; Silver = every distinct valid event, once; the books balance."""
    bronze = table(spark, settings, "bronze")
    assert bronze.count() == len(records)
    assert bronze.select("partition", "offset").distinct().count() == len(records)
    silver_ids = [row["event_id"] for row in table(spark, settings, "silver").select("event_id").collect()]
    assert len(silver_ids) == len(set(silver_ids))
    assert set(silver_ids) == {r.event_id for r in records if r.kind != "malformed"}
    books = account(spark, settings, TRADES)
    assert books["quarantined_by_reason"] == dict(sorted(Counter(
        r.expected_reason for r in records if r.kind == "malformed").items()))
    assert books["late_rows"] == 0 and books["balanced"], books
    return books


def paced_producer_args(count: int, seed: int, rate: int, start_time: str) -> list[str]:
    args = producer_args(count, seed, start_time, duplicate_ratio=0.05, malformed_ratio=0.01)
    args[args.index("--rate") + 1] = str(rate)
    args.remove("--no-pacing")
    return args


def start_producer(env: dict[str, str], args: list[str], log, summary) -> subprocess.Popen:
    out = log.open("ab")
    return subprocess.Popen([sys.executable, "-m", "producer", *args, "--summary-json", str(summary)], env=env,
                            cwd=REPO, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def partition_ends(settings) -> dict[int, int]:
    admin = AdminClient({"bootstrap.servers": settings.kafka.bootstrap_servers})
    topic = settings.kafka.trades_topic
    partitions = admin.list_topics(topic, timeout=10).topics[topic].partitions
    futures = admin.list_offsets({TopicPartition(topic, p): OffsetSpec.latest() for p in partitions})
    return {tp.partition: future.result().offset for tp, future in futures.items()}


def topic_records(settings) -> int:
    """Records in the trades topic (nothing is deleted from it unless a test does): the sum of its end offsets."""
    return sum(partition_ends(settings).values())


def topic_records_or_none(settings) -> int | None:
    try:
        return topic_records(settings)
    except KafkaException:  # e.g. leader not available yet
        return None


def delta_versions(s3, settings, layer: str) -> list[int]:
    prefix = f"{layer}/trades/_delta_log/"
    return sorted(int(item["Key"][len(prefix):-5])
                  for page in s3.get_paginator("list_objects_v2").paginate(Bucket=settings.lake.bucket, Prefix=prefix)
                  for item in page.get("Contents", []) if re.fullmatch(r"\d{20}\.json", item["Key"][len(prefix):]))


def rows_read(log, query: str) -> int:
    return sum(record["rows_in"] for record in read_progress(log.read_text(errors="replace"))
               if record["event"] == "batch" and record["query"] == query)


def wait_for_exit(proc: subprocess.Popen, what: str, timeout: float = 300) -> int:
    wait_for(lambda: proc.poll() is not None, what, timeout=timeout)
    return proc.returncode


# ---- 1. the stream job SIGKILLed again and again under a steady producer load -----------------------------------

def test_stream_sigkilled_again_and_again_under_load_keeps_every_event_exactly_once(spark, isolated, tmp_path):
    settings, env = isolated
    rng = random.Random(CHAOS_SEED)
    store = s3_client(settings)
    # A steady 150 events/s through every kill and restart, stopped (SIGTERM: flush, then exit) after the last.
    args = paced_producer_args(10_000_000, seed=41, rate=150, start_time="2026-01-05T15:00:00")
    summary = tmp_path / "producer.json"
    producer = start_producer(env, args, tmp_path / "producer.log", summary)
    stream_env = {**env, **SMALL_BATCHES}
    kills = []
    try:
        for kill in range(CHAOS_KILLS):
            # Alternate: a random moment, and right after a Bronze or a Silver Delta commit, before the query's
            # checkpoint records the batch as done (the window the txnVersion / Delta sink idempotence covers).
            moment = ("random", "after bronze commit", "after silver commit")[kill % 3]
            log = tmp_path / f"stream-{kill}.log"
            job = start_stream(stream_env, log)
            try:
                wait_for(lambda: rows_read(log, "bronze_trades") > 0, "a first Bronze batch of this run", 300)
                if moment == "random":
                    time.sleep(rng.uniform(0, 4))  # the randomness is the point: no condition to await
                else:
                    layer = moment.split()[1]
                    seen = delta_versions(store, settings, layer)[-1]
                    wait_for(lambda: delta_versions(store, settings, layer)[-1] > seen,
                             f"a new {layer} Delta commit", timeout=120, interval=0.05)
            finally:
                kill_process_group(job)
            kills.append(moment)
            assert job.returncode != 0  # killed, not finished
    finally:
        producer.terminate()
        producer_exit = wait_for_exit(producer, "the producer to flush and stop", timeout=120)
    assert producer_exit == 0, (tmp_path / "producer.log").read_text()[-3000:]
    delivered = json.loads(summary.read_text())
    assert delivered["delivery_failures"] == 0 and delivered["delivered"] == delivered["sent_trades_topic"] > 0
    # The simulator is seeded: what it sent is the first `delivered` records of the same arguments.
    sent = args.copy()
    sent[sent.index("--count") + 1] = str(delivered["delivered"])

    run_stream_available_now(env, tmp_path / "stream-final.log")
    assert len(kills) == CHAOS_KILLS
    assert_every_event_exactly_once(spark, settings, expected_records(env, sent))


# ---- 2. the Kafka broker restarted under load ------------------------------------------------------------------

def test_broker_restart_under_load_loses_and_duplicates_nothing(spark, isolated, tmp_path):
    settings, env = isolated
    broker = Kafka(settings)
    # A steady 200 events/s, before, during and after the restart; stopped (SIGTERM: flush, then exit) after it.
    args = paced_producer_args(10_000_000, seed=42, rate=200, start_time="2026-01-05T15:10:00")
    summary = tmp_path / "producer.json"
    log = tmp_path / "stream.log"
    job = start_stream(env, log)
    producer = start_producer(env, args, tmp_path / "producer.log", summary)
    try:
        wait_for(lambda: rows_read(log, "bronze_trades") > 0 or job.poll() is not None, "a first Bronze batch", 300)
        assert job.poll() is None, log.read_text(errors="replace")[-3000:]
        broker.down()
        assert producer.poll() is None  # the producer buffers while the broker is away
        broker.up()
        # Right after a restart the partitions' leaders may still be loading: offsets answer a moment later.
        counts: list[int] = []
        wait_for(lambda: counts.append(topic_records_or_none(settings)) or counts[-1] is not None,
                 "the topic's offsets after the restart", timeout=120)
        wait_for(lambda: (topic_records_or_none(settings) or 0) >= counts[-1] + 2000,
                 "2,000 more records after the restart", timeout=120)
    except BaseException:
        kill_process_group(job)
        raise
    finally:
        if not broker.healthy():
            broker.up()
        producer.terminate()
    assert wait_for_exit(producer, "the producer to flush and stop", timeout=120) == 0
    delivered = json.loads(summary.read_text())
    assert delivered["delivery_failures"] == 0 and delivered["delivered"] == delivered["sent_trades_topic"]
    sent = args.copy()
    sent[sent.index("--count") + 1] = str(delivered["delivered"])
    assert topic_records(settings) == delivered["delivered"]  # each acknowledged once: idempotence

    # The running stream resumes by itself, or (if the broker's absence outlasted its client's retries) fails
    # loudly and a restart from its checkpoint takes over: either way every record is read once.
    total = delivered["delivered"]
    try:
        wait_for(lambda: job.poll() is not None or (rows_read(log, "bronze_trades") >= total
                                                    and rows_read(log, "silver_trades") >= total),
                 "the stream to read every record", timeout=300)
    finally:
        if job.poll() is None:
            job.terminate()  # SIGTERM to spark-submit: a graceful stop
    if wait_for_exit(job, "the stream to stop") != 0:
        assert '"event": "query_failed"' in log.read_text(errors="replace")  # loudly, not silently
        run_stream_available_now(env, tmp_path / "stream-restart.log")
    assert_every_event_exactly_once(spark, settings, expected_records(env, sent))


# ---- 3. the object store stopped mid-run ----------------------------------------------------------------------

def test_object_store_outage_mid_run_then_every_event_once_and_the_checkpoint_usable(spark, isolated, tmp_path):
    settings, env = isolated
    minio = MinIO(settings)
    args = producer_args(6000, seed=43, start_time="2026-01-05T15:20:00", duplicate_ratio=0.05, malformed_ratio=0.01)
    run_producer(env, args, tmp_path)
    log = tmp_path / "stream.log"
    job = start_stream({**env, **SMALL_BATCHES}, log)
    try:
        wait_for(lambda: rows_read(log, "bronze_trades") >= 800, "two Bronze batches", timeout=300)
        minio.down()
        outage_started = time.monotonic()
        # The job's writes fail while the store is away: it either waits (S3A retries) or stops with an error.
        wait_for(lambda: job.poll() is not None or time.monotonic() - outage_started > 20, "20 s of outage", 60)
    finally:
        minio.up()
    # After recovery: if the job is still running it carries on from where it was; if it died, a restart from the
    # same checkpoint does. Either way the available-now run below starts from that checkpoint.
    if job.poll() is None:
        wait_for(lambda: job.poll() is not None or rows_read(log, "silver_trades") >= 6000,
                 "the stream to carry on after the outage", timeout=300)
        if job.poll() is None:
            kill_process_group(job)
    run_stream_available_now(env, log)
    assert_every_event_exactly_once(spark, settings, expected_records(env, args))


# ---- 4. the producer SIGKILLed mid-run ----------------------------------------------------------------------------

def scrape_acknowledged(port: int) -> float:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()  # noqa: S310
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("stocklake_producer_messages_published_total{"))


def acknowledged_or_zero(port: int) -> float:
    try:
        return scrape_acknowledged(port)
    except OSError:  # not serving yet
        return 0.0


def test_producer_sigkilled_then_restarted_from_the_same_position_duplicates_nothing_in_silver(
        spark, isolated, tmp_path):
    settings, env = isolated
    port = free_port()
    args = paced_producer_args(3000, seed=44, rate=200, start_time="2026-01-05T15:30:00")
    producer = start_producer(env, [*args, "--metrics-port", str(port)], tmp_path / "producer-1.log",
                              tmp_path / "unused.json")
    try:
        wait_for(lambda: acknowledged_or_zero(port) >= 1000, "1,000 records acknowledged", timeout=120)
        acknowledged = scrape_acknowledged(port)  # then SIGKILL: no flush, no goodbye
    finally:
        kill_process_group(producer)
    in_kafka = topic_records(settings)
    assert 1000 <= acknowledged <= in_kafka < 3000  # everything acknowledged before the kill is in Kafka

    # Restarted from the same source position (the seeded simulator from its start): the first in_kafka records
    # are sent again. Bronze keeps both deliveries; Silver each distinct event once.
    summary = run_producer(env, args + ["--no-pacing"], tmp_path)
    assert summary["delivered"] == 3000
    run_stream_available_now(env, tmp_path / "stream.log")
    records = expected_records(env, args)
    assert table(spark, settings, "bronze").count() == in_kafka + 3000
    silver_ids = [row["event_id"] for row in table(spark, settings, "silver").select("event_id").collect()]
    assert len(silver_ids) == len(set(silver_ids))
    assert set(silver_ids) == {r.event_id for r in records if r.kind != "malformed"}
    assert account(spark, settings, TRADES)["balanced"]


# ---- 5. records lost to retention before the stream read them: the runbook ---------------------------------------

def delete_records_before(settings, keep_from: dict[int, int]) -> None:
    """What retention does: move each partition's log start offset (Kafka's DeleteRecords)."""
    admin = AdminClient({"bootstrap.servers": settings.kafka.bootstrap_servers})
    topic = settings.kafka.trades_topic
    futures = admin.delete_records([TopicPartition(topic, p, offset) for p, offset in keep_from.items()])
    for future in futures.values():
        future.result(timeout=30)


def test_data_lost_to_retention_stops_the_stream_and_the_runbook_recovers(spark, isolated, tmp_path):
    settings, env = isolated
    log = tmp_path / "stream.log"
    run_producer(env, producer_args(1200, seed=45, start_time="2026-01-05T15:40:00"), tmp_path)
    run_stream_available_now(env, log)
    read_up_to = partition_ends(settings)

    # 1,200 more records, and retention takes the first half of each partition's new records before the stream
    # ran again.
    run_producer(env, producer_args(1200, seed=46, start_time="2026-01-05T15:41:00"), tmp_path)
    ends = partition_ends(settings)
    keep_from = {p: read_up_to[p] + (ends[p] - read_up_to[p]) // 2 for p in ends}
    lost = sum(keep_from[p] - read_up_to[p] for p in ends)
    assert lost > 0
    delete_records_before(settings, keep_from)

    # The stream refuses to start, with one line naming what was lost (checked before the JVM starts).
    refused = subprocess.run(stream_command("available-now", ["trades"]), env=env, cwd=REPO, capture_output=True,
                             text=True, timeout=300)
    assert refused.returncode == 3
    output = refused.stdout + refused.stderr  # spark-submit passes the driver's stderr on its stdout
    assert "Traceback" not in output
    errors = [line for line in output.splitlines() if line.startswith("stream: error")]
    assert len(errors) == 1, output[-3000:]
    line = errors[0]
    topic = settings.kafka.trades_topic
    assert line.startswith(f"stream: error: Kafka data loss: bronze_trades has not read {lost:,} records of {topic} "
                           f"that Kafka no longer holds (partition: offsets ")
    assert f"silver_trades has not read {lost:,} records of {topic}" in line
    assert line.endswith('see the README, Operations, "Recovering from Kafka data loss"')

    # Runbook step 3: accept the gap once; the run logs exactly what it skipped.
    accept_log = tmp_path / "accept.log"
    with accept_log.open("wb") as out:
        accepted = subprocess.run(stream_command("available-now", ["trades"], ["--accept-data-loss"]), env=env,
                                  cwd=REPO, stdout=out, stderr=subprocess.STDOUT, timeout=600)
    assert accepted.returncode == 0, accept_log.read_text(errors="replace")[-5000:]
    skipped = [json.loads(m) for m in re.findall(r'(\{"event": "data_loss_accepted".*\})',
                                                  accept_log.read_text(errors="replace"))]
    assert sum(s["records"] for s in skipped if s["query"] == "bronze_trades") == lost
    assert sum(s["records"] for s in skipped if s["query"] == "silver_trades") == lost
    bronze = table(spark, settings, "bronze")
    assert bronze.count() == 2400 - lost
    assert bronze.where(F.expr(" OR ".join(f"(partition = {p} AND offset >= {read_up_to[p]} AND offset < "
                                           f"{keep_from[p]})" for p in ends))).count() == 0
    assert account(spark, settings, TRADES)["balanced"]

    # Runbook step 4: the stream starts as usual again and reads what comes next.
    run_producer(env, producer_args(300, seed=47, start_time="2026-01-05T15:42:00"), tmp_path)
    run_stream_available_now(env, log)
    assert table(spark, settings, "bronze").count() == 2400 - lost + 300
    assert account(spark, settings, TRADES)["balanced"]


def test_accept_data_loss_is_refused_for_a_long_running_stream():
    result = subprocess.run([sys.executable, str(REPO / "spark_jobs" / "stream.py"), "--accept-data-loss"],
                            cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "--accept-data-loss: only with --trigger available-now" in result.stderr
