"""Spark checkpoints in the object store and the Kafka positions they hold: what the watchdog and the stream's
data-loss check read (the metadata, commit, offset and source logs; never state/), and the topics' offsets."""
from __future__ import annotations

import json
import re
from typing import Any


QUERIES = ("bronze", "silver")


KAFKA_TIMEOUT_SECONDS = 15.0


BATCH_FILE = re.compile(r"^\d+$")


class CheckFailed(Exception):
    """The check itself could not be made (Kafka or the object store unreachable, topic missing): unhealthy."""


def parse_offset_log(text: str) -> dict[str, dict[int, int]]:
    """Spark's offset log file (offsets/<N>, or sources/0/0 which starts with a NUL byte): the offsets of every
    Kafka source in it, {topic: {partition: next offset to read}}."""
    lines = text.lstrip("\x00").splitlines()
    if not lines or not lines[0].startswith("v"):
        raise ValueError(f"not a Spark offset log (first line {lines[0][:20] if lines else ''!r})")
    offsets: dict[str, dict[int, int]] = {}
    for line in lines[1:]:
        try:
            record = json.loads(line)
        except ValueError:
            continue  # "-" marks a source without offsets in that batch
        if not isinstance(record, dict):
            continue
        for topic, partitions in record.items():
            # The metadata line (batchWatermarkMs, conf, ...) is the one whose values are not partition maps.
            if isinstance(partitions, dict) and partitions and all(k.isdigit() for k in partitions):
                offsets.setdefault(topic, {}).update({int(p): int(o) for p, o in partitions.items()})
    return offsets


# What the checks read of a checkpoint; not state/, whose RocksDB files run to thousands of objects.
CHECKPOINT_PARTS = ("metadata", "commits/", "offsets/", "sources/")


def list_checkpoint(s3, bucket: str, prefix: str) -> dict[str, Any]:
    """{relative key: LastModified} of the checkpoint's metadata, commit, offset and source logs."""
    from botocore.exceptions import BotoCoreError, ClientError

    objects = {}
    try:
        for part in CHECKPOINT_PARTS:
            for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix + part):
                for item in page.get("Contents", []):
                    objects[item["Key"][len(prefix):]] = item["LastModified"]
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "NoSuchBucket":
            return {}
        raise CheckFailed(f"cannot list s3://{bucket}/{prefix}: {exc}") from None
    except BotoCoreError as exc:
        raise CheckFailed(f"object store unreachable: {exc}") from None
    return objects


def read_text(s3, bucket: str, key: str) -> str:
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        return s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode("utf-8", errors="replace")
    except (BotoCoreError, ClientError) as exc:
        raise CheckFailed(f"cannot read s3://{bucket}/{key}: {exc}") from None


def newest_batch(objects: dict[str, Any], log_dir: str) -> int | None:
    """Highest batch id in commits/ or offsets/ (Spark's temporary files have other names)."""
    ids = [int(name) for key in objects if key.startswith(log_dir + "/")
           for name in [key[len(log_dir) + 1:]] if BATCH_FILE.match(name)]
    return max(ids) if ids else None


def resume_position(objects: dict[str, Any], checkpoint: str) -> tuple[int | None, str, Any]:
    """Where a query resumes, from the listing of its checkpoint: (its last committed batch, or None before the
    first; the offset log holding the offsets it resumes from; when that batch finished, or the checkpoint was made
    when none has). CheckFailed when the checkpoint lacks the offset log."""
    batch = newest_batch(objects, "commits")
    if batch is not None:
        if f"offsets/{batch}" not in objects:
            raise CheckFailed(f"commits/{batch} has no offsets/{batch} in {checkpoint}")
        return batch, f"offsets/{batch}", objects[f"commits/{batch}"]
    # Started, nothing committed yet: where it starts, and when the checkpoint was made.
    if "sources/0/0" not in objects:
        raise CheckFailed(f"no committed batch and no starting offsets in {checkpoint}")
    return None, "sources/0/0", objects.get("metadata") or min(objects.values())


def topic_offsets(admin, topic: str) -> tuple[dict[int, int], dict[int, int]]:
    """(earliest, latest) offset by partition of a topic."""
    from confluent_kafka import KafkaException, TopicPartition
    from confluent_kafka.admin import OffsetSpec

    try:
        metadata = admin.list_topics(topic, timeout=KAFKA_TIMEOUT_SECONDS).topics.get(topic)
    except KafkaException as exc:
        raise CheckFailed(f"Kafka unreachable: {exc}") from None
    if metadata is None or metadata.error is not None or not metadata.partitions:
        raise CheckFailed(f"topic {topic} does not exist"
                          + (f" ({metadata.error.str()})" if metadata is not None and metadata.error else ""))
    result = {}
    for spec_name, spec in (("earliest", OffsetSpec.earliest()), ("latest", OffsetSpec.latest())):
        futures = admin.list_offsets({TopicPartition(topic, p): spec for p in metadata.partitions},
                                     request_timeout=KAFKA_TIMEOUT_SECONDS)
        try:
            result[spec_name] = {tp.partition: future.result().offset for tp, future in futures.items()}
        except KafkaException as exc:
            raise CheckFailed(f"cannot list the {spec_name} offsets of {topic}: {exc}") from None
    return result["earliest"], result["latest"]
