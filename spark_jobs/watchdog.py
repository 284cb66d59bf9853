"""Stream watchdog: is each streaming query alive and keeping up with Kafka?

    python -m spark_jobs.watchdog [--entity trades|quotes ...] [--now ISO8601-UTC] [--json PATH]

For each query of each entity (bronze_<entity>, silver_<entity>; default: every entity) it reads the query's
checkpoint on the object store (settings.lake_uri(entity.checkpoint(query))), with boto3, no Spark:
- the newest commits/<N> file: its LastModified is when the last micro-batch finished (the batch age is
  now - LastModified);
- offsets/<N>, Spark's offset log of that batch ("v1", a metadata JSON line, then one JSON line per source:
  {"<topic>": {"<partition>": <next offset to read>}}): where the query has read up to;
and asks Kafka for the topic's end offsets (AdminClient.list_offsets). lag = sum over partitions of
end offset - checkpointed offset (a partition the checkpoint does not know yet counts from its earliest offset).

Healthy (assess()) unless
- lag > watchdog.max_consumer_lag: too far behind, however recent its last batch; or
- lag > 0 and the batch age > watchdog.max_batch_age_seconds: records are waiting and nothing is being committed
  (a stopped, hung or crashed query).
An idle query that has read everything (lag 0) is healthy however old its last batch: outside market hours
nothing arrives and the stream commits nothing. Both limits are inclusive (age == max, lag == max are healthy).
A query that has started but committed no batch yet is judged from its checkpoint's creation time and the
starting offsets it resolved (sources/0/0). Unhealthy as well, with the reason: no checkpoint at all (the query
never ran there), a checkpoint ahead of the topic (the topic was recreated), the topic missing, Kafka or the object
store unreachable.

Then the heartbeats (conf/heartbeat.py): the newest record of each sender on kafka.heartbeats_topic (a consumer
assigned to every partition from its start to its end offset, no consumer group, nothing committed; the topic is
compacted, so small). Unhealthy when the stream's heartbeat is missing or older than
watchdog.max_heartbeat_age_seconds (an idle market still has a live stream sending heartbeats), and when a producer
heartbeat is that old, unless it is the final heartbeat of a producer that stopped ("stopped": true). A heartbeat
of the future (a clock ahead) counts as fresh.

Each query's lag is also given in seconds (lag_seconds): the age of the oldest record it has not read, from that
record's Kafka timestamp (0 when nothing waits).

Prints one line per query and one line per reason, the heartbeats (a line each, their reasons and counts), then a
summary line; --json writes the full result; with monitoring.pushgateway_url set, the results also go to the
Pushgateway as gauges (spark_jobs/lib/pushed_metrics.py) for the alert rules of conf/prometheus. Exit 0 all healthy,
1 any unhealthy, 2 bad configuration or arguments.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from conf.heartbeat import (STREAM_SENDER, Heartbeat, Verdict, assess_heartbeats,
                            parse_heartbeat, render_verdict)
from conf.kafka_security import client_config
from conf.preflight import s3_client
from conf.settings import ConfigError, Settings, load_settings
from spark_jobs.lib.hours import parse_utc as parse_now
from spark_jobs.lib.logs import LOG_FORMAT
from spark_jobs.lib.pushed_metrics import WATCHDOG_JOB, push, watchdog_samples
from spark_jobs.lib.transforms import ENTITIES, Entity
from spark_jobs.lib.checkpoints import (KAFKA_TIMEOUT_SECONDS, QUERIES, CheckFailed, list_checkpoint, newest_batch,
                                       parse_offset_log, read_text, resume_position, topic_offsets)

LOGGER_NAME = "stocklake.watchdog"
log = logging.getLogger(LOGGER_NAME)


def assess(batch_age_seconds: float, lag: int, max_batch_age_seconds: float,
           max_consumer_lag: int) -> tuple[bool, list[str]]:
    """(healthy, reasons) of a query whose newest batch is batch_age_seconds old and which has `lag` records
    left to read."""
    reasons = []
    if lag > max_consumer_lag:
        reasons.append(f"consumer lag {lag:,} records > watchdog.max_consumer_lag {max_consumer_lag:,}")
    if lag > 0 and batch_age_seconds > max_batch_age_seconds:
        reasons.append(f"stalled: {lag:,} records waiting and no batch for {batch_age_seconds:,.1f} s "
                       f"(> watchdog.max_batch_age_seconds {max_batch_age_seconds:,})")
    return not reasons, reasons


def consumer_lag(checkpointed: dict[int, int], earliest: dict[int, int],
                 latest: dict[int, int]) -> tuple[int, dict[int, int], list[str]]:
    """(lag, lag by partition, problems): records in the topic the query has not read yet."""
    by_partition, problems = {}, []
    for partition, end in sorted(latest.items()):
        start = checkpointed.get(partition, earliest.get(partition, 0))
        if start > end:
            problems.append(f"partition {partition}: checkpoint offset {start:,} is past the topic's end offset "
                            f"{end:,} (topic recreated or truncated?)")
            continue
        by_partition[partition] = end - start
    gone = sorted(set(checkpointed) - set(latest))
    if gone:
        problems.append(f"partitions {gone} are in the checkpoint but not in the topic")
    return sum(by_partition.values()), by_partition, problems


# ---- the object store and Kafka ---------------------------------------------------------------------------------


def oldest_unread_time(settings: Settings, topic: str, waiting: dict[int, int],
                       timeout: float = KAFKA_TIMEOUT_SECONDS) -> datetime | None:
    """The Kafka timestamp of the oldest record a query has not read: the record at its position in each partition
    of `waiting` ({partition: the query's position}, partitions with records waiting; a position retention already
    deleted reads from the earliest record). None when nothing waits."""
    from confluent_kafka import Consumer, TopicPartition

    waiting = dict(waiting)  # partitions still to read, emptied as their first record arrives
    if not waiting:
        return None
    consumer = Consumer(client_config(settings, **{"group.id": "stocklake-watchdog", "enable.auto.commit": False,
                                                   "enable.auto.offset.store": False,
                                                   "auto.offset.reset": "earliest"}))
    oldest_ms = None
    try:
        consumer.assign([TopicPartition(topic, p, position) for p, position in waiting.items()])
        deadline = time.monotonic() + timeout
        while waiting and time.monotonic() < deadline:
            message = consumer.poll(1.0)
            if message is None or message.error() is not None or message.partition() not in waiting:
                continue
            waiting.pop(message.partition())
            consumer.pause([TopicPartition(topic, message.partition())])
            stamp = message.timestamp()[1]
            oldest_ms = stamp if oldest_ms is None else min(oldest_ms, stamp)
    finally:
        consumer.close()
    if waiting:
        raise CheckFailed(f"timed out reading the oldest unread records of {topic} (partitions {sorted(waiting)})")
    return None if oldest_ms is None else datetime.fromtimestamp(oldest_ms / 1000, timezone.utc)


def read_heartbeats(settings: Settings, timeout: float = KAFKA_TIMEOUT_SECONDS) -> dict[str, Heartbeat | str]:
    """{sender: its newest heartbeat, or why that record could not be read} from the heartbeat topic, read from
    the start to the end offsets it has now. Tombstones (null values) remove their key; records without a key are
    not heartbeats and are skipped."""
    from confluent_kafka import Consumer

    topic = settings.kafka.heartbeats_topic
    # assign(), never subscribe(): no group is joined and nothing is committed (group.id is only librdkafka's due).
    consumer = Consumer(client_config(settings, **{"group.id": "stocklake-watchdog", "enable.auto.commit": False,
                                                   "enable.auto.offset.store": False}))
    try:
        ends, start = _heartbeat_offsets(consumer, topic, timeout)
        newest = _read_to_ends(consumer, topic, ends, start, timeout) if ends else {}
    finally:
        consumer.close()
    result: dict[str, Heartbeat | str] = {}
    for key, (partition, offset, value) in newest.items():
        try:
            result[key] = parse_heartbeat(value, key)
        except ValueError as exc:
            result[key] = f"partition {partition} offset {offset}: {exc}"
    return result


def _heartbeat_offsets(consumer, topic: str, timeout: float) -> tuple[dict[int, int], list]:
    """({partition: end offset}, [TopicPartition at its start]) of the topic's partitions that hold records."""
    from confluent_kafka import KafkaException, TopicPartition

    try:
        metadata = consumer.list_topics(topic, timeout=timeout).topics.get(topic)
    except KafkaException as exc:
        raise CheckFailed(f"Kafka unreachable: {exc}") from None
    if metadata is None or metadata.error is not None or not metadata.partitions:
        raise CheckFailed(f"heartbeat topic {topic} does not exist (kafka.heartbeats_topic)")
    ends, start = {}, []
    for partition in sorted(metadata.partitions):
        try:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=timeout)
        except KafkaException as exc:
            raise CheckFailed(f"cannot list the offsets of {topic}: {exc}") from None
        if high > low:
            ends[partition] = high
            start.append(TopicPartition(topic, partition, low))
    return ends, start


def _read_to_ends(consumer, topic: str, ends: dict[int, int], start: list,
                  timeout: float) -> dict[str, tuple[int, int, bytes]]:
    """{key: (partition, offset, value)} of each key's newest record up to the end offsets (tombstones remove it)."""
    from confluent_kafka import TopicPartition

    newest: dict[str, tuple[int, int, bytes]] = {}
    consumer.assign(start)
    deadline = time.monotonic() + timeout
    next_offset = {tp.partition: tp.offset for tp in start}
    while ends:
        if time.monotonic() > deadline:
            raise CheckFailed(f"timed out reading {topic} (partitions {sorted(ends)} not read to their end)")
        # consume() returns early only with all it asked for: ask for what is left (compaction's gaps aside).
        left = sum(end - next_offset[p] for p, end in ends.items())
        messages = consumer.consume(num_messages=max(1, min(1000, left)), timeout=1)
        for message in messages:
            if message.error() is not None:
                raise CheckFailed(f"cannot read {topic}: {message.error().str()}")
            key = message.key()
            if key is not None:
                key_text = key.decode("utf-8", errors="replace")
                if message.value() is None:
                    newest.pop(key_text, None)
                else:
                    newest[key_text] = (message.partition(), message.offset(), message.value())
            next_offset[message.partition()] = message.offset() + 1
            if message.offset() + 1 >= ends.get(message.partition(), 0):
                ends.pop(message.partition(), None)
        if not messages and ends:
            # A compacted partition may end in offsets no record holds any more: where the reader is counts.
            for tp in consumer.position([TopicPartition(topic, p) for p in ends]):
                if tp.offset >= ends[tp.partition]:
                    ends.pop(tp.partition, None)
    return newest


def check_heartbeats(settings: Settings, now: datetime) -> list[Verdict]:
    topic = settings.kafka.heartbeats_topic
    try:
        newest = read_heartbeats(settings)
    except CheckFailed as exc:
        return [Verdict(STREAM_SENDER, False, "unreadable", None, [f"cannot read the heartbeats: {exc}"], None)]
    return assess_heartbeats(newest, now, settings.watchdog.max_heartbeat_age_seconds, topic)


# ---- the job ----------------------------------------------------------------------------------------------------

def check_query(settings: Settings, s3, admin, entity: Entity, query: str, now: datetime) -> dict:
    name = f"{query}_{entity.name}"
    checkpoint = settings.lake_uri(entity.checkpoint(query))
    topic = settings.kafka[entity.topic_setting]
    bucket, prefix = settings.lake.bucket, entity.checkpoint(query) + "/"
    report: dict[str, Any] = {"query": name, "entity": entity.name, "checkpoint": checkpoint, "topic": topic,
                              "batch_id": None, "last_batch_time": None, "batch_age_seconds": None,
                              "checkpoint_offsets": None, "end_offsets": None, "lag": None, "lag_seconds": None,
                              "reasons": []}
    try:
        objects = list_checkpoint(s3, bucket, prefix)
        if not objects:
            report["reasons"].append(f"no checkpoint at {checkpoint}: the query has never run here")
            return {**report, "healthy": False}
        report["batch_id"] = newest_batch(objects, "commits")  # reported even when its offset log is missing
        _, offset_log, finished = resume_position(objects, checkpoint)
        offsets = parse_offset_log(read_text(s3, bucket, prefix + offset_log))
        if topic not in offsets:
            raise CheckFailed(f"the checkpoint reads {', '.join(sorted(offsets)) or 'no topic'}, not {topic}")
        earliest, latest = topic_offsets(admin, topic)
        lag, lag_by_partition, problems = consumer_lag(offsets[topic], earliest, latest)
        oldest_unread = oldest_unread_time(settings, topic, {p: latest[p] - n for p, n in lag_by_partition.items()
                                                             if n > 0})
    except CheckFailed as exc:
        report["reasons"].append(str(exc))
        return {**report, "healthy": False}
    except ValueError as exc:  # an offset log we cannot parse
        report["reasons"].append(f"{checkpoint}: {exc}")
        return {**report, "healthy": False}

    age = (now - finished).total_seconds()
    healthy, reasons = assess(age, lag, settings.watchdog.max_batch_age_seconds, settings.watchdog.max_consumer_lag)
    # A record stamped in the future (a producer's clock ahead) is not behind.
    lag_seconds = 0.0 if oldest_unread is None else max(0.0, (now - oldest_unread).total_seconds())
    report.update(last_batch_time=finished.isoformat(), batch_age_seconds=round(age, 3),
                  lag_seconds=round(lag_seconds, 3),
                  checkpoint_offsets={str(p): o for p, o in sorted(offsets[topic].items())},
                  end_offsets={str(p): o for p, o in sorted(latest.items())},
                  lag=lag, lag_by_partition={str(p): n for p, n in lag_by_partition.items()},
                  reasons=reasons + problems, healthy=healthy and not problems)
    return report


def render(report: dict) -> str:
    name = report["query"]
    if report["batch_age_seconds"] is None:
        head = f"{name}: {'healthy' if report['healthy'] else 'UNHEALTHY'}"
    else:
        batch = f"batch {report['batch_id']}" if report["batch_id"] is not None else "no batch yet"
        head = (f"{name}: {'healthy' if report['healthy'] else 'UNHEALTHY'}: last {batch} "
                f"{report['batch_age_seconds']:,.0f} s ago, lag {report['lag']:,} on {report['topic']}")
    return "\n".join([head, *[f"  {name}: {reason}" for reason in report["reasons"]]])


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m spark_jobs.watchdog", description=__doc__.splitlines()[0])
    parser.add_argument("--entity", choices=list(ENTITIES), action="append",
                        help="an entity whose queries to check; repeat for several (default: all)")
    parser.add_argument("--now", type=parse_now, help="the time batch ages are measured at (default: now)")
    parser.add_argument("--json", type=Path, help="also write the full result as JSON here")
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    try:
        args = parse_args(argv)
    except SystemExit as exc:  # argparse printed the one-line error (or --help): hand back its exit code
        return int(exc.code or 0)
    logging.basicConfig(level=logging.WARNING, format=LOG_FORMAT)
    log.setLevel(logging.INFO)
    now = args.now or datetime.now(timezone.utc)
    try:
        settings = load_settings()
        s3 = s3_client(settings)
    except ConfigError as exc:
        print(f"watchdog: configuration error: {exc}", file=sys.stderr)
        return 2
    from confluent_kafka.admin import AdminClient

    admin = AdminClient(client_config(settings))
    reports = []
    for entity_name in dict.fromkeys(args.entity or ENTITIES):
        for query in QUERIES:
            report = check_query(settings, s3, admin, ENTITIES[entity_name], query, now)
            log.info(json.dumps({"event": "query_checked", **{k: report[k] for k in (
                "query", "healthy", "batch_id", "batch_age_seconds", "lag", "reasons")}}))
            reports.append(report)
    verdicts = check_heartbeats(settings, now)
    for verdict in verdicts:
        log.info(json.dumps({"event": "heartbeat_checked", **{k: v for k, v in verdict.as_dict().items()
                                                              if k != "heartbeat"}}))
    for report in reports:
        print(render(report))
    for verdict in verdicts:
        print(render_verdict(verdict))
    unhealthy = [r["query"] for r in reports if not r["healthy"]]
    failing = [f"heartbeat {v.sender}" for v in verdicts if not v.healthy]
    print(f"stream_watchdog: {len(reports) - len(unhealthy)}/{len(reports)} queries healthy, "
          f"{len(verdicts) - len(failing)}/{len(verdicts)} heartbeats ok"
          + (f"; UNHEALTHY: {', '.join(unhealthy + failing)}" if unhealthy or failing else ""))
    push(settings.monitoring.pushgateway_url, WATCHDOG_JOB, watchdog_samples(reports, verdicts, now.timestamp()))
    if args.json:
        args.json.write_text(json.dumps({"healthy": not (unhealthy or failing), "now": now.isoformat(),
                                         "queries": reports, "heartbeats": [v.as_dict() for v in verdicts]},
                                        indent=2))
    return 1 if unhealthy or failing else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
