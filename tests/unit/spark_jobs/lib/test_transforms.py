"""The stream's pure transforms on tiny inline DataFrames (chispa)."""
from __future__ import annotations

import copy
import json
import os
from datetime import datetime

import pytest
from chispa import assert_df_equality
from pyspark.sql.types import ArrayType, DoubleType, LongType, StringType, StructField, StructType

from conf.contracts.schemas import load_contract, load_schema
from conf.settings import ConfigError
from conf.contracts.spark import ecma_pattern, parse_stages, struct_type
from spark_jobs.lib.transforms import TRADES, bronze_rows, deduplicate, parse_events, quarantine_rows, silver_rows

SCHEMA = load_contract("trade")  # the stream's contract: trade.v1 and trade.v2
KAFKA_COLUMNS = "key binary, value binary, topic string, partition int, offset long, timestamp timestamp, " \
                "timestampType int"
TS = datetime(2026, 1, 5, 9, 30, 0)  # session time zone is UTC
GOOD = {"event_id": "a" * 64, "schema_version": 1, "source": "simulator", "symbol": "AAPL", "price": 189.5,
        "volume": 100, "trade_ts": 1767605400000, "conditions": ["1"], "sequence": 3}  # 2026-01-05 09:30 UTC


def kafka_df(spark, payloads, timestamp=TS):
    rows = [(b"AAPL", p if isinstance(p, bytes) else json.dumps(p).encode(), "t", 0, i, timestamp, 0)
            for i, p in enumerate(payloads)]
    return spark.createDataFrame(rows, KAFKA_COLUMNS)


def reasons_of(spark, payloads, timestamp=TS):
    parsed = parse_events(bronze_rows(kafka_df(spark, payloads, timestamp)), TRADES, SCHEMA, 300)
    return [row["reasons"] for row in parsed.orderBy("offset").select("reasons").collect()]


def test_struct_type_is_derived_from_the_json_schema():
    assert struct_type(SCHEMA) == StructType([
        StructField("event_id", StringType(), False),
        StructField("schema_version", LongType(), False),
        StructField("source", StringType(), False),
        StructField("symbol", StringType(), False),
        StructField("price", DoubleType(), False),
        StructField("volume", DoubleType(), False),
        StructField("trade_ts", LongType(), False),
        StructField("conditions", ArrayType(StringType(), False), False),
        StructField("sequence", LongType(), True),
        StructField("exchange", StringType(), True),
    ])


def test_ecma_end_anchor_becomes_end_of_input():
    assert ecma_pattern("^[A-Z]+$") == "^[A-Z]+\\z"
    assert ecma_pattern("^a\\$") == "^a\\$"


def test_bronze_keeps_the_record_and_partitions_by_kafka_time_zero_padded(spark):
    bronze = bronze_rows(kafka_df(spark, [b"raw-1", b"\xff\xfe"])).drop("ingest_time")
    expected = spark.createDataFrame(
        [("AAPL", b"raw-1", "t", 0, 0, TS, 0, "2026-01-05", "09"),
         ("AAPL", b"\xff\xfe", "t", 0, 1, TS, 0, "2026-01-05", "09")],
        "key string, value binary, topic string, partition int, offset long, kafka_timestamp timestamp, "
        "kafka_timestamp_type int, date string, hour string")
    assert_df_equality(bronze, expected, ignore_nullable=True)


def literal(name, text):
    """GOOD with one field's value written as the JSON literal `text` (added when not a field)."""
    return json.dumps({**GOOD, name: "__literal__"}).encode().replace(b'"__literal__"', text.encode())


VIOLATION_CASES = [
    (GOOD, []),
    ({**GOOD, "sequence": None}, []),
    ({**GOOD, "conditions": []}, []),
    ({**GOOD, "price": 0}, ["price:exclusiveMinimum"]),
    ({**GOOD, "price": -1.5}, ["price:exclusiveMinimum"]),
    ({**GOOD, "price": "189.5"}, ["price:type"]),
    ({**GOOD, "price": True}, ["price:type"]),
    ({**GOOD, "price": None}, ["price:type"]),
    ({**GOOD, "volume": -1}, ["volume:minimum"]),
    ({**GOOD, "symbol": "aapl"}, ["symbol:pattern"]),
    ({**GOOD, "symbol": "AAPL\n"}, ["symbol:pattern"]),
    ({**GOOD, "symbol": 123}, ["symbol:type"]),
    ({**GOOD, "trade_ts": 1767605400000.5}, ["trade_ts:type"]),
    ({**GOOD, "conditions": [1]}, ["conditions:type"]),
    ({**GOOD, "conditions": ["123456789"]}, ["conditions:maxLength"]),
    ({**GOOD, "event_id": "xyz"}, ["event_id:pattern"]),
    ({**GOOD, "schema_version": 0}, ["schema_version:minimum"]),
    ({**GOOD, "schema_version": 2}, []),
    ({**GOOD, "schema_version": 2, "exchange": "XNAS"}, []),
    ({**GOOD, "schema_version": 2, "exchange": None}, []),
    ({**GOOD, "schema_version": 2, "exchange": "nasdaq"}, ["exchange:pattern"]),
    ({**GOOD, "schema_version": 2, "exchange": 7}, ["exchange:type"]),
    # exchange is not a v1 field: in a v1 event it is an unknown one, whatever its value.
    ({**GOOD, "exchange": "XNAS"}, ["additionalProperties"]),
    ({**GOOD, "exchange": "nasdaq"}, ["additionalProperties"]),
    # A version newer than conf/schemas knows: quarantined with that reason first, whatever else it holds.
    ({**GOOD, "schema_version": 3}, ["schema_version:unsupported"]),
    ({**GOOD, "schema_version": 3, "exchange": "XNAS", "venue_fee": 0.1},
     ["schema_version:unsupported", "additionalProperties"]),
    ({**GOOD, "schema_version": 2 ** 62, "price": 0}, ["schema_version:unsupported", "price:exclusiveMinimum"]),
    ({**GOOD, "extra": 1}, ["additionalProperties"]),
    ({k: v for k, v in GOOD.items() if k != "trade_ts"}, ["trade_ts:required"]),
    ({**GOOD, "price": 0, "volume": -1}, ["price:exclusiveMinimum", "volume:minimum"]),
    (b'{"event_id": "aaa', ["malformed_json"]),
    (b"[1, 2]", ["malformed_json"]),
    (b"\xff\xfe{}", ["malformed_json"]),
    (b'{"price": NaN}', ["malformed_json"]),
    # The producer's answers (tests/unit/conf/contracts/test_events.py): an integer written with a fraction or an exponent
    # is an integer when its value (as a double) is integral; a number literal beyond a double is malformed_json
    # wherever it is, an integer literal of any length is an integer out of range.
    (literal("trade_ts", "1.7676054E12"), []),
    (literal("trade_ts", "1767605400000.0"), []),
    (literal("trade_ts", "1767605400000.9999999999999999"), []),
    (literal("trade_ts", "1.7676054000005E12"), ["trade_ts:type"]),
    (literal("schema_version", "1.0"), []),
    (literal("schema_version", "1e0"), []),
    (literal("schema_version", "5e0"), ["schema_version:unsupported"]),
    (literal("sequence", "100.0"), []),
    (literal("sequence", "7E+0"), []),
    (literal("sequence", "-1e0"), ["sequence:minimum"]),
    (literal("sequence", "1e19"), ["sequence:maximum"]),
    (literal("sequence", "9.223372036854775807E18"), ["sequence:maximum"]),  # 2^63: a cast would saturate
    (literal("trade_ts", "1" + "0" * 400), ["trade_ts:maximum"]),
    (literal("trade_ts", "-1" + "0" * 40), ["trade_ts:minimum"]),
    (literal("price", "1e400"), ["malformed_json"]),
    (literal("price", "1" + "0" * 400 + ".0"), ["malformed_json"]),
    # (The record's keys are read from its text: an unknown one is reported after malformed_json.)
    (literal("extra", '[1,{"x":-1.5E999}]'), ["malformed_json", "additionalProperties"]),
    (literal("extra", '"1e400"'), ["additionalProperties"]),
    (literal("extra", '["\\\\", 1e400]'), ["malformed_json", "additionalProperties"]),  # after a string ending in \\
    (literal("extra", '"a\\"1e400"'), ["additionalProperties"]),        # in a string, after an escaped quote
    (literal("extra", "1" + "0" * 400), ["additionalProperties"]),
    # Jackson's StreamReadConstraints (conf.contracts.events.MAX_*): over the limit, malformed_json.
    (literal("price", "9" * 1000), ["price:maximum"]),
    (literal("price", "9" * 1001), ["malformed_json"]),
    (literal("extra", "-0." + "1" * 1000), ["additionalProperties"]),
    (literal("extra", "0." + "1" * 1001), ["malformed_json"]),
    (literal("k" * 50_000, "1"), ["additionalProperties"]),
    (literal("k" * 50_001, "1"), ["malformed_json"]),
    (literal("\U0001d11e" * 25_001, "1"), ["malformed_json"]),
]


@pytest.fixture(scope="module")
def violation_reasons(spark) -> list[list[str]]:
    """Every case's reasons, from one DataFrame of all the payloads (the check is row by row: one Spark job
    instead of one per case)."""
    return reasons_of(spark, [payload for payload, _ in VIOLATION_CASES])


@pytest.mark.parametrize("case", range(len(VIOLATION_CASES)))
def test_contract_violations_get_the_producers_reason(violation_reasons, case):
    payload, reasons = VIOLATION_CASES[case]
    assert violation_reasons[case] == reasons, payload


def compact(payload):
    """The producer's encoding (no spaces, contract field order, prices and volumes as floats): what
    parse_json's fast path takes."""
    if isinstance(payload, bytes):
        return payload
    floats = {name: float(value) for name, value in payload.items()
              if name in ("price", "volume") and type(value) is int}
    return json.dumps({**payload, **floats}, separators=(",", ":")).encode()


def test_compact_records_get_the_same_reasons_through_the_fast_path(spark):
    # One DataFrame for all cases: the compact spelling of every case above, plus NaN and Infinity spelled the
    # way from_json accepts and writes back (so only the finiteness check keeps them off the fast path).
    nan = compact(GOOD).replace(b'"price":189.5', b'"price":NaN')
    infinite = compact(GOOD).replace(b'"volume":100.0', b'"volume":Infinity')
    payloads = [compact(payload) for payload, _ in VIOLATION_CASES] + [nan, infinite]
    expected = [reasons for _, reasons in VIOLATION_CASES] + [["malformed_json"], ["malformed_json"]]
    assert reasons_of(spark, payloads) == expected


def test_the_contract_checks_columns_are_built_once_per_contract_and_column_names():
    # Building them is some 6,000 calls into the JVM: the Bronze query checks a new DataFrame every micro-batch.
    stages = parse_stages(SCHEMA, "value", "event", "_violations")
    assert parse_stages(copy.deepcopy(SCHEMA), "value", "event", "_violations") is stages
    assert parse_stages(SCHEMA, "payload", "event", "_violations") is not stages
    assert parse_stages(load_schema("trade.v1"), "value", "event", "_violations") is not stages


def test_a_generated_class_stays_compiled_after_more_than_sparks_default_100_others(spark):
    # A micro-batch cycles through ~140 generated classes: with Spark's default cache of 100 the contract check's
    # were evicted and compiled again every batch (conf/spark/spark-defaults.conf).
    from pyspark.sql import functions as F

    compilations = spark.sparkContext._jvm.org.apache.spark.metrics.source.CodegenMetrics.METRIC_COMPILATION_TIME()
    ids = spark.range(2)

    def run_projection(factor: int) -> None:  # each factor is a literal in the generated source: its own class
        ids.select((F.col("id") * factor + factor).alias("x")).collect()

    for factor in range(1000, 1130):
        run_projection(factor)
    compiled_before = compilations.getCount()
    run_projection(1000)
    assert compilations.getCount() == compiled_before


def test_trade_stamped_beyond_the_allowed_skew_past_its_kafka_time_is_future(spark):
    # GOOD is stamped 09:30:00; Kafka received it at 09:24:59, 301 s earlier: over the 300 s allowed.
    assert reasons_of(spark, [GOOD], datetime(2026, 1, 5, 9, 24, 59)) == [["trade_ts:future"]]
    assert reasons_of(spark, [GOOD], datetime(2026, 1, 5, 9, 25, 0)) == [[]]


def test_silver_is_typed_and_partitioned_by_event_hour(spark):
    v2 = {**GOOD, "event_id": "b" * 64, "schema_version": 2, "exchange": "XNAS"}
    parsed = parse_events(bronze_rows(kafka_df(spark, [GOOD, {**GOOD, "price": 0}, v2])), TRADES, SCHEMA, 300)
    silver = silver_rows(parsed, TRADES).drop("ingest_time").orderBy("kafka_offset")
    # One Silver schema for both versions: v1 rows have no exchange (null).
    expected = spark.createDataFrame(
        [("a" * 64, 1, "simulator", "AAPL", 189.5, 100.0, 1767605400000, ["1"], 3, None,
          datetime(2026, 1, 5, 9, 30), "t", 0, 0, TS, "2026-01-05", "09"),
         ("b" * 64, 2, "simulator", "AAPL", 189.5, 100.0, 1767605400000, ["1"], 3, "XNAS",
          datetime(2026, 1, 5, 9, 30), "t", 0, 2, TS, "2026-01-05", "09")],
        "event_id string, schema_version long, source string, symbol string, price double, volume double, "
        "trade_ts long, conditions array<string>, sequence long, exchange string, trade_time timestamp, "
        "kafka_topic string, kafka_partition int, kafka_offset long, kafka_timestamp timestamp, date string, "
        "hour string")
    assert_df_equality(silver, expected, ignore_nullable=True)


def test_a_single_schema_version_keeps_its_own_rules(spark):
    # trade.v1 alone (what the stream read before v2): version 2 is beyond its maximum, exchange unknown.
    parsed = parse_events(bronze_rows(kafka_df(spark, [{**GOOD, "schema_version": 2}, {**GOOD, "exchange": "XNAS"}])),
                          TRADES, load_schema("trade.v1"), 300)
    assert [row["reasons"] for row in parsed.orderBy("offset").collect()] == [
        ["schema_version:maximum"], ["additionalProperties"]]


def test_the_trade_contract_reads_every_version(tmp_path, monkeypatch):
    contract = load_contract("trade")
    assert contract["x-stocklake-versions"] == {"latest": 2, "since": {"exchange": 2}}
    assert contract["properties"]["schema_version"] == {
        "type": "integer", "minimum": 1, "description": "Version of this event schema."}
    assert list(contract["properties"]) == list(load_schema("trade.v2")["properties"])
    assert load_contract("quote")["x-stocklake-versions"] == {"latest": 1, "since": {}}


BREAKING_CHANGES = [
    (lambda s: s["required"].append("exchange"), "it changes the required fields"),
    (lambda s: s["properties"]["price"].update(maximum=5), "it changes the rules of price"),
    (lambda s: s["properties"].pop("sequence"), "it does not keep the previous version's fields first"),
    (lambda s: s["properties"]["schema_version"].update(maximum=3), "its schema_version must be exactly 2"),
]


@pytest.mark.parametrize("change, problem", BREAKING_CHANGES)
def test_a_new_schema_version_may_only_add_optional_fields(tmp_path, monkeypatch, change, problem):
    import conf.contracts.schemas as schemas_module

    (tmp_path / "schemas").mkdir()
    for version in (1, 2):
        schema = load_schema(f"trade.v{version}")
        if version == 2:
            change(schema)
        (tmp_path / "schemas" / f"trade.v{version}.json").write_text(json.dumps(schema))
    monkeypatch.setattr(schemas_module, "SCHEMAS_DIR", tmp_path / "schemas")
    with pytest.raises(ConfigError, match=f"^message schema trade.v2: {problem}"):
        load_contract("trade")


def test_quarantine_keeps_the_raw_record_with_its_first_reason(spark):
    bad = {**GOOD, "price": 0, "volume": -1}
    parsed = parse_events(bronze_rows(kafka_df(spark, [GOOD, bad, b"oops"])), TRADES, SCHEMA, 300)
    quarantine = quarantine_rows(parsed).select("offset", "value", "reason", "reasons").orderBy("offset")
    expected = spark.createDataFrame(
        [(1, json.dumps(bad).encode(), "price:exclusiveMinimum", ["price:exclusiveMinimum", "volume:minimum"]),
         (2, b"oops", "malformed_json", ["malformed_json"])],
        "offset long, value binary, reason string, reasons array<string>")
    assert_df_equality(quarantine, expected, ignore_nullable=True)


def test_deduplicate_keeps_the_first_delivery_and_drops_late_events(spark, tmp_path):
    """A real stream (file source -> memory sink) of three micro-batches. Spark drops rows behind the watermark
    of the batch before (batch 1 sets 09:50, batch 2 computes with it, batch 3 drops against it), and
    duplicates collapse within and across batches."""
    def event(letter, minute):
        return {**GOOD, "event_id": letter * 64, "trade_ts": GOOD["trade_ts"] + minute * 60_000}

    batches = [[event("a", 0), event("a", 0), event("b", 30)],  # max 10:00 -> watermark 09:50
               [event("b", 30), event("c", 31)],               # b: duplicate across batches
               [event("d", -5), event("a", 0), event("e", 32)]]  # d (09:25) and a's re-delivery: late
    source = tmp_path / "source"
    source.mkdir()
    for number, payloads in enumerate(batches):
        staging = tmp_path / f"staging-{number}"
        kafka_df(spark, payloads).coalesce(1).write.parquet(str(staging))
        part = next(staging.glob("part-*.parquet"))
        target = source / f"{number}.parquet"
        part.rename(target)
        os.utime(target, (1_000_000 + number, 1_000_000 + number))  # the file source reads oldest first

    stream = spark.readStream.schema(KAFKA_COLUMNS).option("maxFilesPerTrigger", 1).parquet(str(source))
    parsed = parse_events(bronze_rows(stream), TRADES, SCHEMA, 10**9)
    deduped = deduplicate(silver_rows(parsed, TRADES), TRADES, "10 minutes")
    query = (deduped.writeStream.format("memory").queryName("dedupe_test").outputMode("append")
             .option("checkpointLocation", str(tmp_path / "checkpoint")).trigger(availableNow=True).start())
    query.awaitTermination()

    kept = sorted(row["event_id"][0] for row in spark.table("dedupe_test").collect())
    dropped_late = sum(op.numRowsDroppedByWatermark for p in query.recentProgress for op in p.stateOperators)
    assert kept == ["a", "b", "c", "e"]
    assert dropped_late == 2
