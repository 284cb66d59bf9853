"""The per-message design many stock Kafka-to-lake pipelines use, measured as the honest peer of the Spark job.

A Python consumer polls one message at a time, parses its JSON and writes it as one object to S3/MinIO, then
commits that message's offset synchronously: at-least-once, one object and one commit per event. The clock
runs from the first message received to the last message written and committed.
"""
from __future__ import annotations

import json
import time
import uuid
from typing import Any

from confluent_kafka import Consumer

from bench.kafka_ceiling import is_data


def object_key(prefix: str, value: bytes, partition: int, offset: int) -> str:
    """Where one message goes: under its symbol, or under _unparsed when it is not a JSON object with one."""
    try:
        event = json.loads(value)
    except (ValueError, UnicodeDecodeError):
        event = None
    symbol = event.get("symbol") if isinstance(event, dict) else None
    folder = symbol if isinstance(symbol, str) and symbol and "/" not in symbol else "_unparsed"
    return f"{prefix}/{folder}/{partition}-{offset}.json"


def per_message_to_object_store(bootstrap_servers: str, topic: str, s3_client: Any, bucket: str, prefix: str,
                                max_messages: int, timeout_s: float = 300) -> dict:
    """Copy `max_messages` messages of `topic` to s3://bucket/prefix one object and one commit at a time."""
    if max_messages < 1:
        raise ValueError(f"max_messages must be at least 1, got {max_messages}")
    consumer = Consumer({
        "bootstrap.servers": bootstrap_servers,
        "group.id": f"stocklake-bench-per-message-{uuid.uuid4().hex}",
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
    })
    try:
        deadline = time.monotonic() + timeout_s
        consumer.subscribe([topic])
        count, first_at = 0, 0.0
        while count < max_messages:
            if time.monotonic() > deadline:
                raise TimeoutError(f"wrote {count:,} of {max_messages:,} messages from {topic} in {timeout_s:.0f}s")
            message = consumer.poll(timeout=1)
            if message is None or not is_data(message):
                continue
            if count == 0:
                first_at = time.monotonic()
            value = message.value() or b""
            s3_client.put_object(Bucket=bucket, Body=value,
                                 Key=object_key(prefix, value, message.partition(), message.offset()))
            consumer.commit(message=message, asynchronous=False)
            count += 1
        seconds = time.monotonic() - first_at
    finally:
        consumer.close()
    return {"events": count, "seconds": seconds, "events_per_second": count / seconds if seconds else 0.0}
