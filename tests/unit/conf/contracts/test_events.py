"""conf.contracts.events: event ids, construction, encoding and the validator's reason strings."""
from __future__ import annotations

import hashlib
import json

import pytest

from conf.contracts.schemas import load_schema
from conf.contracts.events import EventValidator, decode, encode, make_trade_event, trade_event_id

BASE = dict(source="simulator", symbol="AAPL", trade_ts=1767623400000, price=189.5, volume=100,
            conditions=["1", "12"], sequence=7)


@pytest.fixture(scope="module")
def validator() -> EventValidator:
    return EventValidator()


def valid_event() -> dict:
    return make_trade_event(**BASE)


def test_event_id_is_sha256_of_the_canonical_string():
    expected = hashlib.sha256(b"simulator|AAPL|1767623400000|189.5|100.0|1,12|7").hexdigest()
    assert trade_event_id(**BASE) == expected
    assert trade_event_id(**BASE) == trade_event_id(**BASE)


def test_event_id_without_sequence_ends_with_an_empty_field():
    expected = hashlib.sha256(b"simulator|AAPL|1767623400000|189.5|100.0||").hexdigest()
    assert trade_event_id(**{**BASE, "conditions": [], "sequence": None}) == expected


def test_event_id_treats_int_and_float_numbers_alike():
    assert trade_event_id(**{**BASE, "volume": 100}) == trade_event_id(**{**BASE, "volume": 100.0})


@pytest.mark.parametrize("change", [
    {"source": "replay"}, {"symbol": "MSFT"}, {"trade_ts": 1767623400001}, {"price": 189.51},
    {"volume": 101}, {"conditions": ["1"]}, {"conditions": []}, {"sequence": 8}, {"sequence": None},
])
def test_changing_any_one_input_changes_the_event_id(change):
    assert trade_event_id(**{**BASE, **change}) != trade_event_id(**BASE)


def test_make_trade_event_has_exactly_the_schema_fields():
    event = valid_event()
    assert list(event) == list(load_schema("trade.v1")["properties"])
    assert event == {
        "event_id": trade_event_id(**BASE), "schema_version": 1, "source": "simulator", "symbol": "AAPL",
        "price": 189.5, "volume": 100.0, "trade_ts": 1767623400000, "conditions": ["1", "12"], "sequence": 7,
    }


def test_make_trade_event_refuses_a_non_integer_timestamp():
    with pytest.raises(TypeError):
        make_trade_event(**{**BASE, "trade_ts": 1767623400000.0})
    with pytest.raises(TypeError):
        make_trade_event(**{**BASE, "sequence": True})


def test_encode_is_compact_utf8_json():
    event = make_trade_event(**{**BASE, "conditions": [], "sequence": None})
    assert encode(event) == (
        b'{"event_id":"' + event["event_id"].encode() + b'","schema_version":1,"source":"simulator",'
        b'"symbol":"AAPL","price":189.5,"volume":100.0,"trade_ts":1767623400000,"conditions":[],"sequence":null}')


def test_encode_refuses_nan():
    with pytest.raises(ValueError):
        encode({**valid_event(), "price": float("nan")})


def test_valid_event_passes(validator):
    event, reason = validator.validate_payload(encode(valid_event()))
    assert (event, reason) == (valid_event(), None)


def test_sequence_is_optional(validator):
    event = valid_event()
    del event["sequence"]
    assert validator.validate_payload(encode(event)) == (event, None)


def payload(**changes) -> bytes:
    """The valid event with fields replaced (value ...) or removed (value DROP)."""
    event = valid_event()
    for name, value in changes.items():
        if value is DROP:
            del event[name]
        else:
            event[name] = value
    return json.dumps(event).encode()


DROP = object()
GOOD = encode(valid_event())


@pytest.mark.parametrize("raw, reason", [
    (b"", "malformed_json"),
    (b"not json", "malformed_json"),
    (GOOD[:-1], "malformed_json"),
    (b"\xff\xfe" + GOOD, "malformed_json"),
    (GOOD.replace(b'"AAPL"', b'"\xe9"'), "malformed_json"),           # not UTF-8
    (b"[1, 2]", "malformed_json"),
    (b'"AAPL"', "malformed_json"),
    (b"null", "malformed_json"),
    (GOOD.replace(b'"price":189.5', b'"price":NaN'), "malformed_json"),
    (GOOD.replace(b'"price":189.5', b'"price":Infinity'), "malformed_json"),
    (GOOD.replace(b'"volume":100.0', b'"volume":-Infinity'), "malformed_json"),
    (GOOD.replace(b'"price":189.5', b'"price":1e400'), "malformed_json"),
    (payload(event_id=DROP), "event_id:required"),
    (payload(price=DROP, symbol=DROP), "symbol:required"),               # first in the schema's order
    (payload(conditions=DROP, trade_ts=DROP), "trade_ts:required"),
    (payload(price="189.50"), "price:type"),
    (payload(price=None), "price:type"),
    (payload(price=True), "price:type"),
    (payload(volume=[100]), "volume:type"),
    (payload(trade_ts=1767623400000.5), "trade_ts:type"),
    (payload(trade_ts=str(1767623400000)), "trade_ts:type"),
    (payload(schema_version="1"), "schema_version:type"),
    (payload(symbol=None), "symbol:type"),
    (payload(conditions="1"), "conditions:type"),
    (payload(conditions=["1", 12]), "conditions:type"),
    (payload(sequence="7"), "sequence:type"),
    (payload(sequence=False), "sequence:type"),
    (payload(event_id="ABC"), "event_id:pattern"),
    (payload(source="Simulator"), "source:pattern"),
    (payload(symbol="aapl"), "symbol:pattern"),
    (payload(price=0), "price:exclusiveMinimum"),
    (payload(price=-1.5), "price:exclusiveMinimum"),
    (payload(price=10000000.01), "price:maximum"),
    (payload(volume=-100), "volume:minimum"),
    (payload(volume=1e11), "volume:maximum"),
    (payload(trade_ts=0), "trade_ts:minimum"),
    (payload(trade_ts=4102444800001), "trade_ts:maximum"),
    (payload(schema_version=0), "schema_version:minimum"),
    (payload(schema_version=3), "schema_version:unsupported"),
    (payload(schema_version=2 ** 63 - 1, price=0), "schema_version:unsupported"),
    (payload(schema_version=2, exchange="nasdaq"), "exchange:pattern"),
    (payload(conditions=["1", "2", "123456789"]), "conditions:maxLength"),
    (payload(conditions=["1"] * 17), "conditions:maxItems"),
    (payload(sequence=-1), "sequence:minimum"),
    (payload(exchange="XNAS"), "additionalProperties"),
])
def test_validator_reason(validator, raw, reason):
    assert validator.validate_payload(raw) == (None, reason)


def literal(name: str, text: str) -> bytes:
    """The valid event with one field's value written as the JSON literal `text` (added when not a field)."""
    return encode({**valid_event(), name: "__literal__"}).replace(b'"__literal__"', text.encode())


@pytest.mark.parametrize("raw, reason", [
    # An integer written with a fraction or an exponent is an integer when its value is integral (JSON Schema).
    (literal("trade_ts", "1.7676234E12"), None),
    (literal("trade_ts", "1767623400000.0"), None),
    (literal("trade_ts", "1767623400000.9999999999999999"), None),    # 1767623400001.0 as a double
    (literal("trade_ts", "1.7676234000005E12"), "trade_ts:type"),
    (literal("schema_version", "1.0"), None),                          # judged as version 1, not the newest
    (literal("schema_version", "1e0"), None),
    (literal("schema_version", "5e0"), "schema_version:unsupported"),
    (literal("sequence", "100.0"), None),
    (literal("sequence", "7E+0"), None),
    (literal("sequence", "-1e0"), "sequence:minimum"),
    (literal("sequence", "1e19"), "sequence:maximum"),
    (literal("sequence", "9.223372036854775807E18"), "sequence:maximum"),  # 2^63 as a double
    (literal("trade_ts", "1" + "0" * 400), "trade_ts:maximum"),        # an integer literal is exact, any length
    (literal("trade_ts", "-1" + "0" * 40), "trade_ts:minimum"),
    # A number literal beyond a double is malformed_json wherever it is; in a string it is just text.
    (literal("price", "1e400"), "malformed_json"),
    (literal("price", "1" + "0" * 400 + ".0"), "malformed_json"),
    (literal("extra", '[1,{"x":-1.5E999}]'), "malformed_json"),
    (literal("extra", '"1e400"'), "additionalProperties"),
    (literal("extra", '["\\\\", 1e400]'), "malformed_json"),
    (literal("extra", '"a\\"1e400"'), "additionalProperties"),
    (literal("extra", "1" + "0" * 400), "additionalProperties"),
])
def test_number_forms(validator, raw, reason):
    assert validator.validate_payload(raw)[1] == reason


@pytest.mark.parametrize("raw, reason", [
    # Jackson's StreamReadConstraints defaults (Spark's parser): a limit is broken over it; a number's length is
    # its digits, a name's its UTF-16 code units, at any depth.
    (literal("price", "9" * 1000), "price:maximum"),
    (literal("price", "-" + "9" * 1000), "price:exclusiveMinimum"),
    (literal("price", "1." + "0" * 998 + "e+0"), None),
    (literal("price", "9" * 1001), "malformed_json"),
    (literal("price", "1." + "0" * 999 + "e0"), "malformed_json"),
    (literal("extra", "-0." + "1" * 1000), "additionalProperties"),     # Jackson does not count a lone 0 there
    (literal("extra", "0." + "1" * 1001), "malformed_json"),
    (literal("k" * 50_000, "1"), "additionalProperties"),
    (literal("k" * 50_001, "1"), "malformed_json"),
    (literal("\U0001d11e" * 25_000, "1"), "additionalProperties"),
    (literal("\U0001d11e" * 25_001, "1"), "malformed_json"),
    (literal("extra", json.dumps({"k" * 50_001: 1})), "malformed_json"),
])
def test_parser_limits(validator, raw, reason):
    assert validator.validate_payload(raw)[1] == reason


def test_string_length_limit():
    at_limit = b'{"s":"' + b"a" * 20_000_000 + b'"}'
    assert decode(at_limit) is not None
    assert decode(at_limit.replace(b'"a', b'"aa', 1)) is None


def test_make_trade_event_v2_adds_the_exchange_and_keeps_the_event_id():
    event = make_trade_event(**BASE, schema_version=2, exchange="XNAS")
    assert list(event) == list(load_schema("trade.v2")["properties"])
    assert event == {**valid_event(), "schema_version": 2, "exchange": "XNAS"}
    assert make_trade_event(**BASE, schema_version=2)["exchange"] is None


def test_make_trade_event_refuses_unknown_versions_and_an_exchange_in_v1():
    with pytest.raises(ValueError, match="unknown trade schema version 3: conf/schemas has v1, v2"):
        make_trade_event(**BASE, schema_version=3)
    with pytest.raises(ValueError, match="exchange needs trade schema version 2"):
        make_trade_event(**BASE, exchange="XNAS")


@pytest.mark.parametrize("event, reason", [
    (make_trade_event(**BASE), None),
    (make_trade_event(**BASE, schema_version=2, exchange="XNAS"), None),
    (make_trade_event(**BASE, schema_version=2), None),
    ({**make_trade_event(**BASE), "exchange": "XNAS"}, "additionalProperties"),   # not a v1 field
    ({**make_trade_event(**BASE, schema_version=2, exchange="XNAS"), "schema_version": 3},
     "schema_version:unsupported"),
])
def test_the_validator_judges_each_event_by_its_own_version(validator, event, reason):
    assert validator.reason(event) == reason


def test_a_validator_of_one_version_keeps_that_versions_rules():
    v1 = EventValidator("trade.v1")
    assert v1.reason(make_trade_event(**BASE, schema_version=2)) == "schema_version:maximum"
    assert v1.reason(make_trade_event(**BASE)) is None
