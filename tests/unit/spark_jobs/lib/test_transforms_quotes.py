"""The stream's pure transforms applied to quote snapshots (contract conf/schemas/quote.v1.json), with chispa."""
from __future__ import annotations

from datetime import datetime

import pytest
from chispa import assert_df_equality
from pyspark.sql.types import DoubleType, LongType, StringType, StructField, StructType

from conf.contracts.schemas import load_contract
from conf.contracts.events import encode, make_quote_event
from conf.contracts.spark import struct_type
from spark_jobs.lib.transforms import (ENTITIES, QUOTES, bronze_rows, deduplicate, parse_events, quarantine_rows,
                                       silver_rows)

SCHEMA = load_contract("quote")  # the stream's contract (one version so far)
KAFKA_COLUMNS = "key binary, value binary, topic string, partition int, offset long, timestamp timestamp, " \
                "timestampType int"
QUOTE_TS = 1767603900000                     # 2026-01-05 09:05:00 UTC (the session time zone is UTC)
RECEIVED = datetime(2026, 1, 5, 9, 5, 10)    # Kafka timestamp: 10 s after the quote
GOOD = make_quote_event("finnhub", "AAPL", QUOTE_TS, current=189.5, change=1.25, percent_change=0.664,
                        high=190.1, low=187.9, open=188.0, previous_close=188.25)
SILVER_COLUMNS = "event_id string, schema_version long, source string, symbol string, current double, " \
                 "change double, percent_change double, high double, low double, open double, " \
                 "previous_close double, quote_ts long, quote_time timestamp, kafka_topic string, " \
                 "kafka_partition int, kafka_offset long, kafka_timestamp timestamp, date string, hour string"


def kafka_df(spark, payloads, timestamp=RECEIVED):
    rows = [(b"AAPL", p if isinstance(p, bytes) else encode(p), "quotes", 0, i, timestamp, 0)
            for i, p in enumerate(payloads)]
    return spark.createDataFrame(rows, KAFKA_COLUMNS)


def parsed_quotes(spark, payloads, timestamp=RECEIVED):
    return parse_events(bronze_rows(kafka_df(spark, payloads, timestamp)), QUOTES, SCHEMA, 300)


def reasons_of(spark, payloads, timestamp=RECEIVED):
    parsed = parsed_quotes(spark, payloads, timestamp)
    return [row["reasons"] for row in parsed.orderBy("offset").select("reasons").collect()]


def without(field):
    return {name: value for name, value in GOOD.items() if name != field}


def test_quotes_is_an_entity_next_to_trades():
    assert list(ENTITIES) == ["trades", "quotes"]
    assert ENTITIES["quotes"] is QUOTES
    assert (QUOTES.schema_name, QUOTES.topic_setting, QUOTES.event_ts_field, QUOTES.event_time_column) == (
        "quote", "quotes_topic", "quote_ts", "quote_time")
    assert [QUOTES.table(layer) for layer in ("bronze", "silver", "quarantine")] == [
        "bronze/quotes", "silver/quotes", "quarantine/quotes"]
    assert (QUOTES.checkpoint("bronze"), QUOTES.checkpoint("silver")) == (
        "_checkpoints/bronze_quotes", "_checkpoints/silver_quotes")


def test_quote_struct_type_is_derived_from_the_json_schema():
    prices = [StructField(name, DoubleType(), name in ("change", "percent_change"))
              for name in ("current", "change", "percent_change", "high", "low", "open", "previous_close")]
    assert struct_type(SCHEMA) == StructType([
        StructField("event_id", StringType(), False),
        StructField("schema_version", LongType(), False),
        StructField("source", StringType(), False),
        StructField("symbol", StringType(), False),
        *prices,
        StructField("quote_ts", LongType(), False),
    ])


QUOTE_CASES = [
    (GOOD, []),
    ({**GOOD, "change": None, "percent_change": None}, []),  # nullable in the contract
    ({**GOOD, "current": 190}, []),                          # a JSON integer is a number
    ({**GOOD, "current": 0}, ["current:exclusiveMinimum"]),
    ({**GOOD, "current": -1.5}, ["current:exclusiveMinimum"]),
    ({**GOOD, "current": "189.5"}, ["current:type"]),
    ({**GOOD, "current": None}, ["current:type"]),
    ({**GOOD, "change": "1.25"}, ["change:type"]),
    ({**GOOD, "percent_change": True}, ["percent_change:type"]),
    ({**GOOD, "high": 0}, ["high:exclusiveMinimum"]),
    ({**GOOD, "low": 0}, ["low:exclusiveMinimum"]),
    ({**GOOD, "open": -188.0}, ["open:exclusiveMinimum"]),
    ({**GOOD, "previous_close": 0}, ["previous_close:exclusiveMinimum"]),
    ({**GOOD, "quote_ts": QUOTE_TS + 0.5}, ["quote_ts:type"]),
    ({**GOOD, "quote_ts": str(QUOTE_TS)}, ["quote_ts:type"]),
    ({**GOOD, "quote_ts": 946684799999}, ["quote_ts:minimum"]),
    ({**GOOD, "quote_ts": 4102444800001}, ["quote_ts:maximum", "quote_ts:future"]),
    ({**GOOD, "symbol": "aapl"}, ["symbol:pattern"]),
    ({**GOOD, "symbol": "AAPL\n"}, ["symbol:pattern"]),
    ({**GOOD, "source": "Finnhub"}, ["source:pattern"]),
    ({**GOOD, "event_id": "xyz"}, ["event_id:pattern"]),
    ({**GOOD, "schema_version": 2}, ["schema_version:unsupported"]),
    ({**GOOD, "volume": 100}, ["additionalProperties"]),
    (without("change"), ["change:required"]),               # nullable, yet required: null must be explicit
    (without("quote_ts"), ["quote_ts:required"]),
    ({**GOOD, "current": 0, "high": 0}, ["current:exclusiveMinimum", "high:exclusiveMinimum"]),
    (b'{"event_id": "aaa', ["malformed_json"]),
    (b"[1, 2]", ["malformed_json"]),
    (b"\xff\xfe{}", ["malformed_json"]),
    (b'{"current": NaN}', ["malformed_json"]),
]


@pytest.fixture(scope="module")
def quote_reasons(spark) -> list[list[str]]:
    """Every case's reasons, from one DataFrame of all the payloads (one Spark job instead of one per case)."""
    return reasons_of(spark, [payload for payload, _ in QUOTE_CASES])


@pytest.mark.parametrize("case", range(len(QUOTE_CASES)))
def test_quote_contract_violations_get_the_producers_reason(quote_reasons, case):
    payload, reasons = QUOTE_CASES[case]
    assert quote_reasons[case] == reasons, payload


def test_a_trade_sent_to_the_quotes_topic_breaks_the_quote_contract(spark):
    trade = {"event_id": "a" * 64, "schema_version": 1, "source": "simulator", "symbol": "AAPL", "price": 189.5,
             "volume": 100, "trade_ts": QUOTE_TS, "conditions": [], "sequence": None}
    assert reasons_of(spark, [trade]) == [[
        "current:required", "change:required", "percent_change:required", "high:required", "low:required",
        "open:required", "previous_close:required", "quote_ts:required", "additionalProperties"]]


def test_quote_stamped_beyond_the_allowed_skew_past_its_kafka_time_is_future(spark):
    # GOOD is stamped 09:05:00; 300 s of skew are allowed past the Kafka timestamp, not 301.
    assert reasons_of(spark, [GOOD], datetime(2026, 1, 5, 8, 59, 59)) == [["quote_ts:future"]]
    assert reasons_of(spark, [GOOD], datetime(2026, 1, 5, 9, 0, 0)) == [[]]


def test_quote_silver_is_typed_and_partitioned_by_quote_hour(spark):
    unknown_change = make_quote_event("finnhub", "BRK.B", QUOTE_TS + 60_000, current=412.0, change=None,
                                      percent_change=None, high=413.5, low=410.0, open=411.0, previous_close=411.0)
    parsed = parsed_quotes(spark, [GOOD, {**GOOD, "current": 0}, unknown_change])
    silver = silver_rows(parsed, QUOTES).drop("ingest_time").orderBy("kafka_offset")
    expected = spark.createDataFrame([
        (GOOD["event_id"], 1, "finnhub", "AAPL", 189.5, 1.25, 0.664, 190.1, 187.9, 188.0, 188.25, QUOTE_TS,
         datetime(2026, 1, 5, 9, 5), "quotes", 0, 0, RECEIVED, "2026-01-05", "09"),
        (unknown_change["event_id"], 1, "finnhub", "BRK.B", 412.0, None, None, 413.5, 410.0, 411.0, 411.0,
         QUOTE_TS + 60_000, datetime(2026, 1, 5, 9, 6), "quotes", 0, 2, RECEIVED, "2026-01-05", "09"),
    ], SILVER_COLUMNS)
    assert_df_equality(silver, expected, ignore_nullable=True)


def test_quote_quarantine_keeps_the_raw_record_with_its_first_reason(spark):
    bad = {**GOOD, "current": 0, "low": -1}
    future = {**GOOD, "quote_ts": 1767607200000}  # 10:00, received 09:05:10
    parsed = parsed_quotes(spark, [GOOD, bad, b"oops", future])
    quarantine = quarantine_rows(parsed).select("offset", "value", "reason", "reasons", "date", "hour") \
        .orderBy("offset")
    expected = spark.createDataFrame([
        (1, encode(bad), "current:exclusiveMinimum", ["current:exclusiveMinimum", "low:exclusiveMinimum"],
         "2026-01-05", "09"),
        (2, b"oops", "malformed_json", ["malformed_json"], "2026-01-05", "09"),
        (3, encode(future), "quote_ts:future", ["quote_ts:future"], "2026-01-05", "09"),
    ], "offset long, value binary, reason string, reasons array<string>, date string, hour string")
    assert_df_equality(quarantine, expected, ignore_nullable=True)


def test_deduplicate_collapses_repeated_quote_snapshots_on_event_id(spark, tmp_path):
    """Polling an unchanged quote again yields the same event id: one Silver row. A real one-batch stream,
    since dropDuplicatesWithinWatermark needs one; the watermark is on quote_time."""
    changed = make_quote_event("finnhub", "AAPL", QUOTE_TS + 15_000, current=189.7, change=1.45,
                               percent_change=0.7703, high=190.1, low=187.9, open=188.0, previous_close=188.25)
    # One file, so the stream reads the deliveries in offset order and "first" is well defined.
    kafka_df(spark, [GOOD, GOOD, changed, GOOD, b"oops"]).coalesce(1).write.parquet(str(tmp_path / "source"))

    stream = spark.readStream.schema(KAFKA_COLUMNS).parquet(str(tmp_path / "source"))
    parsed = parse_events(bronze_rows(stream), QUOTES, SCHEMA, 300)
    deduped = deduplicate(silver_rows(parsed, QUOTES), QUOTES, "10 minutes")
    query = (deduped.writeStream.format("memory").queryName("dedupe_quotes_test").outputMode("append")
             .option("checkpointLocation", str(tmp_path / "checkpoint")).trigger(availableNow=True).start())
    query.awaitTermination()

    kept = spark.table("dedupe_quotes_test").select("event_id", "current", "kafka_offset").collect()
    assert sorted((row["event_id"], row["current"], row["kafka_offset"]) for row in kept) == sorted([
        (GOOD["event_id"], 189.5, 0), (changed["event_id"], 189.7, 2)])
