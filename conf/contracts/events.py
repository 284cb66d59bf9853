"""Trade events: construction, deterministic ids, wire encoding and contract validation.

The contract is conf/schemas/trade.v<N>.json, one file per schema version (v2 adds the optional `exchange`);
nothing here restates its constraints. An event is judged by the version it names in `schema_version`. Validation
failures are reported as short reason strings that the Spark stream uses verbatim for its quarantine:

    malformed_json            payload is not UTF-8, not JSON, not a JSON object, holds NaN/Infinity or a number
                              literal beyond a double's range (1e400), or is beyond the JSON parser's limits
    schema_version:unsupported  a schema_version newer than any conf/schemas knows
    <field>:required          a required top-level field is missing (the first one in the schema's order)
    <field>:<keyword>         a top-level field breaks a schema keyword (type, pattern, minimum, maxLength, ...)
    additionalProperties      an unknown top-level field
"""
from __future__ import annotations

import hashlib
import json
import math
from typing import Any, Iterable, Mapping, Sequence

import fastjsonschema

from conf.contracts.schemas import VERSION_FIELD, load_schema, schema_versions

# Schema families (conf/schemas/<family>.v<N>.json): validators judge each event by the version it names.
SCHEMA_NAME = "trade"
QUOTE_SCHEMA_NAME = "quote"
SCHEMA_VERSION = 1            # quotes and bars; trades are emitted in the version make_trade_event is asked for
TRADE_SCHEMA_VERSIONS = tuple(schema_versions(SCHEMA_NAME))
UNSUPPORTED_VERSION = f"{VERSION_FIELD}:unsupported"
INT64_MAX = 2 ** 63 - 1
QUOTE_PRICE_FIELDS = ("current", "change", "percent_change", "high", "low", "open", "previous_close")

MALFORMED_JSON = "malformed_json"
ADDITIONAL_PROPERTIES = "additionalProperties"


def trade_event_id(source: str, symbol: str, trade_ts: int, price: float, volume: float,
                   conditions: Iterable[str], sequence: int | None) -> str:
    """sha256 hex of the trade's identifying fields: the same trade delivered twice gets the same id."""
    canonical = "|".join([
        source,
        symbol,
        str(trade_ts),
        repr(float(price)),
        repr(float(volume)),
        ",".join(conditions),
        "" if sequence is None else str(sequence),
    ])
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def make_trade_event(source: str, symbol: str, trade_ts: int, price: float, volume: float,
                     conditions: Sequence[str], sequence: int | None = None, *, schema_version: int = 1,
                     exchange: str | None = None) -> dict[str, Any]:
    """A trade event with exactly the fields of its schema version, in the schema's property order. The event id
    leaves the version and the exchange out: the same trade sent as v1 and as v2 is one event."""
    if schema_version not in TRADE_SCHEMA_VERSIONS:
        raise ValueError(f"unknown trade schema version {schema_version!r}: conf/schemas has "
                         f"{', '.join(f'v{v}' for v in TRADE_SCHEMA_VERSIONS)}")
    if exchange is not None and schema_version < 2:
        raise ValueError("exchange needs trade schema version 2 or later")
    # bool is an int in Python but not an integer in the contract: refuse it here rather than publish it.
    if isinstance(trade_ts, bool) or not isinstance(trade_ts, int):
        raise TypeError(f"trade_ts must be an int (epoch milliseconds), got {trade_ts!r}")
    if sequence is not None and (isinstance(sequence, bool) or not isinstance(sequence, int)):
        raise TypeError(f"sequence must be an int or None, got {sequence!r}")
    conditions = [str(c) for c in conditions]
    price, volume = float(price), float(volume)
    event = {
        "event_id": trade_event_id(source, symbol, trade_ts, price, volume, conditions, sequence),
        "schema_version": schema_version,
        "source": source,
        "symbol": symbol,
        "price": price,
        "volume": volume,
        "trade_ts": trade_ts,
        "conditions": conditions,
        "sequence": sequence,
    }
    if schema_version >= 2:
        event["exchange"] = exchange
    return event


def quote_event_id(source: str, symbol: str, quote_ts: int, prices: Sequence[float | None]) -> str:
    """sha256 hex of a quote snapshot: polling an unchanged quote again gives the same id (collapsed in Silver)."""
    canonical = "|".join([source, symbol, str(quote_ts)] + ["" if p is None else repr(float(p)) for p in prices])
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def make_quote_event(source: str, symbol: str, quote_ts: int, *, current: float, change: float | None,
                     percent_change: float | None, high: float, low: float, open: float,
                     previous_close: float) -> dict[str, Any]:
    """A quote event with exactly the quote.v1 schema's fields, in its property order."""
    if isinstance(quote_ts, bool) or not isinstance(quote_ts, int):
        raise TypeError(f"quote_ts must be an int (epoch milliseconds), got {quote_ts!r}")
    values = {"current": current, "change": change, "percent_change": percent_change, "high": high, "low": low,
              "open": open, "previous_close": previous_close}
    values = {name: None if value is None else float(value) for name, value in values.items()}
    return {
        "event_id": quote_event_id(source, symbol, quote_ts, [values[name] for name in QUOTE_PRICE_FIELDS]),
        "schema_version": SCHEMA_VERSION,
        "source": source,
        "symbol": symbol,
        **values,
        "quote_ts": quote_ts,
    }


def encode(event: Mapping[str, Any]) -> bytes:
    """Compact UTF-8 JSON; NaN/Infinity are refused (ValueError) because they are not JSON."""
    return json.dumps(event, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode("utf-8")


# Jackson's StreamReadConstraints defaults (jackson-core 2.21), which Spark's JSON parsers apply: the stream calls a
# payload beyond them malformed_json, so decode() does too. A limit is broken when exceeded; lengths are Java's (UTF-16
# code units), a number's its digits (_digits). Nesting deeper than 1,000 fails here already (Python's recursion limit).
MAX_NUMBER_DIGITS = 1_000
MAX_NAME_LENGTH = 50_000
MAX_STRING_LENGTH = 20_000_000


class _Refused(ValueError):
    pass


def _reject_constant(name: str) -> Any:
    raise _Refused(f"non-finite number {name}")


def _digits(text: str) -> int:
    """A number literal's length as Jackson counts it: its digits, a lone 0 before the point not counted."""
    body = text.lstrip("-")
    return len(body) - sum(body.count(c) for c in "-+.eE") - body.startswith("0")


def _checked_int(text: str) -> int:
    if len(text) > MAX_NUMBER_DIGITS and _digits(text) > MAX_NUMBER_DIGITS:
        raise _Refused("number too long")
    return int(text)


def _checked_float(text: str) -> float:
    if len(text) > MAX_NUMBER_DIGITS and _digits(text) > MAX_NUMBER_DIGITS:
        raise _Refused("number too long")
    # A literal such as 1e400 overflows to inf: as unrepresentable as a bare Infinity (RFC 8259 section 6).
    value = float(text)
    if not math.isfinite(value):
        raise _Refused(f"non-finite number {text}")
    return value


def _utf16_length(text: str) -> int:
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def _within_text_limits(value: Any, check_strings: bool) -> bool:
    """No key (at any depth) over MAX_NAME_LENGTH, no string over MAX_STRING_LENGTH when check_strings."""
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, dict):
            if any(len(k) > MAX_NAME_LENGTH // 2 and _utf16_length(k) > MAX_NAME_LENGTH for k in item):
                return False
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
        elif (check_strings and isinstance(item, str) and len(item) > MAX_STRING_LENGTH // 2
              and _utf16_length(item) > MAX_STRING_LENGTH):
            return False
    return True


def decode(payload: bytes) -> dict[str, Any] | None:
    """The JSON object in payload, or None if it is not UTF-8 JSON text holding an object of finite numbers, within
    the parser limits above."""
    try:
        text = payload.decode("utf-8")
        value = json.loads(text, parse_constant=_reject_constant, parse_float=_checked_float,
                           parse_int=_checked_int)
    except (ValueError, RecursionError):  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        return None
    if not isinstance(value, dict):
        return None
    # A key or string has at most one UTF-16 unit per byte of its JSON text: short payloads need no walk.
    if len(payload) > MAX_NAME_LENGTH and not _within_text_limits(value, len(payload) > MAX_STRING_LENGTH):
        return None
    return value


class EventValidator:
    """Validates payloads against a message schema and names the first violation as a reason string.

    Given a family ('trade'), it knows every version in conf/schemas and judges each event by the one its
    schema_version names; a newer version than it knows is `schema_version:unsupported`, and an absent or
    ill-typed version is judged by the newest schema (which names what is wrong with it). Given one version
    ('trade.v1'), only that schema."""

    def __init__(self, schema_name: str = SCHEMA_NAME):
        self.schema_name = schema_name
        if ".v" in schema_name:
            schemas = {None: load_schema(schema_name)}
        else:
            schemas = schema_versions(schema_name)
        self._validators = {version: (fastjsonschema.compile(schema), tuple(schema.get("required", ())))
                            for version, schema in schemas.items()}
        self._latest = max((v for v in schemas if v is not None), default=None)
        self.schema: dict[str, Any] = schemas[self._latest]

    def reason(self, event: Any) -> str | None:
        """None if event (a decoded JSON value) satisfies the schema, else the reason string."""
        if not isinstance(event, dict):
            return MALFORMED_JSON
        version = event.get(VERSION_FIELD)
        if type(version) is float and version.is_integer():  # 1.0 and 2e0 are integers to JSON Schema
            version = int(version)
        # Beyond int64 a version is out of any range (`maximum`), as the stream reads it, not a future version.
        if self._latest is not None and type(version) is int and self._latest < version <= INT64_MAX:
            return UNSUPPORTED_VERSION
        validate, required = self._validators.get(version if type(version) is int else None,
                                                  self._validators[self._latest])
        try:
            validate(event)
        except fastjsonschema.JsonSchemaValueException as exc:
            return self._reason_from(exc, event, required)
        return None

    def validate_payload(self, payload: bytes) -> tuple[dict[str, Any] | None, str | None]:
        """(event, None) when payload is a valid event, else (None, reason)."""
        event = decode(payload)
        if event is None:
            return None, MALFORMED_JSON
        reason = self.reason(event)
        return (event, None) if reason is None else (None, reason)

    def _reason_from(self, exc: fastjsonschema.JsonSchemaValueException, event: Mapping[str, Any],
                     required: tuple[str, ...]) -> str:
        # exc.path is ["data", <top-level property>, <index or nested key>...]: the reason names the
        # top-level property, so an error in conditions[2] is reported against "conditions".
        path = list(exc.path or [])
        if exc.rule == "required" and len(path) <= 1:
            missing = next((field for field in required if field not in event), None)
            if missing is not None:
                return f"{missing}:required"
        if exc.rule == "additionalProperties" and len(path) <= 1:
            return ADDITIONAL_PROPERTIES
        if len(path) >= 2:
            return f"{path[1]}:{exc.rule}"
        # A rule on the whole object other than the above (e.g. type): the payload is not an event object.
        return MALFORMED_JSON if exc.rule == "type" else str(exc.rule)
