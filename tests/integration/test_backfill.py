"""The historical backfill against the real local MinIO and Spark: the job runs in-process through
run(spark, settings, args) (and its main, the CLI, at the end), from the shipped sample file and from the local
Finnhub stand-in, with exact Silver rows and exact counts across re-runs and corrections."""
from __future__ import annotations

import csv
import hashlib
import json
import logging
import os
from datetime import date, datetime, timezone

import pytest
from delta.tables import DeltaTable

from conf.settings import load_settings
from spark_jobs.backfill import NO_CANDLE_ACCESS, UsageError, parse_args, run
from spark_jobs.backfill import main as backfill_main
from tests.integration.stack import REPO
from tests.standins.finnhub_rest_server import Candle, FinnhubRestStandIn

pytestmark = pytest.mark.integration

SAMPLE = REPO / "producer" / "samples" / "daily-bars-sample.csv"
SYMBOLS = ["AAPL", "MSFT", "NVDA"]
RANGE = ["--from", "2026-01-05", "--to", "2026-01-09"]
KEY = "sk-candles-SECRET-a71e"
# Silver columns compared exactly (the rest is lineage set at run time: kafka_timestamp, ingest_time).
COLUMNS = ["event_id", "source", "symbol", "trading_date", "bar_ts", "open", "high", "low", "close", "volume",
           "kafka_topic", "kafka_partition", "date", "hour"]


def day_ms(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=timezone.utc).timestamp() * 1000)


def expected_row(source: str, symbol: str, day: str, o: float, h: float, l: float, c: float,  # noqa: E741
                 v: float) -> tuple:
    """A Silver row worked out independently of the job: the id is sha256("source|symbol|date")."""
    event_id = hashlib.sha256(f"{source}|{symbol}|{day}".encode()).hexdigest()
    return (event_id, source, symbol, day, day_ms(day), o, h, l, c, v, f"backfill:{source}", -1, day, "00")


def sample_rows() -> list[tuple]:
    with SAMPLE.open(newline="") as handle:
        return [expected_row("file", r["symbol"], r["date"], float(r["open"]), float(r["high"]), float(r["low"]),
                             float(r["close"]), float(r["volume"])) for r in csv.DictReader(handle)]


def table(spark, settings, layer: str):
    return spark.read.format("delta").load(settings.lake_uri(f"{layer}/bars"))


def silver(spark, settings) -> list[tuple]:
    return sorted(tuple(row) for row in table(spark, settings, "silver").select(*COLUMNS).collect())


def counts(spark, settings) -> tuple[int, int, int]:
    return tuple(table(spark, settings, layer).count() for layer in ("bronze", "silver", "quarantine"))


def test_file_backfill_is_exact_idempotent_and_takes_corrections(spark, isolated, tmp_path):
    settings, _ = isolated
    load = ["--symbols", ",".join(SYMBOLS), *RANGE, "--file"]

    first = run(spark, settings, parse_args([*load, str(SAMPLE)]))
    assert silver(spark, settings) == sorted(sample_rows())
    assert {k: first[k] for k in ("source", "bars_read", "ignored", "no_data_symbols", "bars", "valid",
                                  "quarantined", "quarantined_by_reason", "duplicates_in_input", "bronze_inserted",
                                  "bronze_already_present", "quarantine_inserted", "silver")} == {
        "source": "file", "bars_read": 15, "ignored": {"other_symbols": 0, "outside_date_range": 0},
        "no_data_symbols": [], "bars": 15, "valid": 15, "quarantined": 0, "quarantined_by_reason": {},
        "duplicates_in_input": 0, "bronze_inserted": 15, "bronze_already_present": 0, "quarantine_inserted": 0,
        "silver": {"inserted": 15, "updated": 0, "unchanged": 0}}
    assert first["per_symbol"] == {s: {"bars": 5, "valid": 5, "quarantined": 0, "inserted": 5, "updated": 0,
                                       "unchanged": 0} for s in SYMBOLS}
    assert counts(spark, settings) == (15, 15, 0)
    detail = DeltaTable.forPath(spark, settings.lake_uri("silver/bars")).detail().first()
    assert detail["partitionColumns"] == ["date", "hour"]

    # The same file again: nothing new anywhere.
    again = run(spark, settings, parse_args([*load, str(SAMPLE)]))
    assert (again["silver"], again["bronze_inserted"], again["bronze_already_present"]) == (
        {"inserted": 0, "updated": 0, "unchanged": 15}, 0, 15)
    assert counts(spark, settings) == (15, 15, 0)
    assert silver(spark, settings) == sorted(sample_rows())

    # The vendor corrects one close; a bad row (negative low) must not clobber the good bar it claims to correct;
    # one row is unchanged; one is another symbol's, one is outside the range.
    corrections = tmp_path / "corrections.csv"
    corrections.write_text("symbol,date,open,high,low,close,volume\n"
                           "AAPL,2026-01-07,192.10,192.80,189.95,190.55,51207800\n"
                           "MSFT,2026-01-05,415.20,418.90,413.75,417.60,21345600\n"
                           "NVDA,2026-01-08,874.10,881.35,-861.80,866.40,48901200\n"
                           "TSLA,2026-01-08,250.00,255.00,249.00,254.00,1000\n"
                           "AAPL,2026-01-12,190.00,191.00,189.00,190.50,1000\n")
    corrected = run(spark, settings, parse_args([*load, str(corrections)]))
    assert {k: corrected[k] for k in ("bars_read", "ignored", "valid", "quarantined", "quarantined_by_reason",
                                      "bronze_inserted", "quarantine_inserted", "silver")} == {
        "bars_read": 5, "ignored": {"other_symbols": 1, "outside_date_range": 1}, "valid": 2, "quarantined": 1,
        "quarantined_by_reason": {"low:exclusiveMinimum": 1}, "bronze_inserted": 2, "quarantine_inserted": 1,
        "silver": {"inserted": 0, "updated": 1, "unchanged": 1}}
    assert corrected["per_symbol"]["AAPL"] == {"bars": 1, "valid": 1, "quarantined": 0, "inserted": 0,
                                               "updated": 1, "unchanged": 0}
    expected = [expected_row("file", "AAPL", "2026-01-07", 192.10, 192.80, 189.95, 190.55, 51207800.0)
                if row[2:4] == ("AAPL", "2026-01-07") else row for row in sample_rows()]
    assert silver(spark, settings) == sorted(expected)
    # Bronze keeps both versions of the corrected bar and the bad row; the unchanged one once.
    assert counts(spark, settings) == (17, 15, 1)
    quarantined = table(spark, settings, "quarantine").first()
    assert (quarantined["reason"], quarantined["topic"], json.loads(quarantined["value"])["low"]) == (
        "low:exclusiveMinimum", "backfill:file", -861.8)

    # The corrections again: nothing new, the bad row not quarantined twice.
    repeat = run(spark, settings, parse_args([*load, str(corrections)]))
    assert (repeat["silver"], repeat["bronze_inserted"], repeat["quarantine_inserted"]) == (
        {"inserted": 0, "updated": 0, "unchanged": 2}, 0, 0)
    assert counts(spark, settings) == (17, 15, 1)

    # dbt reads Silver with delta-rs into DuckDB: the table must come through with plain types.
    import duckdb
    from deltalake import DeltaTable as RustDeltaTable

    options = {"AWS_ENDPOINT_URL": settings.lake.s3_endpoint, "AWS_REGION": settings.lake.s3_region,
               "AWS_ALLOW_HTTP": "true", "AWS_ACCESS_KEY_ID": os.environ["AWS_ACCESS_KEY_ID"],
               "AWS_SECRET_ACCESS_KEY": os.environ["AWS_SECRET_ACCESS_KEY"]}
    arrow = RustDeltaTable(f"s3://{settings.lake.bucket}/silver/bars", storage_options=options).to_pyarrow_table()
    bars = duckdb.sql("select symbol, count(*), min(trading_date), max(close), sum(volume) from arrow "
                      "group by symbol order by symbol").fetchall()
    assert bars == [("AAPL", 5, "2026-01-05", 191.95, 254332300.0), ("MSFT", 5, "2026-01-05", 419.45, 109889800.0),
                    ("NVDA", 5, "2026-01-05", 898.6, 231371100.0)]


def candles(symbol: str, base: float) -> list[Candle]:
    start = int(datetime(2026, 1, 5, tzinfo=timezone.utc).timestamp())
    return [Candle(start + day * 86_400, round(base + day, 2), round(base + day + 2, 2), round(base + day - 1, 2),
                   round(base + day + 1, 2), 1_000_000 + day) for day in range(6)]  # the 6th is past --to


def test_finnhub_backfill_with_a_candle_key_lands_exact_bars(spark, isolated, monkeypatch):
    settings, _ = isolated
    with FinnhubRestStandIn(KEY, candle_access=True) as server:
        server.set_candles("AAPL", candles("AAPL", 190.0))
        server.set_candles("MSFT", candles("MSFT", 415.0))
        server.enqueue_candles("MSFT", (429, {"error": "API limit reached."}, {"Retry-After": "1"}))
        # NVDA has no candles: {"s":"no_data"}.
        monkeypatch.setenv("STOCKLAKE_FINNHUB_REST_URL", server.url)
        monkeypatch.setenv("FINNHUB_API_KEY", KEY)
        settings = load_settings()
        report = run(spark, settings, parse_args(["--symbols", "AAPL,MSFT,NVDA", *RANGE, "--finnhub"]))
        requests = server.candle_requests()
    assert [(r.symbol, r.status) for r in requests] == [("AAPL", 200), ("MSFT", 429), ("MSFT", 200),
                                                        ("NVDA", 200)]
    assert all(KEY not in r.target and r.token_via == "header" for r in requests)
    expected = sorted(expected_row("finnhub", symbol, date(2026, 1, 5 + day).isoformat(), c.o, c.h, c.l, c.c,
                                   float(c.v))
                      for symbol, base in (("AAPL", 190.0), ("MSFT", 415.0))
                      for day, c in enumerate(candles(symbol, base)[:5]))
    assert silver(spark, settings) == expected
    assert {k: report[k] for k in ("source", "bars_read", "no_data_symbols", "valid", "quarantined", "silver")} == {
        "source": "finnhub", "bars_read": 10, "no_data_symbols": ["NVDA"], "valid": 10, "quarantined": 0,
        "silver": {"inserted": 10, "updated": 0, "unchanged": 0}}
    assert report["per_symbol"]["NVDA"] == {"bars": 0, "valid": 0, "quarantined": 0, "inserted": 0, "updated": 0,
                                            "unchanged": 0}


def test_plain_finnhub_key_stops_the_backfill_before_writing(spark, isolated, monkeypatch):
    settings, _ = isolated
    with FinnhubRestStandIn(KEY) as server:  # the free plan: /stock/candle is 403
        monkeypatch.setenv("STOCKLAKE_FINNHUB_REST_URL", server.url)
        monkeypatch.setenv("FINNHUB_API_KEY", KEY)
        with pytest.raises(UsageError) as raised:
            run(spark, load_settings(), parse_args(["--symbols", "AAPL,MSFT", *RANGE, "--finnhub"]))
    assert str(raised.value) == NO_CANDLE_ACCESS
    assert not DeltaTable.isDeltaTable(spark, settings.lake_uri("bronze/bars"))


def test_backfill_cli_from_the_sample_file(spark, isolated, tmp_path, capsys, caplog):
    """The job's main (options, summary line, JSON report, progress lines) on the tests' session; the file entry
    point itself is run by tests/integration/test_bad_config.py."""
    settings, _ = isolated
    out = tmp_path / "report.json"
    with caplog.at_level(logging.INFO, logger="stocklake.backfill"):
        assert backfill_main([*RANGE, "--symbols", "AAPL,MSFT", "--file", str(SAMPLE), "--json", str(out)],
                             spark=spark) == 0
    assert ("backfill file 2026-01-05..2026-01-09: 15 bars read (5 ignored), 10 valid, 0 quarantined; "
            "silver/bars 10 inserted, 0 updated, 0 unchanged; bronze/bars +10") in capsys.readouterr().out.splitlines()
    report = json.loads(out.read_text())
    assert (report["symbols"], report["ignored"], report["silver"], report["tables"]["silver"]) == (
        ["AAPL", "MSFT"], {"other_symbols": 5, "outside_date_range": 0},
        {"inserted": 10, "updated": 0, "unchanged": 0}, f"s3a://{settings.lake.bucket}/silver/bars")
    assert [json.loads(r.getMessage())["event"] for r in caplog.records][-1] == "backfill_finished"
