"""Strict checks for names that reach SQL, an object-store path or a Kafka key.

Identifiers (database, schema, table, warehouse, role names) cannot be bound parameters, so every one that comes
from settings or the environment goes through sql_identifier() first: a plain, unquoted identifier, ASCII only,
nothing that could close a quote or start another statement. Values (symbols, dates, numbers) are bound
parameters where the driver supports them; symbols are also checked with symbol() against the trade contract's own
pattern (conf/schemas/trade.v1.json, the one definition of a ticker) before they are used anywhere.

Errors are IdentifierError (a ValueError): one line, starting with the setting's name, then the bad value as
repr() shows it (so a newline or a quote stays visible and on one line), cut to a readable length.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

SCHEMA_FILE = Path(__file__).resolve().parent / "schemas" / "trade.v1.json"

IDENTIFIER_MAX = 255
# ASCII ranges spelled out (never \w or \d, which match Unicode letters and digits) and fullmatch() only (a `$`
# anchor would let a trailing newline through).
_IDENTIFIERS = {
    # Unquoted Snowflake identifier: a letter or _, then letters, digits, _ or $.
    "snowflake": (re.compile(r"[A-Za-z_][A-Za-z0-9_$]{0,254}"), "an unquoted Snowflake identifier",
                  "a letter or _, then letters, digits, _ or $"),
    # Plain DuckDB (PostgreSQL-style) identifier, without the $ some dialects allow.
    "duckdb": (re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,254}"), "a plain DuckDB identifier",
               "a letter or _, then letters, digits or _"),
}
# A Delta table's location as the maintenance jobs put it into SQL (delta.`<uri>`): s3a://, an S3 bucket name, then
# path segments of letters, digits and _ . = - (no quote, backtick, space or control character can pass).
LAKE_URI = re.compile(r"s3a://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](?:/[A-Za-z0-9_.=-]+)+")
SHOW_MAX = 60


class IdentifierError(ValueError):
    """A name or symbol refused before it reached SQL, a path or a key; the message is one line."""


def show(value: Any) -> str:
    """A bad value for an error message: repr keeps it on one line, the cut keeps it short."""
    if isinstance(value, str) and len(value) > SHOW_MAX:
        value = value[:SHOW_MAX - 3] + "..."
    return repr(value)


def sql_identifier(name: Any, setting: str, dialect: str = "snowflake") -> str:
    """`name` if it is a plain identifier of `dialect` (snowflake or duckdb), else IdentifierError naming
    `setting`. Returned unchanged: Snowflake upper-cases unquoted names itself (callers that quote do it)."""
    pattern, what, rule = _IDENTIFIERS[dialect]
    if name is None or name == "":
        raise IdentifierError(f"{setting}: required, {what} ({rule})")
    if not isinstance(name, str):
        raise IdentifierError(f"{setting}: {show(name)} is not {what} ({rule})")
    if len(name) > IDENTIFIER_MAX:
        raise IdentifierError(f"{setting}: longer than {IDENTIFIER_MAX} characters")
    if not pattern.fullmatch(name):
        raise IdentifierError(f"{setting}: {show(name)} is not {what} ({rule})")
    return name


def qualified_identifier(name: Any, setting: str, dialect: str = "snowflake", max_parts: int = 3) -> str:
    """database.schema.table (1 to max_parts dot-separated parts), each part a plain identifier."""
    if isinstance(name, str) and name:
        parts = name.split(".")
        if len(parts) > max_parts:
            raise IdentifierError(f"{setting}: {show(name)} has more than {max_parts} dot-separated parts")
        for part in parts:
            try:
                sql_identifier(part, setting, dialect)
            except IdentifierError:
                _, what, rule = _IDENTIFIERS[dialect]
                raise IdentifierError(f"{setting}: {show(name)} is not a qualified name of parts that are each "
                                      f"{what} ({rule})") from None
        return name
    return sql_identifier(name, setting, dialect)  # the required / wrong-type message


def lake_uri(uri: Any, setting: str = "lake.bucket") -> str:
    """`uri` if it is s3a://<bucket>/<path> with plain segments (none of them . or ..), else IdentifierError."""
    if not isinstance(uri, str) or not LAKE_URI.fullmatch(uri) \
            or any(part in (".", "..") for part in uri.removeprefix("s3a://").split("/")):
        raise IdentifierError(f"{setting}: {show(uri)} is not a lake table location (s3a://<bucket>/<path>, "
                              f"letters, digits and _ . = - only)")
    return uri


def _symbol_pattern() -> re.Pattern[str]:
    pattern = json.loads(SCHEMA_FILE.read_text())["properties"]["symbol"]["pattern"]
    # The schema's pattern is anchored (^...$) for JSON Schema validators; fullmatch() anchors it here, and the
    # ASCII flag keeps any class shorthand the contract might use to ASCII.
    return re.compile(pattern.removeprefix("^").removesuffix("$"), re.ASCII)


SYMBOL = _symbol_pattern()


def is_symbol(value: Any) -> bool:
    """Whether value is a ticker as the trade contract defines it."""
    return isinstance(value, str) and SYMBOL.fullmatch(value) is not None


def symbol(value: Any, setting: str = "symbol") -> str:
    """`value` if it is a ticker (conf/schemas/trade.v1.json's symbol pattern), else IdentifierError."""
    if not is_symbol(value):
        raise IdentifierError(f"{setting}: {show(value)} is not a ticker (upper case, like AAPL, BRK.B or "
                              f"BINANCE:BTCUSDT)")
    return value
