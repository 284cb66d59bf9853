"""dashboard/queries.py against real DuckDB files (and fakesnow for the Snowflake path) holding small Gold tables.

The tables are created from the Gold models' enforced contracts (dbt_project/models/marts/<model>.yml), so a renamed
or retyped Gold column breaks these tests, not the dashboard at run time.
"""
from __future__ import annotations

import subprocess
import sys
from contextlib import contextmanager
from datetime import date, datetime
from pathlib import Path
from typing import Any, Iterator

import duckdb
import pandas as pd
import pytest
import yaml

from conf.settings import load_settings
from dashboard import queries

REPO = Path(__file__).resolve().parents[3]
MARTS = REPO / "dbt_project" / "models" / "marts"
MODELS = ("fct_symbol_kpi", "fct_candles_1m", "fct_candles_1h", "fct_candles_1d", "fct_moving_averages",
          "fct_volatility", "fct_top_movers", "fct_treemap", "dim_symbol")


def ts(text: str) -> datetime:
    return datetime.fromisoformat(text)


# Exact Gold rows: AAPL has a previous close, TSLA does not (first day of data), BRK.B trades but is not in
# dim_symbol. Values are chosen to be exact in binary floating point where they are compared after arithmetic.
GOLD: dict[str, list[dict[str, Any]]] = {
    "fct_symbol_kpi": [
        {"symbol": "AAPL", "trading_date": date(2026, 11, 20), "last_price": 190.25, "previous_close": 188.0,
         "price_change": 2.25, "pct_change": 1.1968085106382979, "day_open": 189.0, "day_high": 191.5,
         "day_low": 188.5, "pct_change_from_open": 0.6613756613756614, "day_volume": 1234567.0, "day_vwap": 190.125,
         "day_notional": 234722050.875, "day_trade_count": 4321, "last_trade_time_utc": ts("2026-11-20 20:59:58.500")},
        {"symbol": "BRK.B", "trading_date": date(2026, 11, 20), "last_price": 410.5, "previous_close": 412.0,
         "price_change": -1.5, "pct_change": -0.3640776699029126, "day_open": 411.0, "day_high": 413.0,
         "day_low": 409.0, "pct_change_from_open": -0.12165450121654502, "day_volume": 1000.0, "day_vwap": 410.0,
         "day_notional": 410000.0, "day_trade_count": 10, "last_trade_time_utc": ts("2026-11-20 20:58:00")},
        {"symbol": "TSLA", "trading_date": date(2026, 11, 20), "last_price": 171.5, "previous_close": None,
         "price_change": None, "pct_change": None, "day_open": 172.0, "day_high": 173.0, "day_low": 171.0,
         "pct_change_from_open": -0.29069767441860467, "day_volume": 50000.0, "day_vwap": 172.0,
         "day_notional": 8600000.0, "day_trade_count": 500, "last_trade_time_utc": ts("2026-11-20 20:59:30")},
    ],
    "fct_candles_1m": [
        {"symbol": "AAPL", "candle_start": ts("2026-11-20 20:57:00"), "trading_date": date(2026, 11, 20),
         "session": "regular", "open": 190.0, "high": 190.5, "low": 189.75, "close": 190.25, "volume": 100.0,
         "vwap": 190.125, "notional": 19012.5, "trade_count": 3},
        {"symbol": "AAPL", "candle_start": ts("2026-11-20 20:58:00"), "trading_date": date(2026, 11, 20),
         "session": "regular", "open": 190.25, "high": 191.0, "low": 190.0, "close": 190.75, "volume": 200.0,
         "vwap": 190.5, "notional": 38100.0, "trade_count": 4},
        {"symbol": "AAPL", "candle_start": ts("2026-11-20 20:59:00"), "trading_date": date(2026, 11, 20),
         "session": "regular", "open": 190.75, "high": 191.5, "low": 190.0, "close": 190.25, "volume": 0.0,
         "vwap": None, "notional": 0.0, "trade_count": 2},
        {"symbol": "TSLA", "candle_start": ts("2026-11-20 20:59:00"), "trading_date": date(2026, 11, 20),
         "session": "regular", "open": 172.0, "high": 173.0, "low": 171.0, "close": 171.5, "volume": 50.0,
         "vwap": 172.0, "notional": 8600.0, "trade_count": 5},
    ],
    "fct_candles_1h": [
        {"symbol": "AAPL", "candle_start": ts("2026-11-20 19:00:00"), "trading_date": date(2026, 11, 20),
         "session": "regular", "open": 189.0, "high": 190.0, "low": 188.5, "close": 190.0, "volume": 1000.0,
         "vwap": 189.5, "notional": 189500.0, "trade_count": 30},
        {"symbol": "AAPL", "candle_start": ts("2026-11-20 20:00:00"), "trading_date": date(2026, 11, 20),
         "session": "regular", "open": 190.0, "high": 191.5, "low": 189.75, "close": 190.25, "volume": 300.0,
         "vwap": 190.25, "notional": 57075.0, "trade_count": 9},
    ],
    "fct_candles_1d": [
        {"symbol": "AAPL", "trading_date": date(2026, 11, 19), "open": 187.0, "high": 188.5, "low": 186.0,
         "close": 188.0, "volume": 900000.0, "vwap": 187.5, "notional": 168750000.0,
         "trade_count": 4000},
        {"symbol": "AAPL", "trading_date": date(2026, 11, 20), "open": 189.0, "high": 191.5, "low": 188.5,
         "close": 190.25, "volume": 1234567.0, "vwap": 190.125, "notional": 234722050.875,
         "trade_count": 4321},
    ],
    "fct_moving_averages": [
        {"symbol": "AAPL", "candle_start": ts(f"2026-11-20 20:5{minute}:00"), "trading_date": date(2026, 11, 20),
         "window_minutes": window, "close": close, "sma": sma, "ema": ema}
        for minute, close, window, sma, ema in [
            (7, 190.25, 5, None, 190.25), (8, 190.75, 5, None, 190.5), (9, 190.25, 5, 190.5, 190.375),
            (7, 190.25, 20, None, 190.25), (8, 190.75, 20, None, 190.3), (9, 190.25, 20, None, 190.29)]
    ],
    "fct_volatility": [
        {"symbol": "AAPL", "candle_start": ts(f"2026-11-20 20:5{minute}:00"), "trading_date": date(2026, 11, 20),
         "window_minutes": window, "close": 190.0, "log_return": log_return, "return_count": count,
         "rolling_stddev": stddev, "annualized_volatility": None if stddev is None else stddev * 2}
        for minute, window, log_return, count, stddev in [
            (7, 5, None, 0, None), (8, 5, 0.001, 1, None), (9, 5, -0.001, 5, 0.25),
            (7, 30, None, 0, None), (8, 30, 0.001, 1, None), (9, 30, -0.001, 2, None)]
    ],
    "fct_top_movers": [
        {"symbol": "AAPL", "trading_date": date(2026, 11, 20), "last_price": 190.25, "change_basis": "previous_close",
         "move_pct": 1.1968085106382979, "direction": "up", "mover_rank": 1, "gainer_rank": 1, "loser_rank": 3,
         "day_volume": 1234567.0},
        {"symbol": "BRK.B", "trading_date": date(2026, 11, 20), "last_price": 410.5, "change_basis": "previous_close",
         "move_pct": -0.3640776699029126, "direction": "down", "mover_rank": 2, "gainer_rank": 3, "loser_rank": 1,
         "day_volume": 1000.0},
        {"symbol": "TSLA", "trading_date": date(2026, 11, 20), "last_price": 171.5, "change_basis": "open",
         "move_pct": -0.29069767441860467, "direction": "down", "mover_rank": 3, "gainer_rank": 2,
         "loser_rank": 2, "day_volume": 50000.0},
    ],
    "fct_treemap": [
        {"symbol": "AAPL", "company": "Apple Inc.", "sector": "Information Technology",
         "industry": "Technology Hardware & Equipment", "trading_date": date(2026, 11, 20), "last_price": 190.25,
         "change_basis": "previous_close", "move_pct": 1.1968085106382979, "day_volume": 1234567.0,
         "day_notional": 234722050.875},
        {"symbol": "BRK.B", "company": "BRK.B", "sector": "Unknown", "industry": "Unknown",
         "trading_date": date(2026, 11, 20), "last_price": 410.5, "change_basis": "previous_close",
         "move_pct": -0.3640776699029126, "day_volume": 1000.0, "day_notional": 410000.0},
        {"symbol": "TSLA", "company": "Tesla, Inc.", "sector": "Consumer Discretionary", "industry": "Automobiles",
         "trading_date": date(2026, 11, 20), "last_price": 171.5, "change_basis": "open",
         "move_pct": -0.29069767441860467, "day_volume": 50000.0, "day_notional": 8600000.0},
    ],
    "dim_symbol": [
        {"symbol": "AAPL", "company": "Apple Inc.", "sector": "Information Technology",
         "industry": "Technology Hardware & Equipment", "is_in_reference": True},
        {"symbol": "MSFT", "company": "Microsoft Corporation", "sector": "Information Technology",
         "industry": "Software", "is_in_reference": True},
        {"symbol": "TSLA", "company": "Tesla, Inc.", "sector": "Consumer Discretionary", "industry": "Automobiles",
         "is_in_reference": True},
    ],
}


def contract(model: str) -> list[tuple[str, str]]:
    """(column, data type) of a Gold model's enforced contract."""
    spec = yaml.safe_load((MARTS / f"{model}.yml").read_text())
    (entry,) = [m for m in spec["models"] if m["name"] == model]
    return [(column["name"], column["data_type"]) for column in entry["columns"]]


def create_gold(execute, rows: dict[str, list[dict[str, Any]]], models=MODELS) -> None:
    """Create the Gold tables from their contracts and insert `rows` (columns not given are null)."""
    for model in models:
        columns = contract(model)
        execute(f"create table {model} ({', '.join(f'{name} {data_type}' for name, data_type in columns)})", [])
        for row in rows.get(model, []):
            unknown = set(row) - {name for name, _ in columns}
            assert not unknown, f"{model}: not in the contract: {unknown}"
            execute(f"insert into {model} values ({', '.join('?' for _ in columns)})",
                    [row.get(name) for name, _ in columns])


def write_gold(path: Path, rows: dict[str, list[dict[str, Any]]] = GOLD, models=MODELS) -> Path:
    """A Gold-shaped DuckDB file (closed again: the dashboard opens it read-only)."""
    connection = duckdb.connect(str(path))
    try:
        create_gold(lambda sql, params: connection.execute(sql, params), rows, models)
    finally:
        connection.close()
    return path


@contextmanager
def write_lock_held_by_another_process(path: Path) -> Iterator[None]:
    """A read-write DuckDB connection open in a child process, as `dbt build` holds it (locks are per process)."""
    holder = subprocess.Popen(
        [sys.executable, "-c", "import duckdb, sys\n"
         f"connection = duckdb.connect({str(path)!r})\nprint('locked', flush=True)\nsys.stdin.read()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        yield
    finally:
        holder.stdin.close()
        holder.wait(timeout=60)


@pytest.fixture
def gold(tmp_path) -> queries.DuckDBWarehouse:
    return queries.DuckDBWarehouse(write_gold(tmp_path / "gold.duckdb"))


def plain(value: Any) -> Any:
    """None for nulls, Python datetimes for timestamps and dates (DuckDB's pandas frames hold dates as
    timestamps, Snowflake's as dates), so rows compare exactly."""
    if value is None or (not isinstance(value, (str, list)) and pd.isna(value)):
        return None
    if isinstance(value, pd.Timestamp):
        return value.to_pydatetime()
    if isinstance(value, date) and not isinstance(value, datetime):
        return datetime(value.year, value.month, value.day)
    return value


def records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return [{key: plain(value) for key, value in row.items()} for row in frame.to_dict("records")]


def pick(rows: list[dict[str, Any]], *columns: str) -> list[dict[str, Any]]:
    return [{column: plain(row[column]) for column in columns} for row in rows]


def test_kpis_are_fct_symbol_kpi_by_symbol(gold):
    with gold.read() as reader:
        frame = queries.kpis(reader)
    columns = list(frame.columns)
    assert records(frame) == pick(GOLD["fct_symbol_kpi"], *columns)
    assert [row["symbol"] for row in records(frame)] == ["AAPL", "BRK.B", "TSLA"]
    assert {"last_price", "price_change", "pct_change", "day_volume"} <= set(columns)


def test_symbols_are_those_with_kpis_with_their_company(gold):
    with gold.read() as reader:
        # MSFT is in dim_symbol but has no KPI row; BRK.B has one but no dim_symbol row.
        assert records(queries.symbols(reader)) == [
            {"symbol": "AAPL", "company": "Apple Inc."}, {"symbol": "BRK.B", "company": "BRK.B"},
            {"symbol": "TSLA", "company": "Tesla, Inc."}]


def test_candles_are_the_latest_limit_oldest_first(gold):
    with gold.read() as reader:
        latest_two = records(queries.candles(reader, "AAPL", "1m", 2))
        all_1m = records(queries.candles(reader, "AAPL", "1m", 390))
        tsla = records(queries.candles(reader, "TSLA", "1m", 390))
        hourly = records(queries.candles(reader, "AAPL", "1h", 390))
        daily = records(queries.candles(reader, "AAPL", "1d", 390))
        unknown = queries.candles(reader, "ZZZZ", "1m", 390)
    columns = ["open", "high", "low", "close", "volume", "vwap", "trade_count"]
    # session_vwap runs over the whole trading date, also over the candle before the two returned:
    # (19012.5 + 38100) / (100 + 200) = 190.375 at 20:58, unchanged by 20:59's zero volume.
    running = ["session_vwap", "notional", "session_notional", "session_volume"]
    assert pick(latest_two, "period_start", "trading_date", "session", *columns, *running) == [
        {"period_start": row["candle_start"], **pick([row], "trading_date", "session", *columns)[0],
         "session_vwap": 190.375, "notional": row["notional"], "session_notional": 19012.5 + 38100.0 + (
            row["notional"] if row is GOLD["fct_candles_1m"][2] else 0.0), "session_volume": 300.0}
        for row in GOLD["fct_candles_1m"][1:3]]
    assert [row["session_vwap"] for row in all_1m] == [190.125, 190.375, 190.375]
    assert [row["period_start"] for row in all_1m] == [ts("2026-11-20 20:57:00"), ts("2026-11-20 20:58:00"),
                                                        ts("2026-11-20 20:59:00")]
    assert all_1m[2]["vwap"] is None  # a zero-volume minute has no VWAP
    assert pick(tsla, "period_start", "close") == [{"period_start": ts("2026-11-20 20:59:00"), "close": 171.5}]
    assert pick(hourly, "period_start", "close", "volume", "session_vwap") == [
        {"period_start": ts("2026-11-20 19:00:00"), "close": 190.0, "volume": 1000.0, "session_vwap": 189.5},
        {"period_start": ts("2026-11-20 20:00:00"), "close": 190.25, "volume": 300.0,
         "session_vwap": (189500.0 + 57075.0) / 1300.0}]
    # Daily candles start at midnight of their (New York) trading date.
    # Each trading date is its own session: a daily candle's session VWAP is its VWAP.
    assert pick(daily, "period_start", "trading_date", "close", "session_vwap") == [
        {"period_start": ts("2026-11-19 00:00:00"), "trading_date": ts("2026-11-19 00:00:00"), "close": 188.0,
         "session_vwap": 187.5},
        {"period_start": ts("2026-11-20 00:00:00"), "trading_date": ts("2026-11-20 00:00:00"), "close": 190.25,
         "session_vwap": 190.125}]
    # The daily bar is the regular session's.
    assert {row["session"] for row in daily} == {"regular"}
    assert unknown.empty and list(unknown.columns) == ["period_start", "trading_date", "session", *columns,
                                                       *running]


def test_moving_averages_and_volatility_cover_the_latest_minutes_per_window(gold):
    with gold.read() as reader:
        averages = records(queries.moving_averages(reader, "AAPL", 2))
        volatility = records(queries.volatility(reader, "AAPL", 2))
        none = queries.volatility(reader, "TSLA", 2)
    assert pick(averages, "candle_start", "window_minutes", "sma", "ema") == [
        {"candle_start": ts("2026-11-20 20:58:00"), "window_minutes": 5, "sma": None, "ema": 190.5},
        {"candle_start": ts("2026-11-20 20:59:00"), "window_minutes": 5, "sma": 190.5, "ema": 190.375},
        {"candle_start": ts("2026-11-20 20:58:00"), "window_minutes": 20, "sma": None, "ema": 190.3},
        {"candle_start": ts("2026-11-20 20:59:00"), "window_minutes": 20, "sma": None, "ema": 190.29}]
    assert pick(volatility, "candle_start", "window_minutes", "annualized_volatility") == [
        {"candle_start": ts("2026-11-20 20:58:00"), "window_minutes": 5, "annualized_volatility": None},
        {"candle_start": ts("2026-11-20 20:59:00"), "window_minutes": 5, "annualized_volatility": 0.5},
        {"candle_start": ts("2026-11-20 20:58:00"), "window_minutes": 30, "annualized_volatility": None},
        {"candle_start": ts("2026-11-20 20:59:00"), "window_minutes": 30, "annualized_volatility": None}]
    assert none.empty


def test_top_movers_treemap_and_freshness(gold):
    with gold.read() as reader:
        movers = records(queries.top_movers(reader))
        treemap = records(queries.treemap(reader))
        latest = queries.freshness(reader)
    assert pick(movers, "mover_rank", "symbol", "move_pct", "change_basis") == [
        {"mover_rank": 1, "symbol": "AAPL", "move_pct": 1.1968085106382979, "change_basis": "previous_close"},
        {"mover_rank": 2, "symbol": "BRK.B", "move_pct": -0.3640776699029126, "change_basis": "previous_close"},
        {"mover_rank": 3, "symbol": "TSLA", "move_pct": -0.29069767441860467, "change_basis": "open"}]
    assert pick(treemap, "sector", "symbol", "move_pct", "day_notional") == [
        {"sector": "Consumer Discretionary", "symbol": "TSLA", "move_pct": -0.29069767441860467,
         "day_notional": 8600000.0},
        {"sector": "Information Technology", "symbol": "AAPL", "move_pct": 1.1968085106382979,
         "day_notional": 234722050.875},
        {"sector": "Unknown", "symbol": "BRK.B", "move_pct": -0.3640776699029126, "day_notional": 410000.0}]
    assert latest == pd.Timestamp("2026-11-20 20:59:58.500")


def test_load_market_and_load_symbol_read_everything_a_refresh_shows(gold):
    market = queries.load_market(gold)
    assert market.kpis["symbol"].tolist() == ["AAPL", "BRK.B", "TSLA"]
    assert market.latest_row_time == pd.Timestamp("2026-11-20 20:59:58.500")
    assert market.read_at.tzinfo is not None
    detail = queries.load_symbol(gold, "AAPL", "1h", 1)
    assert (detail.symbol, detail.interval) == ("AAPL", "1h")
    assert detail.candles["close"].tolist() == [190.25]
    assert detail.moving_averages["candle_start"].unique().tolist() == [pd.Timestamp("2026-11-20 20:59:00")]
    assert len(detail.volatility) == 2


@pytest.mark.parametrize("call, message", [
    (lambda r: queries.candles(r, "AAPL", "5m", 10), "interval: '5m' is not one of 1m, 1h, 1d"),
    (lambda r: queries.candles(r, "AAPL", "fct_candles_1m; drop table fct_symbol_kpi", 10), "interval: "),
    (lambda r: queries.candles(r, "AAPL' or '1'='1", "1m", 10), "symbol: \"AAPL' or '1'='1\" is not a ticker"),
    (lambda r: queries.candles(r, "aapl", "1m", 10), "symbol: 'aapl' is not a ticker (upper case"),
    (lambda r: queries.volatility(r, "", 10), "symbol: '' is not a ticker"),
    (lambda r: queries.moving_averages(r, None, 10), "symbol: None is not a ticker"),
    (lambda r: queries.candles(r, "AAPL", "1m", 0), "limit: expected a whole number >= 1, got 0"),
    (lambda r: queries.candles(r, "AAPL", "1m", "10; drop table x"), "limit: expected a whole number >= 1"),
    (lambda r: queries.candles(r, "AAPL", "1m", True), "limit: expected a whole number >= 1, got True"),
])
def test_bad_parameters_are_refused_before_any_sql(gold, call, message):
    with gold.read() as reader:
        with pytest.raises(ValueError) as error:
            call(reader)
        assert str(error.value).startswith(message)
        assert len(queries.kpis(reader)) == 3  # nothing was dropped
    with pytest.raises(ValueError, match="^interval: '1w' is not one of"):
        queries.load_symbol(gold, "AAPL", "1w", 10)


def test_symbols_with_exchange_prefixes_and_dots_are_valid():
    assert queries.check_symbol("BRK.B") == "BRK.B"
    assert queries.check_symbol("BINANCE:BTCUSDT") == "BINANCE:BTCUSDT"


def test_a_missing_file_is_empty_and_is_not_created(tmp_path):
    path = tmp_path / "warehouse" / "gold.duckdb"
    with pytest.raises(queries.WarehouseEmpty, match=f"^no Gold warehouse at {path}$"):
        queries.load_market(queries.DuckDBWarehouse(path))
    assert not path.exists() and not path.parent.exists()


def test_missing_tables_or_no_rows_are_empty(tmp_path):
    no_tables = write_gold(tmp_path / "none.duckdb", {}, models=())
    with pytest.raises(queries.WarehouseEmpty, match="^a Gold table is missing: Catalog Error: Table with name "
                                                     "fct_symbol_kpi does not exist"):
        queries.load_market(queries.DuckDBWarehouse(no_tables))
    no_rows = write_gold(tmp_path / "empty.duckdb", {})
    with pytest.raises(queries.WarehouseEmpty, match="^the Gold tables have no rows yet$"):
        queries.load_market(queries.DuckDBWarehouse(no_rows))
    with queries.DuckDBWarehouse(no_rows).read() as reader:
        assert queries.freshness(reader) is None


def test_a_write_lock_held_by_another_process_is_busy_and_reads_resume_after_it(gold):
    with write_lock_held_by_another_process(gold.path):
        with pytest.raises(queries.WarehouseBusy, match=r"^Gold is being rebuilt \(.*gold.duckdb is locked by "
                                                        r"another process\)$"):
            queries.load_market(gold)
        with pytest.raises(queries.WarehouseBusy):
            queries.load_symbol(gold, "AAPL", "1m", 10)
    assert queries.load_market(gold).kpis["symbol"].tolist() == ["AAPL", "BRK.B", "TSLA"]


def test_reads_release_the_file_so_a_writer_can_take_it(gold):
    queries.load_market(gold)
    queries.load_symbol(gold, "AAPL", "1m", 10)
    # What `dbt build` does next: open the file read-write from another process.
    writer = subprocess.run([sys.executable, "-c", "import duckdb, sys\n"
                             f"duckdb.connect(sys.argv[1]).execute('drop table fct_top_movers')", str(gold.path)],
                            capture_output=True, text=True, timeout=60)
    assert writer.returncode == 0, writer.stderr
    with pytest.raises(queries.WarehouseEmpty, match="fct_top_movers does not exist"):
        queries.load_market(gold)


# ------------------------------------------------------------------------------------------- choosing the warehouse

SNOWFLAKE_ENV = {"SNOWFLAKE_ACCOUNT": "acme-prod", "SNOWFLAKE_USER": "dashboard_reader",
                 "SNOWFLAKE_PASSWORD": "pw-s3cret", "SNOWFLAKE_WAREHOUSE": "reporting_wh"}  # pragma: allowlist secret


def test_local_target_reads_the_duckdb_file_dbt_builds(tmp_path):
    settings = load_settings({})
    assert queries.open_warehouse(settings, {}).path == Path(".lake/warehouse/gold.duckdb")
    chosen = queries.open_warehouse(settings, {"DBT_DUCKDB_PATH": str(tmp_path / "g.duckdb")})
    assert isinstance(chosen, queries.DuckDBWarehouse) and chosen.path == tmp_path / "g.duckdb"


def test_snowflake_target_takes_the_connection_and_gold_schema_from_the_environment():
    settings = load_settings({"STOCKLAKE_WAREHOUSE_TARGET": "snowflake"})
    default = queries.open_warehouse(settings, SNOWFLAKE_ENV)
    assert isinstance(default, queries.SnowflakeWarehouse)
    assert (default.description, default.schema) == ("Snowflake STOCKLAKE.GOLD", "GOLD")
    assert "pw-s3cret" not in repr(vars(default))
    # As dbt_project/profiles.yml: SNOWFLAKE_SCHEMA first, then SNOWFLAKE_GOLD_SCHEMA.
    assert queries.open_warehouse(settings, {**SNOWFLAKE_ENV, "SNOWFLAKE_GOLD_SCHEMA": "marts"}).schema == "MARTS"
    assert queries.open_warehouse(settings, {**SNOWFLAKE_ENV, "SNOWFLAKE_GOLD_SCHEMA": "marts",
                                             "SNOWFLAKE_SCHEMA": "gold_dev"}).schema == "GOLD_DEV"
    from scripts.snowflake_setup import ConfigError
    with pytest.raises(ConfigError, match="^SNOWFLAKE_SCHEMA: 'gold; drop' is not an unquoted Snowflake"):
        queries.open_warehouse(settings, {**SNOWFLAKE_ENV, "SNOWFLAKE_SCHEMA": "gold; drop"})
    with pytest.raises(ConfigError, match="^SNOWFLAKE_ACCOUNT: required"):
        queries.open_warehouse(settings, {})


@pytest.mark.filterwarnings("ignore:Arrow output on a DB-API result")  # fakesnow internals
def test_snowflake_warehouse_runs_the_same_queries_against_fakesnow():
    """fakesnow (Snowflake's connector on DuckDB) stands in for Snowflake: the same SQL, qmark binding, upper-case
    result columns, and error 2003 for a missing table."""
    import fakesnow
    import snowflake.connector

    with fakesnow.patch():
        setup = snowflake.connector.connect(database="STOCKLAKE", schema="GOLD", paramstyle="qmark")
        cursor = setup.cursor()
        create_gold(lambda sql, params: cursor.execute(sql, params) if params else cursor.execute(sql), GOLD,
                    models=[m for m in MODELS if m != "fct_top_movers"])
        warehouse = queries.SnowflakeWarehouse(SNOWFLAKE_ENV)
        with warehouse.read() as reader:
            kpis = queries.kpis(reader)
            assert records(kpis) == pick(GOLD["fct_symbol_kpi"], *kpis.columns)
            assert pick(records(queries.candles(reader, "AAPL", "1d", 1)), "period_start", "close") == [
                {"period_start": ts("2026-11-20 00:00:00"), "close": 190.25}]
            assert queries.freshness(reader) == pd.Timestamp("2026-11-20 20:59:58.500")
        detail = queries.load_symbol(warehouse, "AAPL", "1m", 2)
        assert detail.candles["close"].tolist() == [190.75, 190.25]
        assert detail.volatility["annualized_volatility"].tolist()[1] == 0.5
        with pytest.raises(queries.WarehouseEmpty, match="^a Gold table is missing: "):
            queries.load_market(warehouse)

