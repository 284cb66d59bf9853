"""The stream watchdog against the real stream's checkpoints on MinIO, the real Kafka topic and the heartbeats the
producer and the stream publish."""
from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime, timedelta, timezone

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from spark_jobs.lib.listener import read_progress
from spark_jobs.watchdog import main
from tests.integration.stack import REPO, producer_args, run_producer, run_stream_in_session, s3_client
from tests.integration.test_heartbeats import heartbeat_records, iso_ms, newest_valid_trade_ts, producer_counts

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


def check(tmp_path, *args) -> tuple[int, dict, dict]:
    """The watchdog's exit code, its queries by name and its heartbeat verdicts by sender (--json)."""
    out = tmp_path / f"watchdog-{len(list(tmp_path.iterdir()))}.json"
    code = main(["--entity", "trades", *args, "--json", str(out)])
    result = json.loads(out.read_text())
    return code, {q["query"]: q for q in result["queries"]}, {h["sender"]: h for h in result["heartbeats"]}


EVENTS = 2000


def test_caught_up_then_lagging_then_stalled(spark, isolated, tmp_path, capsys):
    """One producer and one stream run; their heartbeats (counts, newest event) match what they report, then the
    watchdog's verdicts on the checkpoints and the heartbeats as time passes."""
    settings, env = isolated
    args = producer_args(EVENTS, seed=24, start_time="2026-01-05T15:00:00", duplicate_ratio=0.02, late_ratio=0.02,
                         malformed_ratio=0.02)
    summary = run_producer(env, args, tmp_path)
    stream_log = tmp_path / "stream.log"
    run_stream_in_session(spark, env, stream_log)
    ends = end_offsets(settings, settings.kafka.trades_topic)
    assert sum(ends.values()) == EVENTS

    # The heartbeats: the newest of each sender is its final one, with the counts its process reported.
    records = heartbeat_records(settings)
    producer_beats = [r for r in records if r["_key"] == "producer:simulator"]
    stream_beats = [r for r in records if r["_key"] == "stream"]
    assert len(producer_beats) + len(stream_beats) == len(records) and producer_beats and stream_beats
    assert [r["stopped"] for r in stream_beats] == [False] * (len(stream_beats) - 1) + [True]
    assert producer_beats[-1]["counts"] == producer_counts(summary) and producer_beats[-1]["stopped"] is True
    progress = read_progress(stream_log.read_text(errors="replace"))
    totals = next(r for r in progress if r["event"] == "stream_finished")["totals"]
    batches = [r for r in progress if r["event"] == "batch"]
    final = stream_beats[-1]
    quarantined = sum(summary["expected_quarantine_by_reason"].values())
    assert quarantined > 0
    assert final["counts"] == {
        "bronze_trades": totals["bronze_trades"],
        "silver_trades": {**totals["silver_trades"], "rows_quarantined": quarantined}}
    assert final["counts"]["silver_trades"]["rows_in"] == EVENTS
    assert quarantined == sum(r.get("rows_quarantined", 0) for r in batches if r["query"] == "silver_trades")
    newest_event = iso_ms(newest_valid_trade_ts(env, args))
    assert producer_beats[-1]["last_event_time"] == final["last_event_time"] == newest_event
    for name in TRADE_QUERIES:
        query = final["queries"][name]
        assert query["batch_id"] == max(r["batch_id"] for r in batches if r["query"] == name)
        assert query["last_event_time"] == (newest_event if name == "silver_trades" else None)
        assert stream_beats[0]["sent_at"] <= query["last_batch_time"] <= final["sent_at"]
    assert final["last_batch_time"] == max(final["queries"][name]["last_batch_time"] for name in TRADE_QUERIES)
    stream_sent_at = datetime.fromisoformat(final["sent_at"])
    max_heartbeat_age = settings.watchdog.max_heartbeat_age_seconds

    # Everything read: healthy, the checkpoint's offsets are exactly the topic's end offsets; the stream's final
    # heartbeat is fresh, the producer said it stopped.
    code, queries, heartbeats = check(tmp_path)
    assert code == 0
    for name in TRADE_QUERIES:
        q = queries[name]
        assert (q["healthy"], q["lag"], q["reasons"]) == (True, 0, [])
        assert q["checkpoint_offsets"] == q["end_offsets"] == ends
    assert {(s, h["healthy"], h["state"]) for s, h in heartbeats.items()} == {
        ("stream", True, "stopped"), ("producer:simulator", True, "stopped")}
    assert heartbeats["stream"]["heartbeat"] == {k: v for k, v in final.items() if k != "_key"}
    # Caught up stays healthy however long nothing arrives (an idle market); a stream that stopped does not.
    finished = {name: datetime.fromisoformat(queries[name]["last_batch_time"]) for name in TRADE_QUERIES}
    later = max(finished.values()) + timedelta(days=3)
    code, queries, heartbeats = check(tmp_path, "--now", later.isoformat())
    assert code == 1 and all(queries[name]["healthy"] for name in TRADE_QUERIES)
    assert [queries[name]["lag_seconds"] for name in TRADE_QUERIES] == [0.0, 0.0]  # nothing waits
    assert heartbeats["producer:simulator"]["healthy"] is True
    assert heartbeats["stream"]["reasons"] == [
        f"stale: last heartbeat {(later - stream_sent_at).total_seconds():,.1f} s ago, its last one said it stopped "
        f"(> watchdog.max_heartbeat_age_seconds {max_heartbeat_age:,})"]

    # 37 more records the stream has not run for. Checked when the stream's heartbeat is exactly at its age limit.
    producer = Producer({"bootstrap.servers": settings.kafka.bootstrap_servers, "enable.idempotence": True})
    sent_ms = []
    for i in range(37):
        producer.produce(settings.kafka.trades_topic, key=b"AAPL", value=f"not yet read {i}".encode(),
                         on_delivery=lambda err, message: sent_ms.append(message.timestamp()[1]))
    assert producer.flush(30) == 0 and len(sent_ms) == 37
    at_heartbeat_limit = stream_sent_at + timedelta(seconds=max_heartbeat_age)
    code, queries, heartbeats = check(tmp_path, "--now", at_heartbeat_limit.isoformat())
    assert code == 0
    assert heartbeats["stream"]["age_seconds"] == max_heartbeat_age
    # Lag in seconds: the age of the oldest record not read, from its Kafka timestamp.
    oldest_unread = datetime.fromtimestamp(min(sent_ms) / 1000, timezone.utc)
    for name in TRADE_QUERIES:
        assert (queries[name]["healthy"], queries[name]["lag"]) == (True, 37)
        assert queries[name]["lag_seconds"] == round((at_heartbeat_limit - oldest_unread).total_seconds(), 3)
        assert queries[name]["checkpoint_offsets"] == ends
        assert sum(queries[name]["end_offsets"].values()) == EVENTS + 37
    max_age = settings.watchdog.max_batch_age_seconds
    # At the limit: the queries are still healthy (the stream's heartbeat is stale by now).
    at_batch_limit = min(finished.values()) + timedelta(seconds=max_age)
    code, queries, heartbeats = check(tmp_path, "--now", at_batch_limit.isoformat())
    assert code == 1 and all(queries[name]["healthy"] for name in TRADE_QUERIES)
    assert max(queries[name]["batch_age_seconds"] for name in TRADE_QUERIES) == max_age
    assert [s for s, h in heartbeats.items() if not h["healthy"]] == ["stream"]
    # Past it, with records waiting: stalled.
    capsys.readouterr()
    now = max(finished.values()) + timedelta(seconds=max_age + 1)
    code, queries, heartbeats = check(tmp_path, "--now", now.isoformat())
    assert code == 1
    for name in TRADE_QUERIES:
        age = (now - finished[name]).total_seconds()
        assert queries[name]["healthy"] is False
        assert queries[name]["reasons"] == [
            f"stalled: 37 records waiting and no batch for {age:,.1f} s "
            f"(> watchdog.max_batch_age_seconds {max_age:,})"]
    out = capsys.readouterr().out.splitlines()
    assert out[-1] == ("stream_watchdog: 0/2 queries healthy, 1/2 heartbeats ok; UNHEALTHY: bronze_trades, "
                       "silver_trades, heartbeat stream")
    assert f"  silver_trades: {queries['silver_trades']['reasons'][0]}" in out
    assert f"  heartbeat stream: {heartbeats['stream']['reasons'][0]}" in out


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
    assert result.stdout.splitlines()[-1] == ("stream_watchdog: 0/4 queries healthy, 0/1 heartbeats ok; UNHEALTHY: "
                                              "bronze_trades, silver_trades, bronze_quotes, silver_quotes, "
                                              "heartbeat stream")


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

    code, queries, _ = check(tmp_path)
    q = queries["bronze_trades"]
    assert (q["healthy"], q["batch_id"], q["lag"]) == (True, None, 3)
    assert q["checkpoint_offsets"] == {str(p): 0 for p in range(partitions)}
    assert queries["silver_trades"]["reasons"] == [
        f"no checkpoint at s3a://{settings.lake.bucket}/_checkpoints/silver_trades: the query has never run here"]
    started = datetime.fromisoformat(q["last_batch_time"])
    max_age = settings.watchdog.max_batch_age_seconds
    code, queries, _ = check(tmp_path, "--now", (started + timedelta(seconds=max_age + 1)).isoformat())
    assert code == 1
    assert queries["bronze_trades"]["reasons"] == [
        f"stalled: 3 records waiting and no batch for {max_age + 1:,.1f} s "
        f"(> watchdog.max_batch_age_seconds {max_age:,})"]
