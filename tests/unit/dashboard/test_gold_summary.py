"""dashboard/gold_summary.py: Gold's summary after a build (rows, trades, freshness) and the Slack text made of it,
read from real DuckDB files whose tables are created from the Gold models' contracts (and from fakesnow for the
Snowflake target)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import date, datetime, timezone
from pathlib import Path

import pytest

from dashboard import gold_summary
from dashboard.gold_summary import CandleTable, GoldSummary, duration_text, notice_text
from dashboard.queries import DuckDBWarehouse
from tests.unit.dashboard.test_queries import (SNOWFLAKE_ENV, create_gold, write_gold,
                                               write_lock_held_by_another_process)

REPO = Path(__file__).resolve().parents[3]
CANDLE_MODELS = ("fct_candles_1m", "fct_candles_1h", "fct_candles_1d")
NOW = datetime(2026, 11, 20, 21, 3, tzinfo=timezone.utc)


def ts(text: str) -> datetime:
    return datetime.fromisoformat(text)


def candle(symbol: str, start: str, trade_count: int, last_trade: str) -> dict:
    return {"symbol": symbol, "candle_start": ts(start), "trading_date": date(2026, 11, 20),
            "trade_count": trade_count, "last_trade_time_utc": ts(last_trade)}


# 14 trades in four 1-minute candles. The newest trade (AAPL, 20:59:58.500) is not in the row inserted last, and
# the newest 1m / 1h / 1d periods are held by two symbols each.
GOLD = {
    "fct_candles_1m": [
        candle("AAPL", "2026-11-20 20:57:00", 3, "2026-11-20 20:57:59.250"),
        candle("AAPL", "2026-11-20 20:58:00", 4, "2026-11-20 20:58:41"),
        candle("AAPL", "2026-11-20 20:59:00", 2, "2026-11-20 20:59:58.500"),
        candle("TSLA", "2026-11-20 20:59:00", 5, "2026-11-20 20:59:30"),
    ],
    "fct_candles_1h": [
        candle("AAPL", "2026-11-20 19:00:00", 30, "2026-11-20 19:59:59"),
        candle("AAPL", "2026-11-20 20:00:00", 9, "2026-11-20 20:59:58.500"),
        candle("TSLA", "2026-11-20 20:00:00", 5, "2026-11-20 20:59:30"),
    ],
    "fct_candles_1d": [
        {"symbol": "AAPL", "trading_date": date(2026, 11, 19), "trade_count": 4000},
        {"symbol": "AAPL", "trading_date": date(2026, 11, 20), "trade_count": 4321},
        {"symbol": "TSLA", "trading_date": date(2026, 11, 20), "trade_count": 500},
    ],
}
TEXT = "Gold build ok: 1m candles 4 rows, 1h 3, 1d 3 (14 trades); newest trade 2026-11-20 20:59 UTC (3 min old)"


def expected_record(warehouse: str) -> dict:
    return {
        "warehouse": warehouse,
        "now": "2026-11-20T21:03:00Z",
        "tables": {"fct_candles_1m": {"rows": 4, "newest": "2026-11-20T20:59:00Z"},
                   "fct_candles_1h": {"rows": 3, "newest": "2026-11-20T20:00:00Z"},
                   "fct_candles_1d": {"rows": 3, "newest": "2026-11-20"}},
        "trades": 14,
        "newest_trade_utc": "2026-11-20T20:59:58.500Z",
        "age_seconds": 181.5,
        "text": TEXT,
    }


def summary(rows_1m: int, rows_1h: int, rows_1d: int, trades: int, newest_trade: datetime | None,
            now: datetime = NOW) -> GoldSummary:
    tables = (CandleTable("1m", "fct_candles_1m", rows_1m, None), CandleTable("1h", "fct_candles_1h", rows_1h, None),
              CandleTable("1d", "fct_candles_1d", rows_1d, None))
    return GoldSummary(warehouse="DuckDB gold.duckdb", tables=tables, trades=trades, newest_trade=newest_trade,
                       now=now)


# ---------------------------------------------------------------------------------------------------- the text

@pytest.mark.parametrize("seconds, text", [
    (0, "0 s"), (59.9, "59 s"), (60, "1 min"), (269, "4 min"), (3599, "59 min"), (3600, "1 h"),
    (3 * 3600 + 5 * 60 + 59, "3 h 5 min"), (86399, "23 h 59 min"), (86400, "1 d"), (2 * 86400 + 4 * 3600 + 59, "2 d 4 h"),
    (-30, "30 s"),
])
def test_durations_are_rounded_down_to_their_two_largest_units(seconds, text):
    assert duration_text(seconds) == text


def test_the_notice_gives_rows_per_interval_the_trades_and_the_newest_trades_age():
    busy = summary(12345, 456, 12, 98765, ts("2026-11-20 20:59:01"), now=datetime(2026, 11, 20, 21, 3, 30,
                                                                                   tzinfo=timezone.utc))
    assert busy.age_seconds == 269.0
    assert notice_text(busy) == ("Gold build ok: 1m candles 12,345 rows, 1h 456, 1d 12 (98,765 trades); "
                                 "newest trade 2026-11-20 20:59 UTC (4 min old)")
    stale = summary(1, 1, 1, 1, ts("2026-11-17 20:59:59"))
    assert notice_text(stale) == ("Gold build ok: 1m candles 1 rows, 1h 1, 1d 1 (1 trades); "
                                  "newest trade 2026-11-17 20:59 UTC (3 d old)")


def test_a_newest_trade_ahead_of_the_clock_says_so_and_empty_gold_has_no_trades_yet():
    ahead = summary(1, 1, 1, 7, ts("2026-11-20 21:03:30"))
    assert ahead.age_seconds == -30.0
    assert notice_text(ahead) == ("Gold build ok: 1m candles 1 rows, 1h 1, 1d 1 (7 trades); "
                                  "newest trade 2026-11-20 21:03 UTC (30 s ahead of this clock)")
    empty = summary(0, 0, 0, 0, None)
    assert empty.age_seconds is None
    assert notice_text(empty) == "Gold build ok: 1m candles 0 rows, 1h 0, 1d 0 (0 trades); no trades yet"


# --------------------------------------------------------------------------------------------- reading Gold

def test_summary_of_a_gold_file_counts_rows_and_trades_and_dates_the_newest_trade(tmp_path):
    warehouse = DuckDBWarehouse(write_gold(tmp_path / "gold.duckdb", GOLD, CANDLE_MODELS))
    with warehouse.read() as reader:
        read = gold_summary.read_summary(reader, warehouse.description, NOW)
    assert [(t.interval, t.table, t.rows, t.newest) for t in read.tables] == [
        ("1m", "fct_candles_1m", 4, ts("2026-11-20 20:59:00")),
        ("1h", "fct_candles_1h", 3, ts("2026-11-20 20:00:00")),
        ("1d", "fct_candles_1d", 3, ts("2026-11-20 00:00:00"))]
    assert (read.trades, read.newest_trade, read.age_seconds) == (14, ts("2026-11-20 20:59:58.500"), 181.5)
    assert gold_summary.summary_record(read) == expected_record(f"DuckDB {tmp_path / 'gold.duckdb'}")


def test_gold_tables_without_rows_summarize_as_empty(tmp_path):
    warehouse = DuckDBWarehouse(write_gold(tmp_path / "gold.duckdb", {}, CANDLE_MODELS))
    with warehouse.read() as reader:
        record = gold_summary.summary_record(gold_summary.read_summary(reader, "empty", NOW))
    assert record == {
        "warehouse": "empty", "now": "2026-11-20T21:03:00Z",
        "tables": {table: {"rows": 0, "newest": None} for table in CANDLE_MODELS},
        "trades": 0, "newest_trade_utc": None, "age_seconds": None,
        "text": "Gold build ok: 1m candles 0 rows, 1h 0, 1d 0 (0 trades); no trades yet"}


# ---------------------------------------------------------------------------------------------------- the job

def job_env(**extra: str) -> dict[str, str]:
    """This process's environment without settings overrides, a warehouse path or Snowflake settings, plus extra."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("STOCKLAKE_", "SNOWFLAKE_")) and k != "DBT_DUCKDB_PATH"}
    return {**env, **extra}


def test_the_job_prints_one_json_line_read_from_dbt_duckdb_path(tmp_path):
    path = write_gold(tmp_path / "gold.duckdb", GOLD, CANDLE_MODELS)
    result = subprocess.run([sys.executable, "-m", "dashboard.gold_summary", "--now", "2026-11-20T22:03:00+01:00"],
                            cwd=REPO, env=job_env(DBT_DUCKDB_PATH=str(path)), capture_output=True, text=True,
                            timeout=120)
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout.endswith("\n") and result.stdout.count("\n") == 1
    assert json.loads(result.stdout) == expected_record(f"DuckDB {path}")


def test_the_job_fails_with_one_line_when_gold_is_missing_locked_or_misconfigured(tmp_path, capsys):
    def run(argv: list[str], **env: str) -> tuple[int, str, str]:
        code = gold_summary.main(argv, job_env(**env))
        out, err = capsys.readouterr()
        return code, out, err

    missing = tmp_path / "none.duckdb"
    assert run(["--now", "2026-11-20T21:03:00Z"], DBT_DUCKDB_PATH=str(missing)) == (
        1, "", f"gold_summary: cannot read Gold (DuckDB {missing}): no Gold warehouse at {missing}\n")
    assert not missing.exists()
    no_tables = write_gold(tmp_path / "bare.duckdb", {}, ())
    code, out, err = run([], DBT_DUCKDB_PATH=str(no_tables))
    assert (code, out) == (1, "")
    assert err.startswith(f"gold_summary: cannot read Gold (DuckDB {no_tables}): a Gold table is missing: ")
    locked = write_gold(tmp_path / "gold.duckdb", GOLD, CANDLE_MODELS)
    with write_lock_held_by_another_process(locked):
        assert run([], DBT_DUCKDB_PATH=str(locked)) == (
            1, "", f"gold_summary: cannot read Gold (DuckDB {locked}): Gold is being rebuilt ({locked} is locked "
                   "by another process)\n")
    assert run([], STOCKLAKE_WAREHOUSE_TARGET="duckdb") == (
        2, "", "gold_summary: configuration error: warehouse.target: must be local or snowflake, got 'duckdb'\n")
    assert run([], STOCKLAKE_WAREHOUSE_TARGET="snowflake") == (
        2, "", "gold_summary: configuration error: SNOWFLAKE_ACCOUNT: required (e.g. myorg-myaccount)\n")
    with pytest.raises(SystemExit) as exit_info:
        run(["--now", "yesterday"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.endswith("argument --now: not an ISO 8601 time: 'yesterday'\n")


@pytest.mark.filterwarnings("ignore:Arrow output on a DB-API result")  # fakesnow internals
def test_the_snowflake_target_gives_the_same_summary(capsys):
    """fakesnow (Snowflake's connector on DuckDB) stands in for Snowflake: the same SQL, upper-case columns."""
    import fakesnow
    import snowflake.connector

    with fakesnow.patch():
        setup = snowflake.connector.connect(database="STOCKLAKE", schema="GOLD", paramstyle="qmark")
        cursor = setup.cursor()
        create_gold(lambda sql, params: cursor.execute(sql, params) if params else cursor.execute(sql), GOLD,
                    CANDLE_MODELS)
        code = gold_summary.main(["--now", "2026-11-20T21:03:00Z"],
                                 job_env(STOCKLAKE_WAREHOUSE_TARGET="snowflake", **SNOWFLAKE_ENV))
    out, err = capsys.readouterr()
    assert (code, err) == (0, "")
    assert json.loads(out) == expected_record("Snowflake STOCKLAKE.GOLD")
