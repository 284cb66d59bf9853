"""The stream watchdog against the real stream's checkpoints on MinIO and the real Kafka topic."""
from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime, timedelta

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from spark_jobs.watchdog import main
from tests.integration.stack import REPO, producer_args, run_producer, run_stream_available_now, s3_client

pytestmark = pytest.mark.integration

TRADE_QUERIES = ["bronze_trades", "silver_trades"]


def end_offsets(settings, topic: str) -> dict[str, int]:
    """The topic's end offsets, read independently of the watchdog (a consumer's watermarks)."""
    consumer = Consumer({"bootstrap.servers": settings.kafka.bootstrap_servers, "group.id": "watchdog-test",
                         "enable.auto.commit": False})
    try:
        return {str(p): consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=30)[1]
                for p in range(settings.kafka.partitions)}
    finally:
        consumer.close()


def check(tmp_path, *args) -> tuple[int, dict]:
    out = tmp_path / f"watchdog-{len(list(tmp_path.iterdir()))}.json"
    code = main(["--entity", "trades", *args, "--json", str(out)])
    return code, {q["query"]: q for q in json.loads(out.read_text())["queries"]}


def test_caught_up_then_lagging_then_stalled(isolated, tmp_path, capsys):
    settings, env = isolated
    run_producer(env, producer_args(500, seed=3, start_time="2026-01-05T15:00:00"), tmp_path)
    run_stream_available_now(env, tmp_path / "stream.log")
    ends = end_offsets(settings, settings.kafka.trades_topic)
    assert sum(ends.values()) == 500

    # Everything read: healthy, the checkpoint's offsets are exactly the topic's end offsets.
    code, queries = check(tmp_path)
    assert code == 0
    for name in TRADE_QUERIES:
        q = queries[name]
        assert (q["healthy"], q["lag"], q["reasons"]) == (True, 0, [])
        assert q["checkpoint_offsets"] == q["end_offsets"] == ends
    # Caught up stays healthy however long nothing arrives (an idle market).
    finished = {name: datetime.fromisoformat(queries[name]["last_batch_time"]) for name in TRADE_QUERIES}
    code, queries = check(tmp_path, "--now", (max(finished.values()) + timedelta(days=3)).isoformat())
    assert code == 0 and all(queries[name]["healthy"] for name in TRADE_QUERIES)

    # 37 more records the stream has not run for.
    producer = Producer({"bootstrap.servers": settings.kafka.bootstrap_servers, "enable.idempotence": True})
    for i in range(37):
        producer.produce(settings.kafka.trades_topic, key=b"AAPL", value=f"not yet read {i}".encode())
    assert producer.flush(30) == 0
    code, queries = check(tmp_path)
    assert code == 0
    for name in TRADE_QUERIES:
        assert (queries[name]["healthy"], queries[name]["lag"]) == (True, 37)
        assert queries[name]["checkpoint_offsets"] == ends
        assert sum(queries[name]["end_offsets"].values()) == 537
    max_age = settings.watchdog.max_batch_age_seconds
    # At the limit: still healthy.
    code, queries = check(tmp_path, "--now", (min(finished.values()) + timedelta(seconds=max_age)).isoformat())
    assert code == 0
    assert max(queries[name]["batch_age_seconds"] for name in TRADE_QUERIES) == max_age
    # Past it, with records waiting: stalled.
    capsys.readouterr()
    now = max(finished.values()) + timedelta(seconds=max_age + 1)
    code, queries = check(tmp_path, "--now", now.isoformat())
    assert code == 1
    for name in TRADE_QUERIES:
        age = (now - finished[name]).total_seconds()
        assert queries[name]["healthy"] is False
        assert queries[name]["reasons"] == [
            f"stalled: 37 records waiting and no batch for {age:,.1f} s "
            f"(> watchdog.max_batch_age_seconds {max_age:,})"]
    out = capsys.readouterr().out.splitlines()
    assert out[-1] == "stream_watchdog: 0/2 queries healthy; UNHEALTHY: bronze_trades, silver_trades"
    assert f"  silver_trades: {queries['silver_trades']['reasons'][0]}" in out



def test_no_checkpoint_is_unhealthy(isolated, tmp_path):
    settings, env = isolated
    out = tmp_path / "watchdog.json"
    result = subprocess.run([sys.executable, "-m", "spark_jobs.watchdog", "--json", str(out)], env=env, cwd=REPO,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 1, result.stderr[-3000:]
    queries = json.loads(out.read_text())["queries"]
    expected = ["bronze_trades", "silver_trades", "bronze_quotes", "silver_quotes"]
    assert [q["query"] for q in queries] == expected
    for q in queries:
        checkpoint = f"s3a://{settings.lake.bucket}/_checkpoints/{q['query']}"
        assert (q["healthy"], q["reasons"]) == (False, [f"no checkpoint at {checkpoint}: the query has never run here"])
    assert result.stdout.splitlines()[-1] == ("stream_watchdog: 0/4 queries healthy; UNHEALTHY: bronze_trades, "
                                              "silver_trades, bronze_quotes, silver_quotes")


def test_a_query_whose_first_batch_never_committed(isolated, tmp_path):
    """A checkpoint as Spark leaves it when the first micro-batch keeps failing: the query's id and the starting
    offsets it resolved (sources/0/0, NUL-prefixed), the planned batch, no commit. Judged from the checkpoint's
    creation and those starting offsets."""
    settings, _ = isolated
    topic, partitions = settings.kafka.trades_topic, settings.kafka.partitions
    s3 = s3_client(settings)
    starting = json.dumps({topic: {str(p): 0 for p in range(partitions)}})
    for key, body in (("metadata", '{"id":"3db75941-3ef9-43f5-8e60-39f7192606fc"}'),
                      ("sources/0/0", "\x00v1\n" + starting),
                      ("offsets/0", 'v1\n{"batchWatermarkMs":0,"batchTimestampMs":0,"conf":{}}\n'
                                    + json.dumps({topic: {str(p): 1 for p in range(partitions)}}))):
        s3.put_object(Bucket=settings.lake.bucket, Key=f"_checkpoints/bronze_trades/{key}", Body=body.encode())
    producer = Producer({"bootstrap.servers": settings.kafka.bootstrap_servers, "enable.idempotence": True})
    for i in range(3):
        producer.produce(topic, key=b"AAPL", value=f"waiting {i}".encode())
    assert producer.flush(30) == 0

    code, queries = check(tmp_path)
    q = queries["bronze_trades"]
    assert (q["healthy"], q["batch_id"], q["lag"]) == (True, None, 3)
    assert q["checkpoint_offsets"] == {str(p): 0 for p in range(partitions)}
    assert queries["silver_trades"]["reasons"] == [
        f"no checkpoint at s3a://{settings.lake.bucket}/_checkpoints/silver_trades: the query has never run here"]
    started = datetime.fromisoformat(q["last_batch_time"])
    max_age = settings.watchdog.max_batch_age_seconds
    code, queries = check(tmp_path, "--now", (started + timedelta(seconds=max_age + 1)).isoformat())
    assert code == 1
    assert queries["bronze_trades"]["reasons"] == [
        f"stalled: 3 records waiting and no batch for {max_age + 1:,.1f} s "
        f"(> watchdog.max_batch_age_seconds {max_age:,})"]
