"""The local services and the producer against the real broker."""
from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter, defaultdict

from confluent_kafka import Consumer, TopicPartition

from tests.integration.stack import REPO, expected_records, producer_args, run_producer


def run_services(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "scripts/services.py", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=180)


def test_services_up_is_idempotent_and_status_reports_health():
    before = run_services("status")
    assert before.returncode == 0, before.stdout + before.stderr
    again = run_services("up")
    assert again.returncode == 0, again.stderr
    assert "kafka already running" in again.stdout and "minio already running" in again.stdout
    pids = lambda out: sorted(line.split("(pid ")[1].split(")")[0] for line in out.splitlines() if "(pid " in line)  # noqa: E731
    assert pids(run_services("status").stdout) == pids(before.stdout)


def read_topic(bootstrap: str, topic: str, partitions: int) -> list:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"test-{topic}", "enable.auto.commit": False})
    consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in range(partitions)}
    messages, done = [], {p for p, end in ends.items() if end == 0}
    while len(done) < partitions:
        message = consumer.poll(10)
        assert message is not None, "topic ended early"
        assert message.error() is None, message.error()
        messages.append(message)
        if message.offset() + 1 >= ends[message.partition()]:
            done.add(message.partition())
    consumer.close()
    return messages


def test_producer_keys_by_symbol_and_routes_invalid_records_to_the_dlq(isolated, tmp_path):
    settings, env = isolated
    args = [a for a in producer_args(2000, seed=3, start_time="2026-01-05T14:30:00", duplicate_ratio=0.05,
                                     malformed_ratio=0.05) if a not in ("--malformed-target", "topic")]
    summary = run_producer(env, args, tmp_path)
    records = expected_records(env, args)
    malformed = [r for r in records if r.kind == "malformed"]
    assert summary["delivered"] == 2000 and summary["delivery_failures"] == 0
    assert summary["sent_dlq"] == len(malformed) > 0

    trades = read_topic(settings.kafka.bootstrap_servers, settings.kafka.trades_topic, settings.kafka.partitions)
    assert sorted(m.value() for m in trades) == sorted(r.value for r in records if r.kind != "malformed")
    partitions_of = defaultdict(set)
    for message in trades:
        assert message.key().decode() == json.loads(message.value())["symbol"]
        partitions_of[message.key()].add(message.partition())
    assert all(len(p) == 1 for p in partitions_of.values()), "a symbol was split across partitions"

    dlq = [json.loads(m.value()) for m in
           read_topic(settings.kafka.bootstrap_servers, settings.kafka.dlq_topic, settings.kafka.partitions)]
    assert Counter(d["reason"] for d in dlq) == Counter(r.expected_reason for r in malformed)
    assert sorted(d["raw"] for d in dlq) == sorted(r.value.decode() for r in malformed)
