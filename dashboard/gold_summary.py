"""What a Gold build left behind, for the gold_dbt DAG's success notice: rows per candle table, the trades behind
them, and how old the newest trade is. Printed as one JSON line whose `text` is the Slack message.

    python -m dashboard.gold_summary [--now 2026-11-20T21:03:00Z]

Gold is read where warehouse.target says, through dashboard.queries.open_warehouse: the DuckDB file DBT_DUCKDB_PATH
(else warehouse.duckdb_path) or Snowflake. `now` (default: the clock) is what the age is measured against.
Exit 0 with the JSON line on stdout; 1 with one line on stderr when Gold cannot be read (missing, or locked by a
running `dbt build`); 2 for a bad argument or configuration.

    {"warehouse": "DuckDB .lake/warehouse/gold.duckdb", "now": "2026-11-20T21:03:00Z",
     "tables": {"fct_candles_1m": {"rows": 12345, "newest": "2026-11-20T20:59:00Z"}, ...,
                "fct_candles_1d": {"rows": 12, "newest": "2026-11-20"}},
     "trades": 98765, "newest_trade_utc": "2026-11-20T20:59:58.500Z", "age_seconds": 241.5,
     "text": "Gold build ok: 1m candles 12,345 rows, 1h 456, 1d 12 (98,765 trades); newest trade 2026-11-20
              20:59 UTC (4 min old)"}
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Mapping

import pandas as pd

from conf.settings import load_settings
from dashboard.queries import CANDLE_TABLES, Reader, WarehouseBusy, WarehouseEmpty, open_warehouse

# The trades behind the candles: every trade is in exactly one 1-minute candle.
TRADES_TABLE = CANDLE_TABLES["1m"][0]
# A 1d candle's period is a trading date in the exchange's time zone, not a UTC instant: shown as a date.
DATE_PERIODS = ("1d",)


@dataclass(frozen=True)
class CandleTable:
    interval: str                  # 1m, 1h, 1d
    table: str
    rows: int
    newest: datetime | None        # start of the newest candle (naive UTC; 1d: midnight of its trading date)


@dataclass(frozen=True)
class GoldSummary:
    warehouse: str                 # where Gold was read (Warehouse.description)
    tables: tuple[CandleTable, ...]  # in CANDLE_TABLES order
    trades: int
    newest_trade: datetime | None  # exchange time of the newest trade (naive UTC); None when Gold has none
    now: datetime                  # aware UTC

    @property
    def age_seconds(self) -> float | None:
        """How old the newest trade is at `now` (negative when it is ahead of the clock)."""
        if self.newest_trade is None:
            return None
        return (self.now - self.newest_trade.replace(tzinfo=timezone.utc)).total_seconds()


def _timestamp(value: Any) -> datetime | None:
    return None if value is None or pd.isna(value) else pd.Timestamp(value).to_pydatetime()


def read_summary(reader: Reader, warehouse: str, now: datetime) -> GoldSummary:
    """Row counts and newest candle of every candle table, trade count and newest trade, in two selects."""
    # S608: the period labels, tables and start expressions come from CANDLE_TABLES, a closed set of constants.
    counts = reader.frame(" union all ".join(
        f"select '{interval}' as period, count(*) as row_count, max({start}) as newest from {table}"  # noqa: S608
        for interval, (table, start) in CANDLE_TABLES.items()))
    by_period = {row["period"]: row for row in counts.to_dict("records")}
    tables = tuple(CandleTable(interval=interval, table=table, rows=int(by_period[interval]["row_count"]),
                               newest=_timestamp(by_period[interval]["newest"]))
                   for interval, (table, _) in CANDLE_TABLES.items())
    # Cast: DuckDB sums a bigint into a 128-bit integer, which pandas would turn into a float.
    trades = reader.frame(f"""
        select cast(coalesce(sum(trade_count), 0) as bigint) as trade_count,
               max(last_trade_time_utc) as newest_trade
        from {TRADES_TABLE}""").iloc[0]  # noqa: S608 - a constant table name
    return GoldSummary(warehouse=warehouse, tables=tables, trades=int(trades["trade_count"]),
                       newest_trade=_timestamp(trades["newest_trade"]), now=now)


# ------------------------------------------------------------------------------------------------------ formatting

def duration_text(seconds: float) -> str:
    """A rough age, rounded down to its two largest units: 45 s, 4 min, 3 h 5 min, 2 d 4 h."""
    whole = int(abs(seconds))
    days, rest = divmod(whole, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h" if hours else f"{days} d"
    if hours:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    if minutes:
        return f"{minutes} min"
    return f"{secs} s"


def notice_text(summary: GoldSummary) -> str:
    """The Slack message: rows per candle table, the trades behind them, the newest trade and its age."""
    first, *others = summary.tables
    rows = ", ".join([f"{first.interval} candles {first.rows:,} rows",
                      *(f"{table.interval} {table.rows:,}" for table in others)])
    head = f"Gold build ok: {rows} ({summary.trades:,} trades)"
    if summary.newest_trade is None:
        return f"{head}; no trades yet"
    age = summary.age_seconds
    # Ahead of the clock: a skewed clock on the exchange's or this machine's side, worth seeing as such.
    age_note = f"{duration_text(age)} old" if age >= 0 else f"{duration_text(age)} ahead of this clock"
    return f"{head}; newest trade {summary.newest_trade:%Y-%m-%d %H:%M} UTC ({age_note})"


def _utc_iso(value: datetime) -> str:
    return value.isoformat(timespec="milliseconds" if value.microsecond else "seconds").replace("+00:00", "") + "Z"


def summary_record(summary: GoldSummary) -> dict[str, Any]:
    """The JSON document the job prints (timestamps ISO 8601 UTC; a 1d candle's period as its date)."""
    def period(table: CandleTable) -> str | None:
        if table.newest is None:
            return None
        return table.newest.date().isoformat() if table.interval in DATE_PERIODS else _utc_iso(table.newest)

    return {
        "warehouse": summary.warehouse,
        "now": _utc_iso(summary.now.astimezone(timezone.utc)),
        "tables": {table.table: {"rows": table.rows, "newest": period(table)} for table in summary.tables},
        "trades": summary.trades,
        "newest_trade_utc": None if summary.newest_trade is None else _utc_iso(summary.newest_trade),
        "age_seconds": summary.age_seconds,
        "text": notice_text(summary),
    }


# ------------------------------------------------------------------------------------------------------------- CLI

def utc_instant(text: str) -> datetime:
    """An ISO 8601 instant (Z or an offset; without one, UTC) as an aware UTC datetime."""
    try:
        value = datetime.fromisoformat(text.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {text!r}") from None
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m dashboard.gold_summary", description=__doc__.splitlines()[0])
    parser.add_argument("--now", type=utc_instant, default=None,
                        help="measure the newest trade's age at this ISO 8601 time (default: now)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        warehouse = open_warehouse(load_settings(environ), environ)
    except ValueError as exc:  # conf.settings / scripts.snowflake_setup ConfigError: one line naming the setting
        print(f"gold_summary: configuration error: {exc}", file=sys.stderr)
        return 2
    now = args.now or datetime.now(timezone.utc)
    try:
        with warehouse.read() as reader:
            summary = read_summary(reader, warehouse.description, now)
    except (WarehouseEmpty, WarehouseBusy) as exc:
        print(f"gold_summary: cannot read Gold ({warehouse.description}): {exc}", file=sys.stderr)
        return 1
    print(json.dumps(summary_record(summary)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
