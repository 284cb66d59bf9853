"""The dashboard's one query module: Gold tables in, pandas DataFrames out, from DuckDB or Snowflake.

Both warehouses run the same SQL (plain selects on the Gold marts dbt builds, unqualified table names). Symbols
are checked against the trade contract (conf.identifiers.symbol) and then bound as parameters, never formatted
into SQL; an interval picks a table from a closed set of names checked as plain identifiers; a limit is a checked
int. Those are the only parts of any query text that are not literal.

DuckDB: `dbt build` holds the file's write lock while it runs, and DuckDB locks per process, so every read opens
the file read-only for as short as it can and closes it; a read that meets the lock raises WarehouseBusy (the app
keeps showing its last good data). A missing file or missing Gold tables raise WarehouseEmpty.
"""
from __future__ import annotations

import os
from abc import ABC, abstractmethod
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any, Iterator, Mapping, Protocol, Sequence

import duckdb
import pandas as pd

from conf.errors import first_line
from conf.identifiers import sql_identifier
from conf.identifiers import symbol as ticker
from conf.settings import Settings

# The Gold schema on Snowflake, looked up as profiles.yml does.
SNOWFLAKE_SCHEMA_ENVS = ("SNOWFLAKE_SCHEMA", "SNOWFLAKE_GOLD_SCHEMA")
SNOWFLAKE_DEFAULT_SCHEMA = "GOLD"
SNOWFLAKE_TABLE_MISSING = 2003  # "Object does not exist or not authorized"

# interval -> (table, expression of the candle's start as a timestamp): a closed set, so no name reaches SQL from input.
CANDLE_TABLES = {
    "1m": ("fct_candles_1m", "candle_start"),
    "1h": ("fct_candles_1h", "candle_start"),
    "1d": ("fct_candles_1d", "cast(trading_date as timestamp)"),
}
INTERVALS = tuple(CANDLE_TABLES)
# The 1-minute tables _latest_minutes() reads.
MINUTE_TABLES = ("fct_moving_averages", "fct_volatility")
# Every table name formatted into SQL: a plain identifier in both warehouses (checked once, at import).
FORMATTED_TABLES = tuple(sql_identifier(table, "dashboard.queries table", "duckdb")
                         for table in (*(table for table, _ in CANDLE_TABLES.values()), *MINUTE_TABLES))

# What to do about an empty warehouse (WarehouseEmpty's message says what is missing).
EMPTY_HINT = "run `make demo` (or `make gold` after the stream has written Silver)"


class WarehouseEmpty(RuntimeError):
    """No Gold data to show: the warehouse file or the Gold tables do not exist (yet), or hold no rows."""


class WarehouseBusy(RuntimeError):
    """The warehouse cannot be read right now: `dbt build` holds DuckDB's write lock. Retry later."""


class Reader(Protocol):
    def frame(self, sql: str, params: Sequence[Any] = ()) -> pd.DataFrame:
        """Run one select with bound parameters (`?` placeholders); lower-case column names."""


class Warehouse(ABC):
    """Where Gold is read from. `with warehouse.read() as reader:` is one short-lived read."""

    description: str

    @abstractmethod
    def read(self) -> Any:
        """A context manager yielding a Reader; raises WarehouseBusy / WarehouseEmpty."""


# -------------------------------------------------------------------------------------------------------- DuckDB

class _DuckDBReader:
    def __init__(self, connection: Any):
        self._connection = connection

    def frame(self, sql: str, params: Sequence[Any] = ()) -> pd.DataFrame:
        try:
            return self._connection.execute(sql, list(params)).df()
        except duckdb.CatalogException as exc:
            # Tables appear with the first `dbt build`: before it, the file may exist without them.
            raise WarehouseEmpty(f"a Gold table is missing: {first_line(exc)}") from None


class DuckDBWarehouse(Warehouse):
    def __init__(self, path: Path | str):
        self.path = Path(path)
        self.description = f"DuckDB {self.path}"

    @contextmanager
    def read(self) -> Iterator[Reader]:
        if not self.path.is_file():
            # A read-only connect would fail anyway; checking first never creates an empty file by accident.
            raise WarehouseEmpty(f"no Gold warehouse at {self.path}")
        try:
            # Offline: never download an extension (as in profiles.yml).
            connection = duckdb.connect(str(self.path), read_only=True, config={
                "autoinstall_known_extensions": False, "autoload_known_extensions": False})
        except duckdb.IOException as exc:
            message = str(exc)
            if "lock" in message.lower():
                raise WarehouseBusy(f"Gold is being rebuilt ({self.path} is locked by another process)") from None
            if "does not exist" in message:
                raise WarehouseEmpty(f"no Gold warehouse at {self.path}") from None
            raise
        try:
            yield _DuckDBReader(connection)
        finally:
            connection.close()


# ----------------------------------------------------------------------------------------------------- Snowflake

class _SnowflakeReader:
    def __init__(self, cursor: Any):
        self._cursor = cursor

    def frame(self, sql: str, params: Sequence[Any] = ()) -> pd.DataFrame:
        from snowflake.connector.errors import ProgrammingError

        try:
            self._cursor.execute(sql, list(params))
        except ProgrammingError as exc:
            if exc.errno == SNOWFLAKE_TABLE_MISSING:
                raise WarehouseEmpty(f"a Gold table is missing: {first_line(exc)}") from None
            raise
        columns = [column[0].lower() for column in self._cursor.description]
        return pd.DataFrame(self._cursor.fetchall(), columns=columns)


class SnowflakeWarehouse(Warehouse):
    """Gold on Snowflake, with the connection settings scripts/snowflake_setup.py validates (no secret is logged).

    One connection, opened on the first read and reused (Snowflake has no write lock to wait for)."""

    def __init__(self, environ: Mapping[str, str]):
        from scripts import snowflake_setup

        self._config = snowflake_setup.load_connection_config(environ)
        schema_env, schema = next(((name, environ[name]) for name in SNOWFLAKE_SCHEMA_ENVS if environ.get(name)),
                                  (SNOWFLAKE_SCHEMA_ENVS[0], SNOWFLAKE_DEFAULT_SCHEMA))
        self.schema = snowflake_setup.identifier(schema.strip(), schema_env)
        self.description = f"Snowflake {self._config.database}.{self.schema}"
        self._connection: Any = None

    def _connect(self) -> Any:
        import snowflake.connector

        from scripts import snowflake_setup

        if self._connection is None or self._connection.is_closed():
            kwargs = snowflake_setup.connect_kwargs(self._config)
            kwargs.update(schema=self.schema, paramstyle="qmark",
                          session_parameters={"QUERY_TAG": "stocklake:dashboard"})
            self._connection = snowflake.connector.connect(**kwargs)
        return self._connection

    @contextmanager
    def read(self) -> Iterator[Reader]:
        cursor = self._connect().cursor()
        try:
            yield _SnowflakeReader(cursor)
        finally:
            cursor.close()


def open_warehouse(settings: Settings, environ: Mapping[str, str] | None = None) -> Warehouse:
    """The warehouse settings.warehouse.target names (opening it reads nothing yet)."""
    env = os.environ if environ is None else environ
    if settings.warehouse.target == "snowflake":
        return SnowflakeWarehouse(env)
    return DuckDBWarehouse(settings.duckdb_path(env))


# ------------------------------------------------------------------------------------------------------- queries

def check_symbol(symbol: Any) -> str:
    """The symbol if it is a ticker as the producer validates them (conf/schemas/trade.v1.json), else ValueError
    (conf.identifiers.IdentifierError)."""
    return ticker(symbol, "symbol")


def check_interval(interval: Any) -> str:
    if interval not in CANDLE_TABLES:
        raise ValueError(f"interval: {interval!r} is not one of {', '.join(INTERVALS)}")
    return interval


def check_limit(limit: Any) -> int:
    # Formatted into LIMIT (a bound LIMIT is not portable), so it must be a plain positive int.
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ValueError(f"limit: expected a whole number >= 1, got {limit!r}")
    return limit


def kpis(reader: Reader) -> pd.DataFrame:
    """fct_symbol_kpi: one row per symbol (its latest trading date), by symbol."""
    return reader.frame("""
        select symbol, trading_date, last_price, previous_close, price_change, pct_change, pct_change_from_open,
               day_open, day_high, day_low, day_volume, day_vwap, day_notional, day_trade_count,
               last_trade_time_utc
        from fct_symbol_kpi
        order by symbol""")


def symbols(reader: Reader) -> pd.DataFrame:
    """The symbols with Gold data (those in fct_symbol_kpi) and their company names, by symbol."""
    return reader.frame("""
        select kpi.symbol, coalesce(dim.company, kpi.symbol) as company
        from fct_symbol_kpi as kpi
        left join dim_symbol as dim on dim.symbol = kpi.symbol
        order by kpi.symbol""")


def candles(reader: Reader, symbol: str, interval: str, limit: int) -> pd.DataFrame:
    """The latest `limit` candles of one symbol at 1m, 1h or 1d, oldest first. period_start is a timestamp (naive
    UTC for 1m / 1h, midnight of the New York trading date for 1d); session is the candle's (pre, regular, post,
    closed or continuous; 1d bars are the regular session); session_vwap is the VWAP of the trading date
    up to and including the candle (over all its candles, also those before the first one returned), from the
    running sums session_notional / session_volume (the live tail continues them)."""
    table, start = CANDLE_TABLES[check_interval(interval)]
    # The daily bar is the regular session (fct_candles_1d); intraday candles carry theirs (pre, post: shaded).
    session_column = "'regular'" if interval == "1d" else "session"
    # Window functions run before the LIMIT, so the running sums cover the whole session. (Snowflake has no
    # named WINDOW clause: the window is spelled out twice.)
    session = f"over (partition by trading_date order by {start} rows between unbounded preceding and current row)"
    # S608: the only formatted parts are a table and an expression from CANDLE_TABLES (a closed set) and a checked
    # int; the symbol is a bound parameter.
    return reader.frame(f"""
        select * from (
            select {start} as period_start, trading_date, {session_column} as session, open, high, low, close,
                   volume, vwap, trade_count,
                   sum(notional) {session} / nullif(sum(volume) {session}, 0) as session_vwap,
                   notional, sum(notional) {session} as session_notional, sum(volume) {session} as session_volume
            from {table}
            where symbol = ?
            order by period_start desc
            limit {check_limit(limit)}
        ) as latest
        order by period_start""", [check_symbol(symbol)])  # noqa: S608 - see above


def _latest_minutes(table: str, limit: int) -> str:
    """Rows of `table` for the symbol (first ?) within its latest `limit` 1-minute candles (second ?)."""
    if table not in MINUTE_TABLES:
        raise ValueError(f"table: {table!r} is not one of {', '.join(MINUTE_TABLES)}")
    # S608: `table` is one of MINUTE_TABLES, `limit` a checked int; the symbol is bound (the two ?).
    return f"""
        from {table}
        where symbol = ?
          and candle_start >= (
            select min(candle_start) from (
                select distinct candle_start from {table} where symbol = ? order by candle_start desc
                limit {check_limit(limit)}
            ) as recent
          )"""  # noqa: S608 - see above


def moving_averages(reader: Reader, symbol: str, limit: int) -> pd.DataFrame:
    """fct_moving_averages over the symbol's latest `limit` minutes: one row per minute and window."""
    symbol = check_symbol(symbol)
    return reader.frame(f"""
        select candle_start, window_minutes, close, sma, ema
        {_latest_minutes('fct_moving_averages', limit)}
        order by window_minutes, candle_start""", [symbol, symbol])


def volatility(reader: Reader, symbol: str, limit: int) -> pd.DataFrame:
    """fct_volatility over the symbol's latest `limit` minutes: one row per minute and window."""
    symbol = check_symbol(symbol)
    return reader.frame(f"""
        select candle_start, window_minutes, log_return, rolling_stddev, annualized_volatility
        {_latest_minutes('fct_volatility', limit)}
        order by window_minutes, candle_start""", [symbol, symbol])


def top_movers(reader: Reader) -> pd.DataFrame:
    """fct_top_movers by rank (1 = the largest absolute % move)."""
    return reader.frame("""
        select mover_rank, symbol, last_price, move_pct, change_basis, direction, day_volume, trading_date
        from fct_top_movers
        order by mover_rank""")


def treemap(reader: Reader) -> pd.DataFrame:
    """fct_treemap: sector, industry, symbol, size (day_notional) and colour (move_pct)."""
    return reader.frame("""
        select sector, industry, symbol, company, last_price, move_pct, change_basis, day_volume, day_notional
        from fct_treemap
        order by sector, industry, symbol""")


def freshness(reader: Reader) -> pd.Timestamp | None:
    """Exchange time (naive UTC) of the newest trade in Gold; None when Gold has no rows."""
    latest = reader.frame("select max(last_trade_time_utc) as latest from fct_symbol_kpi")["latest"].iloc[0]
    return None if pd.isna(latest) else pd.Timestamp(latest)


def minutes_through(reader: Reader) -> pd.Timestamp | None:
    """Start (naive UTC) of Gold's newest 1-minute candle: the live tail's cutoff. None when Gold has none."""
    latest = reader.frame("select max(candle_start) as latest from fct_candles_1m")["latest"].iloc[0]
    return None if pd.isna(latest) else pd.Timestamp(latest)


def day_parts(reader: Reader, cutoff: pd.Timestamp) -> pd.DataFrame:
    """Per symbol and trading date (from the day before the cutoff's on), the daily bar of Gold's 1-minute candles
    before the cutoff: the regular session's, a 24/7 symbol's whole day, as fct_candles_1d builds it."""
    return reader.frame("""
        select symbol, trading_date, min_by(open, candle_start) as open, max(high) as high, min(low) as low,
               max_by(close, candle_start) as close, sum(volume) as volume, sum(notional) as notional,
               sum(trade_count) as trade_count
        from fct_candles_1m
        where session in ('regular', 'continuous') and candle_start < ? and trading_date >= ?
        group by symbol, trading_date
        order by symbol, trading_date""", [cutoff.to_pydatetime(), (cutoff - pd.Timedelta(days=1)).date()])


def trading_days(reader: Reader, first: date) -> pd.DataFrame:
    """dim_date from `first` on: each date's regular session (naive UTC; null on a day without one) and previous
    trading date."""
    return reader.frame("""
        select date_day, session_open_utc, session_close_utc, previous_trading_date
        from dim_date
        where date_day >= ?
        order by date_day""", [first])


def symbol_calendars(reader: Reader) -> dict[str, str]:
    """Each Gold symbol's market calendar (fct_symbol_kpi.market_calendar: XNYS, 24/7, ...)."""
    frame = reader.frame("select symbol, market_calendar from fct_symbol_kpi")
    return dict(zip(frame["symbol"], frame["market_calendar"]))


# --------------------------------------------------------------------------------- what one refresh of the app reads

@dataclass(frozen=True)
class Market:
    """The market-wide views, from one read."""
    kpis: pd.DataFrame
    symbols: pd.DataFrame
    top_movers: pd.DataFrame
    treemap: pd.DataFrame
    latest_row_time: pd.Timestamp
    read_at: datetime          # when it was read (UTC)


@dataclass(frozen=True)
class SymbolDetail:
    """One symbol's charts at one interval, from one read."""
    symbol: str
    interval: str
    candles: pd.DataFrame
    moving_averages: pd.DataFrame
    volatility: pd.DataFrame
    read_at: datetime


def load_market(warehouse: Warehouse) -> Market:
    """KPIs, symbols, top movers, treemap and freshness; WarehouseEmpty when Gold has no KPI row yet."""
    with warehouse.read() as reader:
        kpi = kpis(reader)
        if kpi.empty:
            raise WarehouseEmpty("the Gold tables have no rows yet")
        market = Market(kpis=kpi, symbols=symbols(reader), top_movers=top_movers(reader), treemap=treemap(reader),
                        latest_row_time=freshness(reader), read_at=datetime.now(timezone.utc))
    return market


@dataclass(frozen=True)
class TailBasis:
    """What the live tail needs from Gold (dashboard/live_tail.py), from one read: the cutoff minute, Gold's day bars
    before it, the trading days from the day before it and the symbols' calendars."""
    cutoff: pd.Timestamp
    day_parts: pd.DataFrame
    trading_days: pd.DataFrame
    calendars: dict[str, str]


def load_tail_basis(warehouse: Warehouse) -> TailBasis | None:
    """None when Gold has no 1-minute candle yet."""
    with warehouse.read() as reader:
        cutoff = minutes_through(reader)
        if cutoff is None:
            return None
        return TailBasis(cutoff=cutoff, day_parts=day_parts(reader, cutoff),
                         trading_days=trading_days(reader, (cutoff - pd.Timedelta(days=7)).date()),
                         calendars=symbol_calendars(reader))


def load_symbol(warehouse: Warehouse, symbol: str, interval: str, limit: int) -> SymbolDetail:
    """Candles at `interval`, and the 1-minute moving averages and volatility, of one symbol."""
    check_symbol(symbol)
    check_interval(interval)
    check_limit(limit)
    with warehouse.read() as reader:
        detail = SymbolDetail(symbol=symbol, interval=interval, candles=candles(reader, symbol, interval, limit),
                              moving_averages=moving_averages(reader, symbol, limit),
                              volatility=volatility(reader, symbol, limit), read_at=datetime.now(timezone.utc))
    return detail
