"""Reconcile's pure parts: which Bronze rows are missing from Silver, the watermark horizon, the MERGE condition,
the look-back window, the arguments and the retry policy (chispa, tiny inline frames)."""
from __future__ import annotations

import json
from datetime import date, datetime, timezone

import pytest
from chispa import assert_df_equality
from py4j.protocol import Py4JJavaError
from pyspark.sql import functions as F

from conf.contracts.schemas import load_contract
from spark_jobs.lib.delta import with_retries
from spark_jobs.lib.jobs import JobError
from spark_jobs.reconcile import behind_watermark, lookback_window, merge_condition, parse_args, watermark_horizon_ms
from spark_jobs.lib.transforms import ENTITIES, TRADES, bronze_rows, missing_from_silver, parse_events, silver_rows

SCHEMA = load_contract("trade")
KAFKA_COLUMNS = "key binary, value binary, topic string, partition int, offset long, timestamp timestamp, " \
                "timestampType int"
INGESTED = datetime(2026, 1, 5, 12, 0, 0)  # session time zone is UTC
T0 = 1767605400000  # 2026-01-05 09:30:00 UTC
SILVER_COLUMNS = "event_id string, schema_version long, source string, symbol string, price double, " \
                 "volume double, trade_ts long, conditions array<string>, sequence long, exchange string, " \
                 "trade_time timestamp, kafka_topic string, kafka_partition int, kafka_offset long, " \
                 "kafka_timestamp timestamp, ingest_time timestamp, date string, hour string"


def trade(letter: str, minute: int = 0, **changes) -> dict:
    return {"event_id": letter * 64, "schema_version": 1, "source": "simulator", "symbol": "AAPL", "price": 189.5,
            "volume": 100, "trade_ts": T0 + minute * 60_000, "conditions": ["1"], "sequence": 3, **changes}


def at(hour: int, minute: int) -> datetime:
    return datetime(2026, 1, 5, hour, minute)


def parsed_bronze(spark, deliveries):
    """deliveries: (payload, partition, offset, kafka time) -> Bronze rows parsed as the stream parses them."""
    rows = [(b"AAPL", p if isinstance(p, bytes) else json.dumps(p).encode(), "t", partition, offset, ts, 0)
            for p, partition, offset, ts in deliveries]
    bronze = bronze_rows(spark.createDataFrame(rows, KAFKA_COLUMNS)).withColumn("ingest_time", F.lit(INGESTED))
    return parse_events(bronze, TRADES, SCHEMA, 10**9)


def test_missing_rows_are_the_first_valid_delivery_of_each_id_silver_lacks(spark):
    bronze = parsed_bronze(spark, [
        (trade("a"), 1, 5, at(9, 31)),
        (trade("a"), 0, 9, at(9, 30)),                  # a: first by Kafka time
        (trade("b", 2), 1, 2, at(9, 32)),
        (trade("b", 2), 0, 7, at(9, 32)),               # b: same Kafka time, first by partition
        (trade("c", 3), 0, 4, at(9, 33)),
        (trade("c", 3), 0, 3, at(9, 33)),               # c: same time and partition, first by offset
        (trade("d"), 0, 1, at(9, 30)),                  # d: already in Silver
        (trade("f", 35, price=0), 0, 0, at(9, 29)),     # f: its earliest delivery is quarantined...
        (trade("f", 35), 2, 0, at(10, 5)),              # ...so its first valid one counts
        (trade("e", price=0), 0, 2, at(9, 30)),         # e: never valid
        (b'{"event_id": "9', 0, 6, at(9, 30)),          # malformed
    ])
    silver = silver_rows(parsed_bronze(spark, [(trade("d"), 3, 0, at(9, 30)), (trade("0"), 3, 1, at(9, 30))]),
                         TRADES)

    missing = missing_from_silver(bronze, silver, TRADES)

    assert missing.schema == silver_rows(bronze, TRADES).schema  # Silver's columns, order, types, nullability
    expected = spark.createDataFrame([
        ("a" * 64, 1, "simulator", "AAPL", 189.5, 100.0, T0, ["1"], 3, None, at(9, 30), "t", 0, 9, at(9, 30), INGESTED,
         "2026-01-05", "09"),
        ("b" * 64, 1, "simulator", "AAPL", 189.5, 100.0, T0 + 120_000, ["1"], 3, None, at(9, 32), "t", 0, 7, at(9, 32),
         INGESTED, "2026-01-05", "09"),
        ("c" * 64, 1, "simulator", "AAPL", 189.5, 100.0, T0 + 180_000, ["1"], 3, None, at(9, 33), "t", 0, 3, at(9, 33),
         INGESTED, "2026-01-05", "09"),
        ("f" * 64, 1, "simulator", "AAPL", 189.5, 100.0, T0 + 35 * 60_000, ["1"], 3, None, at(10, 5), "t", 2, 0,
         at(10, 5), INGESTED, "2026-01-05", "10"),
    ], SILVER_COLUMNS)
    assert_df_equality(missing, expected, ignore_nullable=True, ignore_row_order=True)


def test_nothing_is_missing_when_silver_has_every_valid_id(spark):
    bronze = parsed_bronze(spark, [(trade("a"), 0, 0, at(9, 30)), (trade("a"), 0, 1, at(9, 31)),
                                   (trade("b", price=0), 0, 2, at(9, 31))])
    silver = silver_rows(parsed_bronze(spark, [(trade("a"), 0, 0, at(9, 30))]), TRADES)
    assert missing_from_silver(bronze, silver, TRADES).count() == 0


def test_only_rows_at_or_behind_the_streams_watermark_are_safe_to_insert(spark):
    newest = int(datetime(2026, 1, 5, 10, 0, tzinfo=timezone.utc).timestamp() * 1000)
    horizon = watermark_horizon_ms(newest, "10 minutes")
    assert horizon == newest - 600_000
    assert watermark_horizon_ms(None, "10 minutes") is None
    rows = silver_rows(parsed_bronze(spark, [
        (trade("a", 20), 0, 0, at(10, 0)),                 # 09:50:00.000: on the watermark, Spark drops it
        (trade("b", 20, trade_ts=T0 + 20 * 60_000 + 1), 0, 1, at(10, 0)),  # 09:50:00.001: the stream may take it
        (trade("c", -60), 0, 2, at(10, 0)),                # 08:30: long gone
    ]), TRADES)
    safe = sorted(r["event_id"][0] for r in rows.where(behind_watermark(TRADES, horizon)).collect())
    assert safe == ["a", "c"]
    assert rows.where(behind_watermark(TRADES, None)).count() == 0


def test_merge_condition_matches_on_event_id_and_spells_out_the_target_partitions():
    assert merge_condition([("2026-01-05", "14"), ("2026-01-04", "23"), ("2026-01-05", "09"),
                            ("2026-01-05", "14")]) == (
        "t.event_id = s.event_id AND t.date = s.date AND t.hour = s.hour AND "
        "((t.date = '2026-01-04' AND t.hour IN ('23')) OR (t.date = '2026-01-05' AND t.hour IN ('09', '14')))")
    with pytest.raises(ValueError, match="hour"):
        merge_condition([("2026-01-05", "9' OR '1'='1")])
    with pytest.raises(ValueError, match="no partitions"):
        merge_condition([])


def test_lookback_window_counts_whole_days_back_from_now_today_included():
    now = datetime(2026, 1, 5, 0, 30, tzinfo=timezone.utc)
    assert lookback_window(now, 3) == (date(2026, 1, 2), date(2026, 1, 5))
    assert lookback_window(now, 1) == (date(2026, 1, 4), date(2026, 1, 5))


def test_arguments():
    args = parse_args([])
    assert args.entities == list(ENTITIES.values())
    assert (args.from_date, args.to_date, args.now, args.json) == (None, None, None, None)
    args = parse_args(["--entity", "quotes", "--entity", "quotes", "--from", "2026-01-02", "--to", "2026-01-05",
                       "--now", "2026-01-05T10:00:00+01:00"])
    assert args.entities == [ENTITIES["quotes"]]
    assert (args.from_date, args.to_date) == (date(2026, 1, 2), date(2026, 1, 5))
    assert args.now == datetime(2026, 1, 5, 9, 0, tzinfo=timezone.utc)
    assert parse_args(["--now", "2026-01-05T10:00:00"]).now == datetime(2026, 1, 5, 10, 0, tzinfo=timezone.utc)


@pytest.mark.parametrize("argv, message", [
    (["--from", "2026-01-02"], "--from and --to go together"),
    (["--to", "2026-01-02"], "--from and --to go together"),
    (["--from", "2026-01-05", "--to", "2026-01-02"], "--from 2026-01-05 is after --to 2026-01-02"),
    (["--from", "2026-13-01", "--to", "2026-12-01"], "not a date: '2026-13-01'"),
    (["--now", "yesterday"], "not an ISO 8601 time: 'yesterday'"),
    (["--entity", "bars"], "argument --entity: invalid choice: 'bars'"),
])
def test_bad_arguments_exit_2_with_one_line(capsys, argv, message):
    with pytest.raises(SystemExit) as exited:
        parse_args(argv)
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err


def java_error(spark, java_exception) -> Py4JJavaError:
    """How a failed Spark call surfaces in Python: a Py4JJavaError around the JVM exception."""
    return Py4JJavaError("An error occurred while calling o1.execute.\n", java_exception)


def test_merge_is_retried_on_conflicts_with_backoff_and_gives_up_after_the_last(spark):
    conflict = java_error(spark, spark.sparkContext._jvm.io.delta.exceptions.ConcurrentAppendException("race"))
    waits: list[float] = []
    outcomes = iter([conflict, conflict, 42])

    def merge():
        outcome = next(outcomes)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    assert with_retries(merge, "MERGE", backoff=(1.0, 2.0, 4.0), sleep=waits.append) == (42, 2)
    assert waits == [1.0, 2.0]

    waits.clear()
    with pytest.raises(JobError, match=r"^MERGE: still conflicting with concurrent commits after 3 attempts: "
                                       r"io\.delta\.exceptions\.ConcurrentAppendException"):
        with_retries(lambda: (_ for _ in ()).throw(conflict), "MERGE", backoff=(1.0, 2.0), sleep=waits.append)
    assert waits == [1.0, 2.0]

    waits.clear()
    other = java_error(spark, spark.sparkContext._jvm.java.lang.IllegalStateException("disk full"))
    with pytest.raises(Py4JJavaError):
        with_retries(lambda: (_ for _ in ()).throw(other), "MERGE", backoff=(1.0, 2.0), sleep=waits.append)
    assert waits == []
