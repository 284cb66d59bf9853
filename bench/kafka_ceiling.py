"""The bare librdkafka consume rate of a topic: the ceiling the pipeline's throughput is compared with.

One confluent-kafka Consumer in a fresh consumer group reads the topic from the earliest offset and only counts
the messages (no decoding, no writes). The clock starts when the first message arrives, so joining the group
and the first fetch's round trip are excluded (reported apart as join_seconds), and stops at the message that
makes `expected`.
"""
from __future__ import annotations

import time
import uuid

from confluent_kafka import Consumer, KafkaError, KafkaException

BATCH = 10_000


def is_data(message) -> bool:
    """True for a message carrying data; False for a partition-end notice; raises on any other error."""
    error = message.error()
    if error is None:
        return True
    if error.code() == KafkaError._PARTITION_EOF:
        return False
    raise KafkaException(error)


def consumer_config(bootstrap_servers: str) -> dict[str, object]:
    """librdkafka settings for reading a backlog as fast as the client can."""
    return {
        "bootstrap.servers": bootstrap_servers,
        "group.id": f"stocklake-bench-ceiling-{uuid.uuid4().hex}",
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
        # Big fetches: a backlog is read in few round trips (librdkafka's defaults are 50 MiB per fetch but only
        # 1 MiB per partition, which caps each round trip far below the broker's speed).
        "fetch.max.bytes": 64 * 1024 * 1024,
        "max.partition.fetch.bytes": 16 * 1024 * 1024,
        # The broker answers at once while a backlog is there; a short wait keeps the tail of the read from
        # idling for the default 500 ms when a partition runs dry.
        "fetch.wait.max.ms": 50,
        # Let the prefetch queue hold a few big fetches so the consume loop never waits on the network.
        "queued.max.messages.kbytes": 256 * 1024,
    }


def consume_all(bootstrap_servers: str, topic: str, expected: int, timeout_s: float = 300) -> dict:
    """Read `expected` messages of `topic` from the start and time it; TimeoutError if they are not all there."""
    if expected < 2:
        raise ValueError(f"expected must be at least 2 to time a rate, got {expected}")
    consumer = Consumer(consumer_config(bootstrap_servers))
    try:
        subscribed = time.monotonic()
        deadline = subscribed + timeout_s
        consumer.subscribe([topic])
        count, first_at = 0, 0.0
        while count < expected:
            if time.monotonic() > deadline:
                raise TimeoutError(f"read {count:,} of {expected:,} messages from {topic} in {timeout_s:.0f}s")
            # One message at a time until the first arrives, so the clock starts on it rather than on the end of
            # a batch; after that, batches no bigger than what is left (a batch call waits for its full size).
            wanted = 1 if count == 0 else min(BATCH, expected - count)
            for message in consumer.consume(num_messages=wanted, timeout=1):
                if not is_data(message):
                    continue
                if count == 0:
                    first_at = time.monotonic()
                count += 1
        seconds = time.monotonic() - first_at
    finally:
        consumer.close()
    # The first message starts the clock: count - 1 messages arrived within `seconds`.
    return {"events": count, "seconds": seconds, "events_per_second": (count - 1) / seconds if seconds else 0.0,
            "join_seconds": first_at - subscribed}
