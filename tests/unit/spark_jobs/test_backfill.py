"""The historical backfill's pieces: bar events and ids, Finnhub candles through the real HTTP client against the
local stand-in (fake clock: waits are exact and instant), file parsing with Spark, the bar.v1 validation with the
stream's transforms, and the CLI's argument and Finnhub-key errors."""
from __future__ import annotations

import hashlib
import json
import re
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Iterator

import pytest
from pyspark.sql import functions as F
from pyspark.sql.types import DoubleType, LongType, StringType, StructField, StructType

from conf.contracts.schemas import load_schema
from conf.settings import load_settings
from conf.contracts.bars import FILE_COLUMNS, bar_event_id, day_start_ms, file_row_event
from producer.finnhub_candles import CandleClient, CandleFetchFailed, CandleFormatError, candle_events
from producer.errors import AccessDenied, ApiKeyRejected
from conf.contracts.events import EventValidator
from spark_jobs import backfill
from spark_jobs.backfill import (NO_CANDLE_ACCESS, OHLC_INCONSISTENT, Bars, UsageError, bronze_frame,
                                 first_per_event_id, parse_args, read_file, select_file_rows, silver_outcomes,
                                 validate_bars)
from conf.contracts.spark import struct_type
from spark_jobs.lib.transforms import BARS, BATCH_ENTITIES, ENTITIES, quarantine_rows, silver_rows
from tests.standins.finnhub_rest_server import Candle, FinnhubRestStandIn, candle_body

REPO = Path(__file__).resolve().parents[3]
SAMPLE = REPO / "producer" / "samples" / "daily-bars-sample.csv"
SCHEMA = load_schema("bar.v1")
KEY = "sk-candles-SECRET-81d2"
JAN5 = 1767571200   # 2026-01-05 00:00 UTC, epoch seconds
DAY = 86_400
RUN_TIME = datetime(2026, 1, 10, 12, 0, tzinfo=timezone.utc)
AAPL_JAN5 = {  # the sample's first row as a bar.v1 event
    "event_id": "b6365543efd3167a5f77589be22a4badbab0a329ace3697b007f1d9eede0bd6d", "schema_version": 1,
    "source": "file", "symbol": "AAPL", "trading_date": "2026-01-05", "bar_ts": 1767571200000, "open": 189.5,
    "high": 191.2, "low": 188.75, "close": 190.8, "volume": 52140300.0}


# -- ids and events ---------------------------------------------------------------------------------------

def test_bar_id_hashes_source_symbol_and_date_like_the_other_ids():
    assert bar_event_id("file", "AAPL", "2026-01-05") == AAPL_JAN5["event_id"]
    assert AAPL_JAN5["event_id"] == hashlib.sha256(b"file|AAPL|2026-01-05").hexdigest()
    assert bar_event_id("finnhub", "AAPL", "2026-01-05") != AAPL_JAN5["event_id"]


def test_bar_contract_and_entity():
    assert struct_type(SCHEMA) == StructType([
        StructField("event_id", StringType(), False), StructField("schema_version", LongType(), False),
        StructField("source", StringType(), False), StructField("symbol", StringType(), False),
        StructField("trading_date", StringType(), False), StructField("bar_ts", LongType(), False),
        StructField("open", DoubleType(), False), StructField("high", DoubleType(), False),
        StructField("low", DoubleType(), False), StructField("close", DoubleType(), False),
        StructField("volume", DoubleType(), False)])
    assert EventValidator("bar.v1").reason(AAPL_JAN5) is None
    # Not streamed: the jobs iterating ENTITIES must not pick bars up.
    assert "bars" not in ENTITIES and BATCH_ENTITIES == {"bars": BARS}
    assert (BARS.table("silver"), BARS.event_ts_field, BARS.event_time_column) == ("silver/bars", "bar_ts",
                                                                                   "bar_time")


def test_file_row_becomes_an_event_with_numbers_as_floats():
    row = {"symbol": " AAPL", "date": "2026-01-05", "open": "189.50", "high": "191.20", "low": "188.75",
           "close": "190.80", "volume": "52140300"}
    assert file_row_event(row) == AAPL_JAN5
    assert list(file_row_event(row)) == list(SCHEMA["properties"])  # the schema's order


@pytest.mark.parametrize("changes, expected, reason", [
    ({"open": "abc"}, {"open": "abc"}, "open:type"),          # not a number: kept, so the contract names it
    ({"open": "1_000"}, {"open": "1_000"}, "open:type"),      # Python would parse it; a CSV reader would not
    ({"close": "nan"}, {"close": "nan"}, "close:type"),       # NaN is not JSON
    ({"open": -1.5}, {"open": -1.5}, "open:exclusiveMinimum"),
    ({"volume": "-3"}, {"volume": -3.0}, "volume:minimum"),
    ({"high": ""}, {"high": None}, "high:required"),          # an empty cell is a missing value
    ({"date": "2026-02-30"}, {"trading_date": "2026-02-30", "bar_ts": None}, "bar_ts:required"),
    ({"date": "05/01/2026"}, {"trading_date": "05/01/2026", "bar_ts": None}, "bar_ts:required"),
])
def test_file_values_are_passed_on_for_the_contract_to_judge(changes, expected, reason):
    row = {"symbol": "AAPL", "date": "2026-01-05", "open": 189.5, "high": 191.2, "low": 188.75, "close": 190.8,
           "volume": 52140300, **changes}
    event = file_row_event(row)
    for name, value in expected.items():
        assert event.get(name) == value
    assert EventValidator("bar.v1").reason(event) == reason


def test_file_rows_of_other_symbols_or_dates_are_ignored_and_counted():
    rows = [{"symbol": s, "date": d, "open": 1, "high": 2, "low": 1, "close": 2, "volume": 5}
            for s, d in [("AAPL", "2026-01-05"), ("MSFT", "2026-01-05"), ("AAPL", "2026-01-04"),
                         ("AAPL", "2026-01-10"), ("AAPL", "garbage"), ("AAPL", "2026-01-09"), (None, "2026-01-05")]]
    bars = select_file_rows(rows, ["AAPL"], date(2026, 1, 5), date(2026, 1, 9))
    assert bars.read == 7
    assert dict(bars.ignored) == {"other_symbols": 2, "outside_date_range": 2}
    # The unreadable date is kept: the contract quarantines it rather than it vanishing as "outside the range".
    assert [e["trading_date"] for e in bars.events] == ["2026-01-05", "garbage", "2026-01-09"]


# -- Finnhub candles -> events ----------------------------------------------------------------------------

CANDLES = [Candle(JAN5, 189.5, 191.2, 188.75, 190.8, 52140300), Candle(JAN5 + DAY, 190.9, 192.45, 189.6, 191.95,
                                                                         48763200)]


def test_candle_response_becomes_bar_events_with_exact_values_and_ids():
    body = candle_body(CANDLES)
    assert body == {"c": [190.8, 191.95], "h": [191.2, 192.45], "l": [188.75, 189.6], "o": [189.5, 190.9],
                    "s": "ok", "t": [1767571200, 1767657600], "v": [52140300, 48763200]}
    assert candle_events("AAPL", body) == [
        {"event_id": hashlib.sha256(b"finnhub|AAPL|2026-01-05").hexdigest(), "schema_version": 1,
         "source": "finnhub", "symbol": "AAPL", "trading_date": "2026-01-05", "bar_ts": 1767571200000,
         "open": 189.5, "high": 191.2, "low": 188.75, "close": 190.8, "volume": 52140300.0},
        {"event_id": hashlib.sha256(b"finnhub|AAPL|2026-01-06").hexdigest(), "schema_version": 1,
         "source": "finnhub", "symbol": "AAPL", "trading_date": "2026-01-06", "bar_ts": 1767657600000,
         "open": 190.9, "high": 192.45, "low": 189.6, "close": 191.95, "volume": 48763200.0},
    ]
    assert candle_events("AAPL", {"s": "no_data"}) == []


@pytest.mark.parametrize("body, message", [
    ([1, 2], "not a JSON object"),
    ({"error": "boom"}, "unexpected status s=None"),
    ({"s": "ok", "t": [JAN5], "o": [1], "h": [1], "l": [1], "c": [1]}, "missing or non-array field(s) v"),
    ({"s": "ok", "t": [JAN5, JAN5 + DAY], "o": [1], "h": [1], "l": [1], "c": [1], "v": [1]}, "different lengths"),
    ({"s": "ok", "t": [JAN5 + 0.5], "o": [1], "h": [1], "l": [1], "c": [1], "v": [1]}, "is not epoch seconds"),
])
def test_a_body_that_is_not_the_candle_format_is_refused(body, message):
    with pytest.raises(CandleFormatError, match=re.escape(message)):
        candle_events("AAPL", body)


# -- the candle client against the stand-in ---------------------------------------------------------------

class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def time(self) -> float:
        return 1_767_000_000.0 + self.now

    def sleep(self, seconds: float) -> None:
        assert seconds > 0
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture
def candles_server() -> Iterator[tuple[FinnhubRestStandIn, FakeClock]]:
    clock = FakeClock()
    with FinnhubRestStandIn(KEY, clock=clock.monotonic, candle_access=True) as server:
        server.set_candles("AAPL", CANDLES + [Candle(JAN5 + 7 * DAY, 1, 1, 1, 1, 1)])
        yield server, clock


def client_for(server: FinnhubRestStandIn, clock: FakeClock, key: str = KEY, **env: str) -> CandleClient:
    settings = load_settings({"STOCKLAKE_FINNHUB_REST_URL": server.url, **env})
    return CandleClient(settings, key, clock=clock.monotonic, wall_clock=clock.time, sleep=clock.sleep,
                        rand=lambda: 1.0)


def test_client_asks_for_daily_candles_of_the_range_with_the_key_in_the_header_only(candles_server):
    server, clock = candles_server
    client = client_for(server, clock)
    body = client.candles("AAPL", date(2026, 1, 5), date(2026, 1, 9))
    assert body == candle_body(CANDLES)  # the candle a week later is outside the range
    assert client.candles("MSFT", date(2026, 1, 5), date(2026, 1, 9)) == {"s": "no_data"}
    first = server.candle_requests("AAPL")[0]
    # As finnhub-python's Client sends it (base URL + "/" + "/stock/candle").
    assert first.target == "/api/v1//stock/candle?symbol=AAPL&resolution=D&from=1767571200&to=1768003199"
    assert (first.token_via, first.headers["X-Finnhub-Token"]) == ("header", "<token>")
    assert all(KEY not in r.target for r in server.requests)
    # The quote poller's rate limit: 55 calls a minute, evenly spaced.
    assert [r.at for r in server.requests] == pytest.approx([1000.0, 1001.09091])  # 60/55 s, to the µs
    assert (client.calls, client.rate_limited, client.errors) == (2, 0, 0)


def test_client_paces_calls_at_the_configured_rate(candles_server):
    server, clock = candles_server
    client = client_for(server, clock, STOCKLAKE_FINNHUB_QUOTE_CALLS_PER_MINUTE="30")
    for symbol in ("AAPL", "MSFT", "NVDA"):
        client.candles(symbol, date(2026, 1, 5), date(2026, 1, 9))
    assert [r.at for r in server.requests] == [1000.0, 1002.0, 1004.0]
    assert clock.sleeps == [2.0, 2.0]


def test_client_waits_out_429_with_retry_after_then_backoff(candles_server):
    server, clock = candles_server
    limited = {"error": "API limit reached. Please try again later. Remaining Limit: 0"}
    server.enqueue_candles("AAPL", (429, limited, {"Retry-After": "7"}), (429, limited), (503, "busy"))
    client = client_for(server, clock)
    assert client.candles("AAPL", date(2026, 1, 5), date(2026, 1, 9)) == candle_body(CANDLES)
    # Retry-After 7 s; then no header: backoff from finnhub.rate_limited_initial_seconds (5 s, rand=1 -> 5);
    # then a 503: the error backoff from finnhub.reconnect_initial_seconds (1 s).
    assert client.waits == [7.0, 5.0, 1.0]
    assert [r.status for r in server.requests] == [429, 429, 503, 200]
    assert (client.calls, client.rate_limited, client.errors) == (4, 2, 1)


def test_client_gives_up_after_max_attempts(candles_server):
    server, clock = candles_server
    server.enqueue_candles("AAPL", *[(500, "oops")] * 3)
    settings = load_settings({"STOCKLAKE_FINNHUB_REST_URL": server.url})
    client = CandleClient(settings, KEY, clock=clock.monotonic, wall_clock=clock.time, sleep=clock.sleep,
                          rand=lambda: 1.0, max_attempts=3)
    with pytest.raises(CandleFetchFailed, match=r"^Finnhub /stock/candle AAPL failed 3 times, the last: HTTP 500$"):
        client.candles("AAPL", date(2026, 1, 5), date(2026, 1, 9))
    assert client.waits == [1.0, 2.0]


def test_client_stops_at_once_on_401_403_and_404(candles_server):
    server, clock = candles_server
    with pytest.raises(ApiKeyRejected, match="HTTP 401"):
        client_for(server, clock, key="wrong-key").candles("AAPL", date(2026, 1, 5), date(2026, 1, 9))
    server.enqueue_candles("AAPL", (403, {"error": "You don't have access to this resource."}))
    with pytest.raises(AccessDenied, match="HTTP 403"):
        client_for(server, clock).candles("AAPL", date(2026, 1, 5), date(2026, 1, 9))
    server.enqueue_candles("AAPL", (404, {"error": "Not found"}))
    with pytest.raises(CandleFetchFailed, match="HTTP 404$"):
        client_for(server, clock).candles("AAPL", date(2026, 1, 5), date(2026, 1, 9))
    assert [r.status for r in server.requests] == [401, 403, 404]


def test_fetch_reports_no_data_symbols_and_maps_403_to_the_use_file_message(candles_server):
    server, clock = candles_server
    bars = backfill.fetch_finnhub(client_for(server, clock), ["AAPL", "MSFT"], date(2026, 1, 5),
                                  date(2026, 1, 5))
    assert (bars.read, bars.no_data, [e["trading_date"] for e in bars.events]) == (1, ["MSFT"], ["2026-01-05"])
    with FinnhubRestStandIn(KEY, clock=clock.monotonic) as plain:  # a key without candle access
        with pytest.raises(UsageError) as raised:
            backfill.fetch_finnhub(client_for(plain, clock), ["AAPL"], date(2026, 1, 5), date(2026, 1, 9))
    assert str(raised.value) == NO_CANDLE_ACCESS


def test_standin_candles_honour_the_range_and_check_their_parameters(candles_server):
    server, clock = candles_server
    client = client_for(server, clock)
    assert client.candles("AAPL", date(2026, 1, 12), date(2026, 1, 12)) == candle_body([
        Candle(JAN5 + 7 * DAY, 1, 1, 1, 1, 1)])
    assert client.candles("AAPL", date(2026, 1, 7), date(2026, 1, 9)) == {"s": "no_data"}


# -- the CLI ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("argv, message", [
    (["--to", "2026-01-09", "--file", "a.csv"], "the following arguments are required: --from"),
    (["--from", "2026-01-05", "--to", "2026-01-09"], "one of the arguments --file --finnhub is required"),
    (["--from", "2026-01-05", "--to", "2026-01-09", "--file", "a.csv", "--finnhub"],
     "argument --finnhub: not allowed with argument --file"),
    (["--from", "2026-01-09", "--to", "2026-01-05", "--finnhub"], "--from 2026-01-09 is after --to 2026-01-05"),
    (["--from", "2026-1-5", "--to", "2026-01-09", "--finnhub"], "argument --from: not a date YYYY-MM-DD: '2026-1-5'"),
    (["--from", "2026-01-05", "--to", "2026-01-09", "--file", "bars.json"],
     "argument --file: must be a .csv or .parquet file, got 'bars.json'"),
    (["--from", "2026-01-05", "--to", "2026-01-09", "--finnhub", "--symbols", " , "],
     "argument --symbols: no symbol given"),
])
def test_bad_arguments_exit_2_with_one_line(argv, message, capsys):
    with pytest.raises(SystemExit) as exited:
        parse_args(argv)
    assert exited.value.code == 2
    assert capsys.readouterr().err == f"spark_jobs/backfill.py: error: {message} (see --help)\n"


def test_arguments():
    args = parse_args(["--from", "2026-01-05", "--to", "2026-01-09", "--symbols", "AAPL, MSFT,AAPL",
                       "--file", "s3a://bucket/bars.parquet", "--json", "out.json"])
    assert (args.start, args.end, args.symbols, args.file, args.finnhub, args.json) == (
        date(2026, 1, 5), date(2026, 1, 9), ["AAPL", "MSFT"], "s3a://bucket/bars.parquet", False, Path("out.json"))


def test_main_with_a_key_without_candle_access_exits_2_saying_to_use_file(monkeypatch, capsys):
    with FinnhubRestStandIn(KEY) as plain:
        monkeypatch.setenv("STOCKLAKE_FINNHUB_REST_URL", plain.url)
        monkeypatch.setenv("FINNHUB_API_KEY", KEY)
        code = backfill.main(["--from", "2026-01-05", "--to", "2026-01-09", "--symbols", "AAPL,MSFT", "--finnhub"])
        statuses = [r.status for r in plain.requests]
    captured = capsys.readouterr()
    assert code == 2
    assert captured.err == f"backfill: error: {NO_CANDLE_ACCESS}\n"
    assert statuses == [403]  # stopped at the first symbol
    assert KEY not in captured.err + captured.out


def test_main_without_a_key_exits_2(monkeypatch, capsys):
    monkeypatch.delenv("FINNHUB_API_KEY", raising=False)
    assert backfill.main(["--from", "2026-01-05", "--to", "2026-01-09", "--finnhub"]) == 2
    assert capsys.readouterr().err.startswith("backfill: error: FINNHUB_API_KEY is not set")


# -- files, read by Spark ---------------------------------------------------------------------------------

def test_sample_csv_reads_as_three_symbols_by_five_days(spark):
    bars = read_file(spark, str(SAMPLE), ["AAPL", "MSFT", "NVDA"], date(2026, 1, 5), date(2026, 1, 9))
    assert (bars.source, bars.read, dict(bars.ignored), len(bars.events)) == ("file", 15, {}, 15)
    assert bars.events[0] == AAPL_JAN5
    assert [(e["symbol"], e["trading_date"]) for e in bars.events[:6]] == [
        ("AAPL", "2026-01-05"), ("AAPL", "2026-01-06"), ("AAPL", "2026-01-07"), ("AAPL", "2026-01-08"),
        ("AAPL", "2026-01-09"), ("MSFT", "2026-01-05")]
    narrower = read_file(spark, str(SAMPLE), ["MSFT"], date(2026, 1, 6), date(2026, 1, 7))
    assert (narrower.read, dict(narrower.ignored), len(narrower.events)) == (
        15, {"other_symbols": 10, "outside_date_range": 3}, 2)


def test_parquet_with_typed_columns_reads_as_the_same_events(spark, tmp_path):
    rows = [("AAPL", date(2026, 1, 5), 189.5, 191.2, 188.75, 190.8, 52140300),
            ("AAPL", date(2026, 1, 6), 190.9, 192.45, 189.6, 191.95, 48763200)]
    path = str(tmp_path / "bars.parquet")
    spark.createDataFrame(rows, "symbol string, date date, open double, high double, low double, close double, "
                                "volume long").coalesce(1).write.parquet(path)
    bars = read_file(spark, path, ["AAPL"], date(2026, 1, 5), date(2026, 1, 9))
    csv = read_file(spark, str(SAMPLE), ["AAPL"], date(2026, 1, 5), date(2026, 1, 6))
    assert bars.events == csv.events
    assert bars.events[0] == AAPL_JAN5


def test_file_with_wrong_columns_is_refused_naming_them(spark, tmp_path):
    path = tmp_path / "bars.csv"
    path.write_text("symbol,day,open,high,low,close,volume,vwap\nAAPL,2026-01-05,1,2,1,2,3,1.5\n")
    with pytest.raises(UsageError) as raised:
        read_file(spark, str(path), ["AAPL"], date(2026, 1, 5), date(2026, 1, 9))
    assert str(raised.value) == (f"--file {path}: missing column(s) date; unknown column(s) day, vwap "
                                 f"(expected exactly: {', '.join(FILE_COLUMNS)})")
    with pytest.raises(UsageError, match=r"^--file .*nowhere\.csv: cannot read it"):
        read_file(spark, str(tmp_path / "nowhere.csv"), ["AAPL"], date(2026, 1, 5), date(2026, 1, 9))


# -- validation with the stream's transforms --------------------------------------------------------------

def validated(spark, events):
    return validate_bars(bronze_frame(spark, Bars("file", events), RUN_TIME), SCHEMA, 300)


def test_bad_bars_are_quarantined_with_the_contracts_reason(spark):
    good = AAPL_JAN5
    events = [
        good,
        {**good, "open": -1.5},                              # negative price
        {**good, "volume": -1.0},
        {**good, "source": "vendor"},
        {**good, "symbol": "aapl"},
        {**good, "high": 180.0},                             # below open, close and low
        {**good, "low": 195.0, "high": 196.0},               # low above open and close
        {**good, "bar_ts": day_start_ms(date(2026, 1, 12))},  # two days past the run's start
        {**good, "extra": 1},
    ]
    parsed = validated(spark, events)
    assert [row["reasons"] for row in parsed.orderBy("offset").collect()] == [
        [], ["open:exclusiveMinimum"], ["volume:minimum"], ["source:enum"], ["symbol:pattern"],
        [OHLC_INCONSISTENT], [OHLC_INCONSISTENT], ["bar_ts:future"], ["additionalProperties"]]
    # The producer-side validator agrees on every contract reason.
    validator = EventValidator("bar.v1")
    assert [validator.reason(e) for e in events[1:5]] == ["open:exclusiveMinimum", "volume:minimum",
                                                           "source:enum", "symbol:pattern"]
    quarantined = quarantine_rows(parsed).orderBy("offset").collect()
    assert [(r["topic"], r["partition"], r["offset"], r["reason"]) for r in quarantined][:2] == [
        ("backfill:file", -1, 1, "open:exclusiveMinimum"), ("backfill:file", -1, 2, "volume:minimum")]
    assert json.loads(quarantined[0]["value"]) == {**good, "open": -1.5}


def test_silver_bars_are_partitioned_by_trading_date_and_hour_00(spark):
    silver = silver_rows(validated(spark, [AAPL_JAN5]), BARS)
    rows = silver.withColumn("bar_time", F.date_format("bar_time", "yyyy-MM-dd HH:mm:ss")).collect()
    assert len(rows) == 1
    row = rows[0].asDict()
    assert {k: row[k] for k in ("event_id", "symbol", "trading_date", "bar_ts", "open", "volume", "kafka_topic",
                                "kafka_partition", "kafka_offset", "date", "hour")} == {
        "event_id": AAPL_JAN5["event_id"], "symbol": "AAPL", "trading_date": "2026-01-05",
        "bar_ts": 1767571200000, "open": 189.5, "volume": 52140300.0, "kafka_topic": "backfill:file",
        "kafka_partition": -1, "kafka_offset": 0, "date": "2026-01-05", "hour": "00"}
    assert row["bar_time"] == "2026-01-05 00:00:00"  # rendered in the session time zone, UTC


def test_first_bar_per_id_wins_and_outcomes_against_silver(spark):
    corrected = {**AAPL_JAN5, "close": 191.0}
    jan6 = file_row_event({"symbol": "AAPL", "date": "2026-01-06", "open": 1, "high": 2, "low": 1, "close": 2,
                           "volume": 3})
    source = first_per_event_id(silver_rows(validated(spark, [corrected, AAPL_JAN5, jan6]), BARS))
    assert sorted((r["trading_date"], r["close"], r["kafka_offset"]) for r in source.collect()) == [
        ("2026-01-05", 191.0, 0), ("2026-01-06", 2.0, 2)]
    existing = silver_rows(validated(spark, [AAPL_JAN5]), BARS)
    assert sorted(tuple(r) for r in silver_outcomes(source, existing).collect()) == [
        ("AAPL", "inserted"), ("AAPL", "updated")]
    assert [tuple(r) for r in silver_outcomes(existing, existing).collect()] == [("AAPL", "unchanged")]
