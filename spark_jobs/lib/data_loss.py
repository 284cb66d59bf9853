"""Kafka data loss: records the stream's checkpoint still has to read but Kafka no longer holds.

When retention (or a deleted/recreated topic) removes records before a query read them, the query's checkpoint
points below the partition's earliest offset. Spark would fail on the first batch (failOnDataLoss stays true); the
stream checks first, before its JVM starts, and stops with one line that names the topic, the partitions, the
offset ranges and the number of records lost. The recovery runbook is in the README (Operations, "Recovering from
Kafka data loss"): replay the gap from the source if it can be, then accept it once with --accept-data-loss.

Read with boto3 and a Kafka admin client, no Spark: the checkpoint layout is the watchdog's (spark_jobs/watchdog.py).
"""
from __future__ import annotations

from dataclasses import dataclass

from conf.settings import Settings
from spark_jobs.lib.transforms import Entity
from spark_jobs.lib.checkpoints import (QUERIES, CheckFailed, list_checkpoint, parse_offset_log, read_text,
                                        resume_position, topic_offsets)


@dataclass(frozen=True)
class Gap:
    query: str
    topic: str
    partition: int
    start: int      # the next offset the query's checkpoint would read
    earliest: int   # the earliest offset Kafka still holds

    @property
    def records(self) -> int:
        return self.earliest - self.start


def gaps(query: str, topic: str, checkpointed: dict[int, int], earliest: dict[int, int]) -> list[Gap]:
    """The partitions whose next offset to read is below the earliest offset Kafka still holds."""
    return [Gap(query, topic, partition, start, earliest[partition])
            for partition, start in sorted(checkpointed.items())
            if partition in earliest and start < earliest[partition]]


def resume_offsets(s3, bucket: str, prefix: str, topic: str) -> dict[int, int] | None:
    """Where the query resumes in `topic` (checkpoints.resume_position); None when its checkpoint does not say yet
    (no checkpoint, or killed before it wrote its starting offsets): it then starts from
    stream.starting_offsets, and Spark itself reports a checkpoint it cannot use."""
    objects = list_checkpoint(s3, bucket, prefix)
    if not objects:
        return None
    try:
        _, offset_log, _ = resume_position(objects, prefix)
    except CheckFailed:
        return None
    return parse_offset_log(read_text(s3, bucket, prefix + offset_log)).get(topic)


def find_gaps(settings: Settings, s3, admin, entities: list[Entity]) -> list[Gap]:
    found: list[Gap] = []
    for entity in entities:
        topic = settings.kafka[entity.topic_setting]
        earliest = None
        for query in QUERIES:
            checkpointed = resume_offsets(s3, settings.lake.bucket, entity.checkpoint(query) + "/", topic)
            if not checkpointed:
                continue
            if earliest is None:
                earliest, _ = topic_offsets(admin, topic)
            found += gaps(f"{query}_{entity.name}", topic, checkpointed, earliest)
    return found


def describe(found: list[Gap]) -> str:
    """One line: per query and topic, the records lost and the offset ranges."""
    parts = []
    for query, topic in dict.fromkeys((g.query, g.topic) for g in found):
        mine = [g for g in found if (g.query, g.topic) == (query, topic)]
        ranges = ", ".join(f"{g.partition}: {g.start}..{g.earliest - 1}" for g in mine)
        parts.append(f"{query} has not read {sum(g.records for g in mine):,} records of {topic} that Kafka no longer "
                     f"holds (partition: offsets {ranges})")
    return "; ".join(parts)


__all__ = ["CheckFailed", "Gap", "describe", "find_gaps", "gaps", "resume_offsets"]
