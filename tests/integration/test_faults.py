"""Faults against the real local stack, each counting every event end to end.

Stream job SIGKILLed again and again (at random moments and right after a Delta commit), the Kafka broker restarted
under load, MinIO stopped mid-run, the producer SIGKILLed, and records lost to retention before the stream read
them. `make test` runs a short chaos (CHAOS_KILLS, default 2 kills: right after a Bronze and after a Silver commit),
the producer SIGKILL and the data-loss runbook; `make chaos` runs the full length, random moments too, and the
tests marked `chaos`: the broker restart and the object-store outage, which start a Kafka and a MinIO of their own
to stop (six minutes of the suite's test time on 2 cores).

The stream whose process is the point (killed, signalled, running through an outage) is spark-submit; the
catch-up runs after a fault, which only restart from the checkpoints, run in the tests' warm SparkSession. The
broker restart and the object-store outage happen on a stack of their own (conftest.fault_stack), so stopping its
broker or its object store leaves the main stack, and any test running on it, untouched.
"""
from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest
from confluent_kafka import KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec
from pyspark.sql import functions as F

from spark_jobs.lib.exactly_once import parse_marker
from spark_jobs.report import account
from spark_jobs.lib.transforms import TRADES
from spark_jobs.lib.checkpoints import list_checkpoint
from tests.integration.stack import (REPO, batch_records, expected_records, free_port, kill_process_group, producer_args,
                                     run_producer, run_stream_in_session, s3_client, start_stream, stream_command,
                                     wait_for)

pytestmark = pytest.mark.integration

CHAOS_KILLS = int(os.environ.get("CHAOS_KILLS", "2"))
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
    return sum(record["rows_in"] for record in batch_records(log, query))


def wait_for_exit(proc: subprocess.Popen, what: str, timeout: float = 300) -> int:
    wait_for(lambda: proc.poll() is not None, what, timeout=timeout)
    return proc.returncode


# ---- 1. the stream job SIGKILLed again and again under a steady producer load -----------------------------------

@dataclass
class Kill:
    moment: str                      # random, after bronze commit, after silver commit
    log: Path                        # the killed run's log
    layer: str | None = None         # the layer whose Delta commit the kill followed
    batch_id: int | None = None      # the batch that commit wrote
    in_flight: bool = False          # its checkpoint had not recorded the batch as done when the job died
    restart_log: Path | None = None  # the run after it


def commit_batch_ids(store, settings, layer: str, app_prefix: str) -> Counter:
    """Batch id -> how many commits of the layer's table carry it: the batch marker of spark_jobs/lib/exactly_once.py
    (commitInfo.userMetadata of the foreachBatch appends, app <app_prefix>-<query id>) or the txn action (the first
    batch of a run's foreachBatch appends: txnAppId <app_prefix>-<query id>; the Delta sink: the query id)."""
    batches: Counter = Counter()
    for version in delta_versions(store, settings, layer):
        body = store.get_object(Bucket=settings.lake.bucket,
                                Key=f"{layer}/trades/_delta_log/{version:020d}.json")["Body"].read().decode()
        in_commit = set()
        for line in body.splitlines():
            action = json.loads(line)
            txn = action.get("txn")
            if txn and txn["appId"].startswith(app_prefix):
                in_commit.add(txn["version"])
            marker = parse_marker(action.get("commitInfo", {}).get("userMetadata"))
            if marker and marker[0].startswith(app_prefix):
                in_commit.add(marker[1])
        batches.update(in_commit)
    return batches


def checkpoint_committed(store, settings, layer: str, batch_id: int) -> bool:
    """Whether the layer's query's checkpoint records the batch as done (its commits/<batch id> file)."""
    return f"commits/{batch_id}" in list_checkpoint(store, settings.lake.bucket, TRADES.checkpoint(layer) + "/")


def first_batch(log: Path, query: str) -> int | None:
    batches = batch_records(log, query)
    return batches[0]["batch_id"] if batches else None


def kill_once(env, settings, store, moment: str, log: Path, rng: random.Random) -> Kill:
    """Start the stream, wait for its first Bronze batch, then SIGKILL it at the moment asked for."""
    job = start_stream(env, log)
    kill = Kill(moment, log)
    try:
        wait_for(lambda: rows_read(log, "bronze_trades") > 0, "a first Bronze batch of this run", 300)
        if moment == "random":
            time.sleep(rng.uniform(0, 4))  # the randomness is the point: no condition to await
        else:
            kill.layer = moment.split()[1]
            seen = delta_versions(store, settings, kill.layer)[-1]
            wait_for(lambda: delta_versions(store, settings, kill.layer)[-1] > seen,
                     f"a new {kill.layer} Delta commit", timeout=120, interval=0.05)
    finally:
        kill_process_group(job)
    assert job.returncode != 0  # killed, not finished
    if kill.layer:
        # The newest batch the layer holds, and whether the job died before its checkpoint recorded it as done.
        prefix = "bronze-" if kill.layer == "bronze" else ""
        kill.batch_id = max(commit_batch_ids(store, settings, kill.layer, prefix))
        kill.in_flight = not checkpoint_committed(store, settings, kill.layer, kill.batch_id)
    return kill


def assert_in_flight_batches_replayed_once(store, settings, kills: list[Kill]) -> None:
    """Each batch a kill caught between its Delta commit and its checkpoint commit was run again by the next run
    (its first batch), and its data is in the table from one commit only (the replay's write was skipped)."""
    written = {"bronze": commit_batch_ids(store, settings, "bronze", "bronze-"),
               "quarantine": commit_batch_ids(store, settings, "quarantine", "quarantine-"),
               "silver": commit_batch_ids(store, settings, "silver", "")}
    for kill in kills:
        if not kill.in_flight:
            continue
        query = f"{kill.layer}_trades"
        assert first_batch(kill.restart_log, query) == kill.batch_id, (kill, "not replayed")
        assert checkpoint_committed(store, settings, kill.layer, kill.batch_id)
        assert written[kill.layer][kill.batch_id] == 1, (kill, written[kill.layer][kill.batch_id])
        if kill.layer == "bronze":  # the batch's quarantine rows too, once (the kill may have come before them)
            assert written["quarantine"][kill.batch_id] == 1, (kill, written["quarantine"][kill.batch_id])


# Kills right after a commit that must land before the checkpoint's commit for the replay to be checked: extra
# tries per layer when the planned ones all came a moment too late.
EXTRA_COMMIT_KILLS = 4


def test_stream_sigkilled_again_and_again_under_load_keeps_every_event_exactly_once(spark, isolated, tmp_path):
    settings, env = isolated
    rng = random.Random(CHAOS_SEED)
    store = s3_client(settings)
    # A steady 150 events/s through every kill and restart, stopped (SIGTERM: flush, then exit) after the last.
    args = paced_producer_args(10_000_000, seed=41, rate=150, start_time="2026-01-05T15:00:00")
    summary = tmp_path / "producer.json"
    producer = start_producer(env, args, tmp_path / "producer.log", summary)
    stream_env = {**env, **SMALL_BATCHES}
    kills: list[Kill] = []
    try:
        # Alternate: right after a Bronze or a Silver Delta commit, before the query's checkpoint records the batch
        # as done (the window the exactly-once appends cover), and a random moment (make chaos: a third of its kills).
        planned = [("after bronze commit", "after silver commit", "random")[kill % 3] for kill in range(CHAOS_KILLS)]
        for moment in planned:
            kills.append(kill_once(stream_env, settings, store, moment, tmp_path / f"stream-{len(kills)}.log", rng))
        for layer in ("bronze", "silver"):
            tries = 0
            while not any(k.in_flight and k.layer == layer for k in kills) and tries < EXTRA_COMMIT_KILLS:
                tries += 1
                kills.append(kill_once(stream_env, settings, store, f"after {layer} commit",
                                       tmp_path / f"stream-{len(kills)}.log", rng))
    finally:
        producer.terminate()
        producer_exit = wait_for_exit(producer, "the producer to flush and stop", timeout=120)
    assert producer_exit == 0, (tmp_path / "producer.log").read_text()[-3000:]
    delivered = json.loads(summary.read_text())
    assert delivered["delivery_failures"] == 0 and delivered["delivered"] == delivered["sent_trades_topic"] > 0
    # The simulator is seeded: what it sent is the first `delivered` records of the same arguments.
    sent = args.copy()
    sent[sent.index("--count") + 1] = str(delivered["delivered"])

    # The restart after the last kill: a catch-up run from the same checkpoints (in the tests' session).
    final_log = tmp_path / "stream-final.log"
    run_stream_in_session(spark, env, final_log)
    for kill, after in zip(kills, kills[1:]):
        kill.restart_log = after.log
    kills[-1].restart_log = final_log
    print("kills:", [(k.moment, k.batch_id, "in flight" if k.in_flight else "") for k in kills])
    assert len(kills) >= CHAOS_KILLS
    for layer in ("bronze", "silver"):
        assert any(k.in_flight and k.layer == layer for k in kills), \
            f"no kill landed between a {layer} Delta commit and its checkpoint commit in {len(kills)} kills"
    assert_in_flight_batches_replayed_once(store, settings, kills)
    assert_every_event_exactly_once(spark, settings, expected_records(env, sent))


# ---- 2. the Kafka broker restarted under load ------------------------------------------------------------------

@pytest.mark.chaos
def test_broker_restart_under_load_loses_and_duplicates_nothing(spark, fault_stack, isolated_on_fault_stack,
                                                                tmp_path):
    settings, env = isolated_on_fault_stack
    broker = fault_stack.kafka
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
        run_stream_in_session(spark, env, tmp_path / "stream-restart.log")
    assert_every_event_exactly_once(spark, settings, expected_records(env, sent))


# ---- 3. the object store stopped mid-run ----------------------------------------------------------------------

@pytest.mark.chaos
def test_object_store_outage_mid_run_then_every_event_once_and_the_checkpoint_usable(
        spark, fault_stack, isolated_on_fault_stack, tmp_path):
    settings, env = isolated_on_fault_stack
    minio = fault_stack.minio
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
    # After recovery: if the job is still running it carries on from where it was (a batch of each query more,
    # then it is stopped as an operator would: SIGTERM); if it died, a restart from the same checkpoint does. Either
    # way the available-now run below starts from that checkpoint and reads the rest.
    if job.poll() is None:
        read = {query: rows_read(log, query) for query in ("bronze_trades", "silver_trades")}
        wait_for(lambda: job.poll() is not None or all(rows_read(log, query) > rows for query, rows in read.items()),
                 "the stream to carry on after the outage", timeout=300)
        if job.poll() is None:
            os.killpg(job.pid, signal.SIGTERM)
        wait_for_exit(job, "the stream to stop", timeout=120)
        print("after the outage the job", "carried on" if job.returncode == 0 else f"exited {job.returncode}")
    run_stream_in_session(spark, env, log)
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
    run_stream_in_session(spark, env, tmp_path / "stream.log")
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
    run_stream_in_session(spark, env, log)
    read_up_to = partition_ends(settings)

    # 1,200 more records, and retention takes the first half of each partition's new records before the stream
    # ran again.
    run_producer(env, producer_args(1200, seed=46, start_time="2026-01-05T15:41:00"), tmp_path)
    ends = partition_ends(settings)
    keep_from = {p: read_up_to[p] + (ends[p] - read_up_to[p]) // 2 for p in ends}
    lost = sum(keep_from[p] - read_up_to[p] for p in ends)
    assert lost > 0
    delete_records_before(settings, keep_from)

    # The stream refuses to start, with one line naming what was lost (checked before the driver's JVM starts).
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
    run_stream_in_session(spark, env, accept_log, extra_args=["--accept-data-loss"])
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
    run_stream_in_session(spark, env, log)
    assert table(spark, settings, "bronze").count() == 2400 - lost + 300
    assert account(spark, settings, TRADES)["balanced"]


def test_accept_data_loss_is_refused_for_a_long_running_stream():
    result = subprocess.run([sys.executable, str(REPO / "spark_jobs" / "stream.py"), "--accept-data-loss"],
                            cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "--accept-data-loss: only with --trigger available-now" in result.stderr
