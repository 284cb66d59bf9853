"""spark_jobs/data_quality.py: the suite on small pandas frames (one violation of each kind), and the selection
of the latest closed hours."""
from __future__ import annotations

from datetime import datetime, timezone

import pandas as pd
import pytest

from conf.settings import load_settings
from spark_jobs.data_quality import (allowed_symbols, contract, latest_closed_hours, main, parse_now,
                                     parse_partition, render, table_partitions, validate)
from spark_jobs.lib.transforms import QUOTES, TRADES

TRADES_CONTRACT = contract(TRADES)
QUOTES_CONTRACT = contract(QUOTES)
SYMBOLS = ["AAPL", "MSFT"]
UTC = timezone.utc
HOUR_START = pd.Timestamp("2026-01-05 14:00:00", tz="UTC")


def ids(n: int) -> list[str]:
    return [f"{i:064x}" for i in range(1, n + 1)]


def trades_frame() -> pd.DataFrame:
    """Four valid Silver trades in partition 2026-01-05/14, with the column types delta-rs reads; the edges of
    every rule: a zero volume, and event times at both ends of the hour."""
    times = [HOUR_START, HOUR_START + pd.Timedelta(minutes=30), HOUR_START + pd.Timedelta(minutes=59, seconds=59),
             HOUR_START + pd.Timedelta(minutes=59, seconds=59, milliseconds=999)]
    n = len(times)
    return pd.DataFrame({
        "event_id": ids(n),
        "schema_version": [1] * n,
        "source": ["simulator"] * n,
        "symbol": ["AAPL", "MSFT", "AAPL", "MSFT"],
        "price": [189.5, 415.2, 0.01, 190.0],
        "volume": [100.0, 0.0, 5.0, 1.0],
        "trade_ts": [int(t.timestamp() * 1000) for t in times],
        "conditions": [["1"], [], ["12", "37"], []],
        "sequence": [1, 2, None, 4],
        "exchange": [None, "XNAS", None, "XNYS"],
        "trade_time": pd.Series(times, dtype="datetime64[us, UTC]"),
        "kafka_topic": ["market.trades.v1"] * n,
        "kafka_partition": pd.Series([0, 1, 2, 3], dtype="int32"),
        "kafka_offset": [10, 11, 12, 13],
        "kafka_timestamp": pd.Series(times, dtype="datetime64[us, UTC]"),
        "ingest_time": pd.Series([HOUR_START + pd.Timedelta(hours=1)] * n, dtype="datetime64[us, UTC]"),
        "date": ["2026-01-05"] * n,
        "hour": ["14"] * n,
    })


def quotes_frame() -> pd.DataFrame:
    times = [HOUR_START + pd.Timedelta(minutes=1), HOUR_START + pd.Timedelta(minutes=2)]
    return pd.DataFrame({
        "event_id": ids(2),
        "schema_version": [1, 1],
        "source": ["finnhub", "finnhub"],
        "symbol": ["AAPL", "MSFT"],
        "current": [189.5, 415.2],
        "change": [1.2, None],
        "percent_change": [0.6, None],
        "high": [190.0, 416.0],
        "low": [188.0, 414.0],
        "open": [188.5, 414.5],
        "previous_close": [188.3, 414.1],
        "quote_ts": [int(t.timestamp() * 1000) for t in times],
        "quote_time": pd.Series(times, dtype="datetime64[us, UTC]"),
        "kafka_topic": ["market.quotes.v1"] * 2,
        "kafka_partition": pd.Series([0, 1], dtype="int32"),
        "kafka_offset": [0, 0],
        "kafka_timestamp": pd.Series(times, dtype="datetime64[us, UTC]"),
        "ingest_time": pd.Series(times, dtype="datetime64[us, UTC]"),
        "date": ["2026-01-05"] * 2,
        "hour": ["14"] * 2,
    })


def failures(outcome: dict) -> dict[tuple[str, str | None], int | None]:
    return {(s["expectation"], s["column"]): s["unexpected_count"] for s in outcome["expectations"] if not s["success"]}


def test_the_contract_is_the_silver_schema_derived_from_the_message_schema():
    assert TRADES_CONTRACT.columns == [
        "event_id", "schema_version", "source", "symbol", "price", "volume", "trade_ts", "conditions", "sequence",
        "exchange", "trade_time", "kafka_topic", "kafka_partition", "kafka_offset", "kafka_timestamp", "ingest_time",
        "date", "hour"]
    # sequence is optional in the contract; everything the stream fills itself is never null.
    assert TRADES_CONTRACT.not_null == [c for c in TRADES_CONTRACT.columns if c not in ("sequence", "exchange")]
    assert (TRADES_CONTRACT.positive, TRADES_CONTRACT.non_negative) == (["price"], ["volume"])
    assert QUOTES_CONTRACT.columns == [
        "event_id", "schema_version", "source", "symbol", "current", "change", "percent_change", "high", "low",
        "open", "previous_close", "quote_ts", "quote_time", "kafka_topic", "kafka_partition", "kafka_offset",
        "kafka_timestamp", "ingest_time", "date", "hour"]
    assert "change" not in QUOTES_CONTRACT.not_null and "percent_change" not in QUOTES_CONTRACT.not_null
    assert QUOTES_CONTRACT.positive == ["current", "high", "low", "open", "previous_close"]


def test_a_silver_table_evolved_to_schema_v2_passes_with_the_new_column_last():
    frame = trades_frame()
    evolved = frame[[c for c in frame.columns if c != "exchange"] + ["exchange"]]
    assert validate(evolved, TRADES_CONTRACT, SYMBOLS)["success"] is True


def test_allowed_symbols_default_to_the_simulator_and_finnhub_lists():
    assert allowed_symbols(load_settings({})) == ["AAPL", "AMZN", "GOOGL", "JPM", "META", "MSFT", "NVDA", "TSLA"]
    assert allowed_symbols(load_settings({"STOCKLAKE_QUALITY_ALLOWED_SYMBOLS": "IBM,AAPL"})) == ["AAPL", "IBM"]


def test_a_valid_frame_passes_every_expectation():
    outcome = validate(trades_frame(), TRADES_CONTRACT, SYMBOLS)
    assert outcome["success"] is True
    # columns + 16 not-null + price + volume + symbol set + unique event_id + event time in its hour
    assert len(outcome["expectations"]) == 1 + 16 + 1 + 1 + 1 + 1 + 1
    assert [s["expectation"] for s in outcome["expectations"]][-3:] == [
        "expect_column_values_to_be_in_set", "expect_column_values_to_be_unique",
        "expect_column_pair_values_to_be_equal"]


def set_value(column, row, value):
    def change(df):
        df.loc[row, column] = value
        return df
    return change


def duplicate_first_id(df):
    df.loc[3, "event_id"] = df.loc[0, "event_id"]
    return df


def shift_time(delta):
    def change(df):
        df.loc[1, "trade_time"] = HOUR_START + delta
        return df
    return change


PAIR = ("expect_column_pair_values_to_be_equal", "partition,event_time_partition")


@pytest.mark.parametrize("change, expected", [
    (set_value("price", 2, 0.0), {("expect_column_values_to_be_between", "price"): 1}),
    (set_value("price", 0, -3.5), {("expect_column_values_to_be_between", "price"): 1}),
    (set_value("volume", 1, -1.0), {("expect_column_values_to_be_between", "volume"): 1}),
    (set_value("symbol", 0, "ZZZZ"), {("expect_column_values_to_be_in_set", "symbol"): 1}),
    # A null is the not-null expectation's finding only (the value checks skip nulls).
    (set_value("symbol", 0, None), {("expect_column_values_to_not_be_null", "symbol"): 1}),
    (set_value("price", 1, None), {("expect_column_values_to_not_be_null", "price"): 1}),
    (set_value("kafka_offset", 1, None), {("expect_column_values_to_not_be_null", "kafka_offset"): 1}),
    # One event id on two rows: both rows are unexpected.
    (duplicate_first_id, {("expect_column_values_to_be_unique", "event_id"): 2}),
    # The hour is [14:00, 15:00): 15:00:00 exactly and 13:59:59.999 are outside.
    (shift_time(pd.Timedelta(hours=1)), {PAIR: 1}),
    (shift_time(pd.Timedelta(milliseconds=-1)), {PAIR: 1}),
    (shift_time(pd.Timedelta(hours=-2)), {PAIR: 1}),
    (lambda df: df.drop(columns=["exchange"]), {("expect_table_columns_to_match_set", None): None}),
    (lambda df: df.assign(extra=1), {("expect_table_columns_to_match_set", None): None}),
], ids=["price-zero", "price-negative", "volume-negative", "unknown-symbol", "null-symbol", "null-price",
        "null-offset", "duplicate-event-id", "time-at-hour-end", "time-before-hour", "time-two-hours-off",
        "missing-column", "extra-column"])
def test_each_violation_fails_exactly_its_expectation(change, expected):
    outcome = validate(change(trades_frame()), TRADES_CONTRACT, SYMBOLS)
    assert outcome["success"] is False
    assert failures(outcome) == expected


def test_unexpected_values_are_sampled_with_their_event_id():
    frame = trades_frame()
    frame.loc[1, "trade_time"] = pd.Timestamp("2026-01-05 16:10:00", tz="UTC")
    frame.loc[2, "price"] = 0.0
    outcome = validate(frame, TRADES_CONTRACT, SYMBOLS)
    by_name = {(s["expectation"], s["column"]): s for s in outcome["expectations"]}
    assert by_name[PAIR]["unexpected_sample"] == [
        {"event_id": ids(4)[1], "partition": "2026-01-05/14", "event_time_partition": "2026-01-05/16"}]
    assert by_name[("expect_column_values_to_be_between", "price")]["unexpected_sample"] == [
        {"event_id": ids(4)[2], "price": 0.0}]
    lines = render({"entity": "trades", "table": "s3://b/silver/trades", "partitions": ["2026-01-05/14"], "rows": 4,
                    **outcome}).splitlines()
    assert (f'  FAIL expect_column_values_to_be_between(price) unexpected=1 e.g. [{{"event_id": "{ids(4)[2]}", '
            f'"price": 0.0}}]') in lines
    assert "  PASS expect_column_values_to_be_between(volume) unexpected=0" in lines
    assert lines[-1] == ("data_quality trades: FAILED: 20/22 expectations passed on 4 rows of 2026-01-05/14 "
                         "(s3://b/silver/trades)")


def test_a_missing_column_fails_the_schema_and_the_expectations_on_it():
    outcome = validate(trades_frame().drop(columns=["volume"]), TRADES_CONTRACT, SYMBOLS)
    assert set(failures(outcome)) == {("expect_table_columns_to_match_set", None),
                                      ("expect_column_values_to_not_be_null", "volume"),
                                      ("expect_column_values_to_be_between", "volume")}
    errors = {s["expectation"]: s.get("error") for s in outcome["expectations"] if s["column"] == "volume"}
    assert errors == {"expect_column_values_to_not_be_null": 'Error: The column "volume" in BatchData does not exist.',
                      "expect_column_values_to_be_between": 'Error: The column "volume" in BatchData does not exist.'}


def test_quotes_have_the_analogous_suite():
    assert validate(quotes_frame(), QUOTES_CONTRACT, SYMBOLS)["success"] is True
    frame = quotes_frame()
    frame.loc[0, "low"] = 0.0
    frame.loc[1, "quote_time"] = pd.Timestamp("2026-01-05 15:00:00", tz="UTC")
    assert failures(validate(frame, QUOTES_CONTRACT, SYMBOLS)) == {
        ("expect_column_values_to_be_between", "low"): 1, PAIR: 1}


def test_latest_closed_hours_respect_the_grace_period():
    present = [("2026-01-05", "12"), ("2026-01-05", "13"), ("2026-01-05", "14"), ("2026-01-04", "23")]
    # Hour 14 ends at 15:00 and is closed from 15:15 with a 15-minute grace.
    at = lambda text: datetime.fromisoformat(text).replace(tzinfo=UTC)  # noqa: E731
    assert latest_closed_hours(present, at("2026-01-05T15:14:59.999"), 15, 2) == [("2026-01-05", "12"),
                                                                                 ("2026-01-05", "13")]
    assert latest_closed_hours(present, at("2026-01-05T15:15:00"), 15, 2) == [("2026-01-05", "13"),
                                                                             ("2026-01-05", "14")]
    assert latest_closed_hours(present, at("2026-01-05T15:15:00"), 15, 1) == [("2026-01-05", "14")]
    assert latest_closed_hours(present, at("2026-01-05T15:15:00"), 15, 10) == [
        ("2026-01-04", "23"), ("2026-01-05", "12"), ("2026-01-05", "13"), ("2026-01-05", "14")]
    assert latest_closed_hours(present, at("2026-01-05T00:14:59"), 15, 3) == []


def test_partition_values_and_times_are_parsed_strictly():
    assert parse_partition("2026-01-05/07") == ("2026-01-05", "07")
    for bad in ("2026-01-05/7", "2026-01-05/24", "2026-13-01/00", "2026-01-05T07"):
        with pytest.raises(Exception, match="not a partition"):
            parse_partition(bad)
    assert table_partitions([{"date": "2026-01-05", "hour": "14"}, {"date": "2026-01-05", "hour": None}]) == (
        [("2026-01-05", "14")], [{"date": "2026-01-05", "hour": None}])
    assert parse_now("2026-01-05T15:20:00Z") == datetime(2026, 1, 5, 15, 20, tzinfo=UTC)
    assert parse_now("2026-01-05T10:20:00-05:00") == datetime(2026, 1, 5, 15, 20, tzinfo=UTC)
    assert parse_now("2026-01-05T15:20:00") == datetime(2026, 1, 5, 15, 20, tzinfo=UTC)


@pytest.mark.parametrize("argv, message", [
    (["--hours", "0"], "argument --hours: must be a whole number > 0, got '0'"),
    (["--partition", "2026-01-05 14"], "argument --partition: not a partition: '2026-01-05 14'"),
    (["--now", "yesterday"], "argument --now: not an ISO 8601 time: 'yesterday'"),
    (["--entity", "orders"], "argument --entity: invalid choice: 'orders'"),
])
def test_bad_arguments_exit_2_naming_the_option(argv, message, capsys):
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_bad_configuration_exits_2_naming_the_setting(monkeypatch, capsys):
    monkeypatch.setenv("STOCKLAKE_QUALITY_LATEST_HOURS", "0")
    assert main([]) == 2
    assert capsys.readouterr().err == ("data_quality: configuration error: quality.latest_hours: must be greater "
                                       "than 0, got 0\n")
    monkeypatch.delenv("STOCKLAKE_QUALITY_LATEST_HOURS")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY", raising=False)
    assert main([]) == 2
    assert "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY must be set" in capsys.readouterr().err
