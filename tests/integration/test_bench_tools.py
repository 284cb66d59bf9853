"""bench/ building blocks against the real local Kafka, MinIO and Spark: tiny inputs, exact counts."""
from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest
from confluent_kafka import Producer

from bench.baseline import per_message_to_object_store
from bench.kafka_ceiling import consume_all
from bench.latency import LiveTailPoller, commit_latencies_ms, percentiles
from tests.integration.stack import s3_client

pytestmark = pytest.mark.integration


def produce(settings, values: list[bytes], partition: int | None = None) -> dict[tuple[int, int], bytes]:
    """Send the values to the trades topic; (partition, offset) -> value as Kafka stored them."""
    delivered: dict[tuple[int, int], bytes] = {}

    def on_delivery(error, message):
        assert error is None, error
        delivered[(message.partition(), message.offset())] = message.value()

    producer = Producer({"bootstrap.servers": settings.kafka.bootstrap_servers, "linger.ms": 5})
    for index, value in enumerate(values):
        extra = {} if partition is None else {"partition": partition}
        producer.produce(settings.kafka.trades_topic, value=value, key=str(index % 7).encode(),
                         on_delivery=on_delivery, **extra)
        producer.poll(0)
    assert producer.flush(30) == 0
    assert len(delivered) == len(values)
    return delivered


def test_consume_all_reads_every_message(isolated):
    settings, _ = isolated
    produce(settings, [json.dumps({"symbol": "AAPL", "n": n}).encode() for n in range(2000)])
    result = consume_all(settings.kafka.bootstrap_servers, settings.kafka.trades_topic, expected=2000, timeout_s=60)
    assert result["events"] == 2000
    assert result["seconds"] >= 0 and result["join_seconds"] > 0 and result["events_per_second"] >= 0
    with pytest.raises(TimeoutError, match="2,000 of 2,001"):
        consume_all(settings.kafka.bootstrap_servers, settings.kafka.trades_topic, expected=2001, timeout_s=5)


def test_per_message_writes_one_object_per_message(isolated):
    settings, _ = isolated
    values = [json.dumps({"symbol": ("AAPL", "MSFT")[n % 2], "n": n}).encode() for n in range(400)]
    values[5], values[7], values[9] = b"not json", b"[1, 2]", b'{"n": 9}'
    # One partition, so the first 300 read are exactly offsets 0..299.
    delivered = produce(settings, values, partition=0)
    s3 = s3_client(settings)
    result = per_message_to_object_store(settings.kafka.bootstrap_servers, settings.kafka.trades_topic, s3,
                                         settings.lake.bucket, "baseline", max_messages=300, timeout_s=60)
    assert result["events"] == 300 and result["seconds"] > 0 and result["events_per_second"] > 0

    objects = {item["Key"]: s3.get_object(Bucket=settings.lake.bucket, Key=item["Key"])["Body"].read()
               for page in s3.get_paginator("list_objects_v2").paginate(Bucket=settings.lake.bucket,
                                                                         Prefix="baseline/")
               for item in page.get("Contents", [])}
    folder = {5: "_unparsed", 7: "_unparsed", 9: "_unparsed"}
    assert objects == {f"baseline/{folder.get(n, ('AAPL', 'MSFT')[n % 2])}/0-{n}.json": delivered[(0, n)]
                       for n in range(300)}


def test_commit_latencies_from_the_delta_log(isolated, spark):
    settings, _ = isolated
    table = "silver/trades"
    path = settings.lake_uri(table)
    sent = [[1_767_625_200_000, 1_767_625_200_250], [1_767_625_201_000]]   # epoch ms, one list per append
    for times in sent:
        rows = [(f"e{ms}", datetime.fromtimestamp(ms / 1000, timezone.utc)) for ms in times]
        (spark.createDataFrame(rows, "event_id string, kafka_timestamp timestamp")
         .write.format("delta").mode("append").save(path))
    # The oracle is each commit's commitInfo.timestamp as Spark's own JSON reader sees it. DeltaTable.history()
    # cannot be: without in-commit timestamps it reports the log file's modification time, which S3A gives to
    # the whole second.
    log = spark.read.json(f"{path}/_delta_log/*.json").where("commitInfo IS NOT NULL")
    committed = {int(row["file"].rsplit("/", 1)[1].split(".")[0]): row["timestamp"]
                 for row in log.selectExpr("input_file_name() AS file", "commitInfo.timestamp").collect()}
    assert sorted(committed) == [0, 1]

    s3 = s3_client(settings)
    expected = sorted(committed[version] - ms for version, times in enumerate(sent) for ms in times)
    assert sorted(commit_latencies_ms(s3, settings.lake.bucket, table)) == expected
    assert sorted(commit_latencies_ms(s3, settings.lake.bucket, table, since_ms=1_767_625_200_250)) == \
        sorted([committed[0] - 1_767_625_200_250, committed[1] - 1_767_625_201_000])
    # To a reader: a version counts from when the reader first held it (version 0 seen at t0, version 1 at t1).
    t0, t1 = 1_767_625_205_000, 1_767_625_207_000
    seen = {0: t0, 1: t1}
    assert sorted(commit_latencies_ms(s3, settings.lake.bucket, table, visible_ms=seen.get)) == \
        sorted([t0 - 1_767_625_200_000, t0 - 1_767_625_200_250, t1 - 1_767_625_201_000])
    with pytest.raises(ValueError, match="version 1 of silver/trades was never seen by the reader"):
        commit_latencies_ms(s3, settings.lake.bucket, table, visible_ms={0: t0}.get)


def test_the_live_tail_poller_says_when_each_version_became_visible():
    class Tail:  # a reader whose version moves 3 -> 5 (the real one: tests/integration/test_dashboard_live_tail.py)
        versions = iter([3, 5])
        version = None

        def minutes(self, cutoff):
            self.version = next(self.versions)

    poller = LiveTailPoller(Tail(), cutoff=None, interval=3600)
    poller.poll()
    poller.poll()
    (_, first), (_, second) = poller.seen
    assert [read for read, _ in poller.seen] == [3, 5] and first <= second
    assert [poller.visible_ms(v) for v in (2, 3, 4, 5, 6)] == [first, first, second, second, None]


def test_percentiles_are_nearest_rank():
    assert percentiles(range(1, 101)) == {"p50": 50, "p95": 95, "p99": 99}
    assert percentiles([7, 1, 3], ps=(50, 100)) == {"p50": 3, "p100": 7}
    with pytest.raises(ValueError, match="empty"):
        percentiles([])
