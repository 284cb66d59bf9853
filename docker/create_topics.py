"""Create the pipeline's Kafka topics: the topic-init one-shot job of docker/compose.yaml.

    python docker/create_topics.py

Names, partitions, replication factor and retention are the pipeline's settings (conf/pipeline.yaml with the
STOCKLAKE_* overrides compose sets: the three brokers, replication factor 3). Each topic gets
min.insync.replicas = replication factor - 1 (2 of 3): a write acknowledged with acks=all (the producer's setting)
is on two brokers, and the topic stays writable with one broker down. The heartbeat topic (kafka.heartbeats_topic)
is compacted (cleanup.policy=compact: it keeps the newest record of each sender, whatever its age) and has one
partition: a few small records, read whole by the watchdog.

Safe to run again: a topic that exists is left as it is; one whose partition count differs from the settings is
reported (partitions cannot shrink, and adding some would move symbols to other partitions). Exit status 0 when
every topic exists afterwards, 1 otherwise, 2 for a configuration error.
"""
from __future__ import annotations

import sys
from typing import Any

from conf.kafka_security import client_config
from conf.settings import ConfigError, Settings, load_settings

TIMEOUT_S = 30.0


def log(message: str) -> None:
    print(f"create_topics: {message}", flush=True)


def topic_specs(settings: Settings) -> list[dict[str, Any]]:
    """The data topics: trades, quotes and the DLQ, as the settings describe them."""
    kafka = settings.kafka
    config = {"retention.ms": str(kafka.retention_ms),
              "min.insync.replicas": str(max(1, kafka.replication_factor - 1))}
    return [{"name": name, "partitions": kafka.partitions, "replication_factor": kafka.replication_factor,
             "config": dict(config)}
            for name in (kafka.trades_topic, kafka.quotes_topic, kafka.dlq_topic)]


def heartbeat_topic_spec(settings: Settings) -> dict[str, Any]:
    """The liveness topic the producer and the stream write and the watchdog reads: compacted, one partition."""
    kafka = settings.kafka
    return {"name": kafka.heartbeats_topic, "partitions": 1, "replication_factor": kafka.replication_factor,
            "config": {"cleanup.policy": "compact", "min.insync.replicas": str(max(1, kafka.replication_factor - 1))}}


def create_topics(settings: Settings, timeout: float = TIMEOUT_S) -> int:
    from confluent_kafka import KafkaError, KafkaException
    from confluent_kafka.admin import AdminClient, NewTopic

    specs = topic_specs(settings) + [heartbeat_topic_spec(settings)]
    admin = AdminClient(client_config(settings))
    try:
        metadata = admin.list_topics(timeout=timeout)
    except KafkaException as exc:
        log(f"error: cannot reach Kafka at {settings.kafka.bootstrap_servers}: {exc.args[0].str()}")
        return 1
    replication = settings.kafka.replication_factor
    if len(metadata.brokers) < replication:
        log(f"error: kafka.replication_factor is {replication} but the cluster at "
            f"{settings.kafka.bootstrap_servers} has {len(metadata.brokers)} broker(s)")
        return 1
    missing = [spec for spec in specs if spec["name"] not in metadata.topics]
    status = 0
    if missing:
        new = [NewTopic(spec["name"], num_partitions=spec["partitions"], replication_factor=spec["replication_factor"],
                        config=spec["config"]) for spec in missing]
        for name, future in admin.create_topics(new, operation_timeout=timeout, request_timeout=timeout).items():
            try:
                future.result()
            except KafkaException as exc:
                error = exc.args[0]
                if error.code() != KafkaError.TOPIC_ALREADY_EXISTS:  # created meanwhile by someone else: fine
                    log(f"error: creating {name} failed: {error.str()}")
                    status = 1
                    continue
            spec = next(s for s in missing if s["name"] == name)
            log(f"created {name}: {spec['partitions']} partitions, replication factor {spec['replication_factor']}, "
                f"min.insync.replicas {spec['config']['min.insync.replicas']}"
                + (", compacted" if spec["config"].get("cleanup.policy") == "compact" else ""))
    for spec in specs:
        topic = metadata.topics.get(spec["name"])
        if topic is None:
            continue
        if len(topic.partitions) != spec["partitions"]:
            log(f"warning: {spec['name']} exists with {len(topic.partitions)} partitions, the settings say "
                f"{spec['partitions']} (left as is)")
        else:
            log(f"{spec['name']} exists ({len(topic.partitions)} partitions)")
    return status


def main() -> int:
    try:
        settings = load_settings()
    except ConfigError as exc:
        log(f"configuration error: {exc}")
        return 2
    return create_topics(settings)


if __name__ == "__main__":
    sys.exit(main())
