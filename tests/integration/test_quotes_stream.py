"""Quote snapshots: real Kafka -> spark-submit stream.py --entity quotes -> Delta on real MinIO, counted exactly."""
from __future__ import annotations

from collections import Counter
from datetime import datetime, timezone

import pytest
from confluent_kafka import Producer
from delta.tables import DeltaTable

from conf.contracts.events import encode, make_quote_event
from spark_jobs.lib.listener import read_progress
from spark_jobs.report import account
from spark_jobs.lib.transforms import QUOTES, TRADES
from tests.integration.stack import run_stream_in_session

pytestmark = pytest.mark.integration

SYMBOLS = {"AAPL": 189.5, "MSFT": 415.2, "BRK.B": 412.0}  # previous close per symbol
POLLS = 10                                                 # one snapshot per symbol every 15 s
FIRST_POLL_MS = int(datetime(2026, 1, 5, 14, 30, tzinfo=timezone.utc).timestamp() * 1000)


def snapshot(symbol: str, poll: int) -> dict:
    previous_close = SYMBOLS[symbol]
    current = round(previous_close + 0.05 * (poll + 1), 2)
    if symbol == "BRK.B" and poll == 0:
        # The contract lets change and percent change be null: one snapshot without them.
        change = percent_change = None
    else:
        change = round(current - previous_close, 2)
        percent_change = round(100 * change / previous_close, 4)
    return make_quote_event("finnhub", symbol, FIRST_POLL_MS + poll * 15_000, current=current, change=change,
                            percent_change=percent_change, high=round(current + 1.0, 2),
                            low=round(previous_close - 1.0, 2), open=round(previous_close + 0.1, 2),
                            previous_close=previous_close)


VALID = [snapshot(symbol, poll) for poll in range(POLLS) for symbol in SYMBOLS]
# An unchanged quote polled again is the same snapshot, byte for byte: Silver keeps it once.
REPOLLED = VALID[:4] + VALID[-2:]
INVALID = [  # (payload, the stream's quarantine reason)
    (encode({**VALID[0], "current": 0}), "current:exclusiveMinimum"),
    (encode({**VALID[1], "quote_ts": VALID[1]["quote_ts"] + 0.5}), "quote_ts:type"),
    (encode({**VALID[2], "symbol": "brk.b"}), "symbol:pattern"),
    (encode({**VALID[3], "volume": 1200}), "additionalProperties"),
    (encode({name: value for name, value in VALID[4].items() if name != "change"}), "change:required"),
    (b'{"event_id": "', "malformed_json"),
    # Stamped 2099: far past its Kafka timestamp (now), so it must neither enter Silver nor move the watermark.
    (encode({**VALID[5], "quote_ts": 4070908800000}), "quote_ts:future"),
]


def publish(settings) -> None:
    producer = Producer({"bootstrap.servers": settings.kafka.bootstrap_servers, "enable.idempotence": True})
    for event in VALID + REPOLLED:
        producer.produce(settings.kafka.quotes_topic, key=event["symbol"].encode(), value=encode(event))
    for payload, _ in INVALID:
        producer.produce(settings.kafka.quotes_topic, key=b"AAPL", value=payload)
    # A trade on the trades topic: a stream started for quotes only must leave it alone.
    producer.produce(settings.kafka.trades_topic, key=b"AAPL", value=b"{}")
    assert producer.flush(30) == 0


def test_quotes_land_in_bronze_silver_and_quarantine_exactly(spark, isolated, tmp_path):
    settings, env = isolated
    log = tmp_path / "stream.log"
    publish(settings)
    published = len(VALID) + len(REPOLLED) + len(INVALID)

    run_stream_in_session(spark, env, log, entities=("quotes",))

    def table(layer):
        return spark.read.format("delta").load(settings.lake_uri(QUOTES.table(layer)))

    bronze, silver, quarantine = table("bronze"), table("silver"), table("quarantine")
    assert bronze.count() == published == 43
    assert bronze.select("partition", "offset").distinct().count() == published
    assert [row["topic"] for row in bronze.select("topic").distinct().collect()] == [settings.kafka.quotes_topic]

    silver_ids = [row["event_id"] for row in silver.select("event_id").collect()]
    assert len(silver_ids) == len(VALID) == 30
    assert set(silver_ids) == {event["event_id"] for event in VALID}

    reasons = {row["reason"]: row["count"] for row in quarantine.groupBy("reason").count().collect()}
    assert reasons == dict(Counter(reason for _, reason in INVALID))

    # One row, field by field, and its lineage back to the exact Bronze record.
    msft = snapshot("MSFT", 3)
    row = silver.where(f"event_id = '{msft['event_id']}'").collect()
    assert len(row) == 1
    row = row[0].asDict()
    assert {name: row[name] for name in msft} == {
        "event_id": msft["event_id"], "schema_version": 1, "source": "finnhub", "symbol": "MSFT",
        "current": 415.4, "change": 0.2, "percent_change": 0.0482, "high": 416.4, "low": 414.2, "open": 415.3,
        "previous_close": 415.2, "quote_ts": FIRST_POLL_MS + 45_000}
    assert (row["quote_time"], row["date"], row["hour"], row["kafka_topic"]) == (
        datetime(2026, 1, 5, 14, 30, 45), "2026-01-05", "14", settings.kafka.quotes_topic)
    origin = bronze.where(f"partition = {row['kafka_partition']} AND offset = {row['kafka_offset']}").collect()
    assert [bytes(record["value"]) for record in origin] == [encode(msft)]

    null_changes = silver.where(f"event_id = '{snapshot('BRK.B', 0)['event_id']}'") \
        .select("change", "percent_change").collect()
    assert [tuple(r) for r in null_changes] == [(None, None)]

    report = account(spark, settings, QUOTES)
    assert {key: report[key] for key in ("bronze_rows", "silver_rows", "silver_duplicate_event_ids",
                                         "duplicates_removed", "quarantined_rows", "late_rows", "balanced")} == {
        "bronze_rows": 43, "silver_rows": 30, "silver_duplicate_event_ids": 0, "duplicates_removed": 6,
        "quarantined_rows": 7, "late_rows": 0, "balanced": True}
    assert report["quarantined_by_reason"] == dict(sorted(reasons.items()))

    # Only the quotes queries ran: every record read once by each, none late; no trades tables were made.
    progress = read_progress(log.read_text(errors="replace"))
    assert sorted(r["query"] for r in progress if r["event"] == "query_started") == ["bronze_quotes",
                                                                                     "silver_quotes"]
    batches = [r for r in progress if r["event"] == "batch"]
    assert {query: sum(r["rows_in"] for r in batches if r["query"] == query)
            for query in ("bronze_quotes", "silver_quotes")} == {"bronze_quotes": 43, "silver_quotes": 43}
    assert sum(r["rows_dropped_by_watermark"] for r in batches) == 0
    assert not DeltaTable.isDeltaTable(spark, settings.lake_uri(TRADES.table("bronze")))
