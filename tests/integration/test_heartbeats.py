"""The producer's heartbeats on the real Kafka, and the watchdog's verdict on them.

The stream's heartbeats are checked in tests/integration/test_watchdog.py, on the stream run that test already makes
(a Spark start costs 30-60 s). The helpers here read a namespace's heartbeat topic independently of the watchdog.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import uuid
from datetime import datetime, timedelta, timezone

import pytest
from confluent_kafka import Consumer, TopicPartition

from conf.settings import Settings
from spark_jobs.watchdog import main as watchdog
from tests.integration.stack import REPO, expected_records, producer_args, run_producer, wait_for

pytestmark = pytest.mark.integration


def heartbeat_records(settings: Settings) -> list[dict]:
    """Every heartbeat on the namespace's topic (one partition), in offset order, each with its key as "_key"."""
    topic = settings.kafka.heartbeats_topic
    consumer = Consumer({"bootstrap.servers": settings.kafka.bootstrap_servers,
                         "group.id": f"heartbeat-test-{uuid.uuid4().hex}", "enable.auto.commit": False})
    try:
        low, high = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=30)
        consumer.assign([TopicPartition(topic, 0, low)])
        records, offset = [], low
        while offset < high:
            messages = consumer.consume(num_messages=min(100, high - offset), timeout=10)
            assert messages, f"no record of {topic} past offset {offset} (end {high})"
            for message in messages:
                assert message.error() is None, message.error()
                records.append({**json.loads(message.value()), "_key": message.key().decode()})
                offset = message.offset() + 1
        return records
    finally:
        consumer.close()


def iso_ms(epoch_ms: int) -> str:
    """Epoch milliseconds as the heartbeats write times: 2026-01-05T15:00:01.982Z."""
    moment = datetime(1970, 1, 1, tzinfo=timezone.utc) + timedelta(milliseconds=epoch_ms)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{epoch_ms % 1000:03d}Z"


def newest_valid_trade_ts(env: dict[str, str], args: list[str]) -> int:
    """The newest trade_ts among the valid trades these producer arguments send. The tests pick seeds whose newest
    stamped record is a malformed one (asserted here), which the heartbeats must leave out."""
    records = expected_records(env, args)
    newest_valid = max(record.trade_ts for record in records if record.kind != "malformed")
    assert max(record.trade_ts for record in records if record.trade_ts is not None) > newest_valid
    return newest_valid


def producer_counts(summary: dict) -> dict[str, int]:
    """What the producer's final heartbeat must say, from its run summary."""
    return {"sent": summary["sent_trades_topic"], "dlq": summary["sent_dlq"], "delivered": summary["delivered"],
            "failed": summary["delivery_failures"], "undelivered": summary["undelivered"]}


def run_watchdog(tmp_path, now: datetime) -> tuple[int, dict[str, dict]]:
    """The watchdog's exit code and its heartbeat verdicts by sender (--json)."""
    out = tmp_path / f"watchdog-{uuid.uuid4().hex[:6]}.json"
    code = watchdog(["--entity", "trades", "--now", now.isoformat(), "--json", str(out)])
    return code, {h["sender"]: h for h in json.loads(out.read_text())["heartbeats"]}


def test_producer_heartbeats_carry_its_summary_and_a_killed_producer_goes_stale(isolated, tmp_path, capsys):
    settings, env = isolated
    args = producer_args(3000, seed=75, start_time="2026-01-05T15:00:00", late_ratio=0.05, duplicate_ratio=0.02,
                         malformed_ratio=0.02)
    summary = run_producer(env, args, tmp_path)
    assert summary["sent_dlq"] == 0 and summary["sent_trades_topic"] == 3000  # malformed ones go to the topic

    records = heartbeat_records(settings)
    assert {r["_key"] for r in records} == {"producer:simulator"}
    first, final = records[0], records[-1]
    # The run's first heartbeat, before anything was sent; the last, after the final flush.
    assert (first["stopped"], first["last_event_time"], first["counts"]) == (
        False, None, {"sent": 0, "dlq": 0, "delivered": 0, "failed": 0})
    assert [r["stopped"] for r in records] == [False] * (len(records) - 1) + [True]
    assert final["counts"] == producer_counts(summary)
    assert final["last_event_time"] == iso_ms(newest_valid_trade_ts(env, args))
    assert (final["sender"], final["host"]) == ("producer:simulator", socket.gethostname())
    assert first["pid"] == final["pid"] != os.getpid()
    assert first["sent_at"] <= final["last_batch_time"] <= final["sent_at"]

    # A producer that dies without its final heartbeat: heartbeats every 0.2 s, then SIGKILL.
    paced = producer_args(1, seed=12, start_time="2026-01-05T16:00:00")
    paced[paced.index("--count"):paced.index("--count") + 2] = ["--duration", "600"]
    paced.remove("--no-pacing")
    proc = subprocess.Popen([sys.executable, "-m", "producer", *paced], cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL,
                            env={**env, "STOCKLAKE_PRODUCER_HEARTBEAT_INTERVAL_SECONDS": "0.2"})
    try:
        wait_for(lambda: sum(1 for r in heartbeat_records(settings) if r["pid"] == proc.pid
                             and r["counts"]["delivered"] > 0) >= 1,
                 "a heartbeat of the paced producer after its first delivery", timeout=120)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    last = heartbeat_records(settings)[-1]
    assert (last["pid"], last["stopped"]) == (proc.pid, False)
    assert last["counts"]["sent"] >= last["counts"]["delivered"] > 0
    sent_at = datetime.fromisoformat(last["sent_at"])
    max_age = settings.watchdog.max_heartbeat_age_seconds

    # At the limit: still fresh. The stream never ran in this namespace: its heartbeat is missing either way.
    code, heartbeats = run_watchdog(tmp_path, sent_at + timedelta(seconds=max_age))
    assert code == 1
    assert (heartbeats["producer:simulator"]["healthy"], heartbeats["producer:simulator"]["state"]) == (True, "fresh")
    topic = settings.kafka.heartbeats_topic
    assert (heartbeats["stream"]["state"], heartbeats["stream"]["reasons"]) == (
        "missing", [f"no heartbeat on {topic}: not running, or its heartbeat is off (0 s interval)"])
    capsys.readouterr()
    # Past it: the killed producer is stale, by name.
    code, heartbeats = run_watchdog(tmp_path, sent_at + timedelta(seconds=max_age + 1))
    assert code == 1
    producer = heartbeats["producer:simulator"]
    assert (producer["healthy"], producer["state"], producer["age_seconds"]) == (False, "stale", max_age + 1)
    assert producer["reasons"] == [f"stale: last heartbeat {max_age + 1:,.1f} s ago "
                                   f"(> watchdog.max_heartbeat_age_seconds {max_age:,})"]
    assert producer["heartbeat"]["pid"] == proc.pid
    out = capsys.readouterr().out.splitlines()
    assert (f"  heartbeat producer:simulator: stale: last heartbeat {max_age + 1:,.1f} s ago "
            f"(> watchdog.max_heartbeat_age_seconds {max_age:,})") in out
    assert out[-1] == ("stream_watchdog: 0/2 queries healthy, 0/2 heartbeats ok; UNHEALTHY: bronze_trades, "
                       "silver_trades, heartbeat stream, heartbeat producer:simulator")
