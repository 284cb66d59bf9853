"""The local services and the producer against the real broker; the compose stack's topic script too."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections import Counter, defaultdict

import pytest
from confluent_kafka import Consumer, TopicPartition

from conf.settings import load_settings
from tests.integration.stack import REPO, expected_records, producer_args, run_producer

pytestmark = pytest.mark.integration
DOCKER = REPO / "docker"


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


# docker/create_topics.py (the compose stack's topic-init job) against the real local broker.
def test_topic_init_script_against_the_real_local_kafka(tmp_path):
    from confluent_kafka.admin import AdminClient, ConfigResource

    settings = load_settings()
    prefix = f"test-compose-{uuid.uuid4().hex[:8]}"
    names = {"TRADES": f"{prefix}.trades", "QUOTES": f"{prefix}.quotes", "DLQ": f"{prefix}.dlq",
             "HEARTBEATS": f"{prefix}.heartbeats"}
    env = {**os.environ, **{f"STOCKLAKE_KAFKA_{kind}_TOPIC": topic for kind, topic in names.items()}}
    admin = AdminClient({"bootstrap.servers": settings.kafka.bootstrap_servers})
    script = [sys.executable, str(DOCKER / "create_topics.py")]
    try:
        first = subprocess.run(script, env=env, capture_output=True, text=True, timeout=120)
        assert first.returncode == 0, first.stdout + first.stderr
        assert first.stdout.count("create_topics: created ") == 4
        assert f"create_topics: created {names['HEARTBEATS']}: 1 partitions, replication factor 1, " \
               f"min.insync.replicas 1, compacted" in first.stdout
        topics = admin.list_topics(timeout=10).topics
        assert {name: len(topics[name].partitions) for name in names.values()} == {
            **{name: settings.kafka.partitions for name in names.values()}, names["HEARTBEATS"]: 1}
        resources = [ConfigResource(ConfigResource.Type.TOPIC, name) for name in names.values()]
        for resource, future in admin.describe_configs(resources).items():
            config = future.result()
            if resource.name == names["HEARTBEATS"]:  # the newest heartbeat of each sender stays, whatever its age
                assert (config["min.insync.replicas"].value, config["cleanup.policy"].value) == ("1", "compact")
                continue
            assert (config["min.insync.replicas"].value, config["retention.ms"].value,
                    config["cleanup.policy"].value) == ("1", str(settings.kafka.retention_ms), "delete"), resource
        again = subprocess.run(script, env=env, capture_output=True, text=True, timeout=120)
        assert again.returncode == 0, again.stdout + again.stderr
        assert "created" not in again.stdout and again.stdout.count(" exists (") == 4
        # More replicas than brokers: refused up front, nothing created.
        other = {k: v.replace(prefix, prefix + "-rf3") if k.endswith("_TOPIC") else v for k, v in env.items()}
        refused = subprocess.run(script, env={**other, "STOCKLAKE_KAFKA_REPLICATION_FACTOR": "3"},
                                 capture_output=True, text=True, timeout=120)
        assert refused.returncode == 1
        assert "kafka.replication_factor is 3 but the cluster at" in refused.stdout
        assert not any(name.startswith(prefix + "-rf3") for name in admin.list_topics(timeout=10).topics)
    finally:
        existing = [name for name in names.values() if name in admin.list_topics(timeout=10).topics]
        for future in (admin.delete_topics(existing, operation_timeout=30).values() if existing else []):
            future.result()
