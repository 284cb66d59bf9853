"""Daily bars (conf/schemas/bar.v1.json): deterministic ids and bar events, from Finnhub candles
(producer/finnhub_candles.py) or from file rows.

Events are built leniently on purpose: a value that is missing is left out and a value that is not a number is
kept as it came, so the contract (validated by Spark with the stream's own transforms) names what is wrong with
it (`close:required`, `close:type`, `close:exclusiveMinimum`, ...) and the bar is quarantined, never dropped here.
"""
from __future__ import annotations

import hashlib
import math
import re
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Mapping

from conf.contracts.events import SCHEMA_VERSION

FINNHUB, FILE = "finnhub", "file"  # the bar.v1 `source` values (the id hashes them)


BAR_SCHEMA_NAME = "bar.v1"


VALUE_FIELDS = ("open", "high", "low", "close", "volume")


# Columns of a backfill file, in this order in the shipped sample; date is the trading date, YYYY-MM-DD.
FILE_COLUMNS = ("symbol", "date", "open", "high", "low", "close", "volume")


DAY_MS = 86_400_000


ISO_DATE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")


# A plain decimal number as text; Python's float() would also take "1_000", "nan" and "inf".
NUMBER_TEXT = re.compile(r"^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?$")


def bar_event_id(source: str, symbol: str, trading_date: str) -> str:
    """sha256 hex of the bar's identity, hashed like trade and quote ids (fields joined by "|"). The values are
    not part of it: a corrected bar keeps its id, so a re-load replaces it instead of adding a second one."""
    return hashlib.sha256("|".join([source, symbol, trading_date]).encode("utf-8")).hexdigest()


def day_start_ms(day: date) -> int:
    """The date at 00:00 UTC, in epoch milliseconds."""
    return (day - date(1970, 1, 1)).days * DAY_MS


def parse_trading_date(value: Any) -> date | None:
    """A YYYY-MM-DD text (or a date) as a date; None when it is not one."""
    if isinstance(value, datetime):
        return None  # a timestamp is not a trading date; callers render timestamp columns as text first
    if isinstance(value, date):
        return value
    if isinstance(value, str) and ISO_DATE.match(value.strip()):
        try:
            return date.fromisoformat(value.strip())
        except ValueError:  # e.g. 2026-02-30
            return None
    return None


def _value(value: Any) -> Any:
    """A file or candle value for the event: numbers as floats, numeric text parsed, None (left out) for an
    empty cell, anything else as it came so the contract names it (`<field>:type`)."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, (int, float, Decimal)):
        number = float(value)
        return number if math.isfinite(number) else str(value)  # NaN/Infinity are not JSON
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return None
        if NUMBER_TEXT.match(text):
            number = float(text)
            return number if math.isfinite(number) else text
        return text
    return str(value)


def make_bar_event(source: str, symbol: Any, trading_date: Any, bar_ts: Any,
                   values: Mapping[str, Any]) -> dict[str, Any]:
    """A bar.v1 event in the schema's property order; fields whose value is None are left out."""
    event = {
        "event_id": bar_event_id(source, str(symbol), str(trading_date)),
        "schema_version": SCHEMA_VERSION,
        "source": source,
        "symbol": symbol,
        "trading_date": trading_date,
        "bar_ts": bar_ts,
        **{field: _value(values.get(field)) for field in VALUE_FIELDS},
    }
    return {name: value for name, value in event.items() if value is not None}


def file_row_event(row: Mapping[str, Any]) -> dict[str, Any]:
    """The bar event of one file row (columns FILE_COLUMNS). A date that is not YYYY-MM-DD is kept as text and
    the bar gets no bar_ts: the contract quarantines it (`trading_date:pattern` or `bar_ts:required`)."""
    day = parse_trading_date(row.get("date"))
    raw_date = row.get("date")
    trading_date = day.isoformat() if day else (None if raw_date is None else str(raw_date).strip())
    symbol = row.get("symbol")
    symbol = symbol.strip() if isinstance(symbol, str) else symbol
    return make_bar_event(FILE, symbol, trading_date, day_start_ms(day) if day else None, row)
