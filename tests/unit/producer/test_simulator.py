"""producer.simulator: reproducibility, fault injection, prices, sizes and arrival times."""
from __future__ import annotations

import json
import math
import re
from collections import Counter

import pytest

from conf.settings import load_settings
from conf.contracts.events import EventValidator
from producer.simulator import (DEFAULT_SYMBOL_SPEC, KINDS, TRADING_SECONDS_PER_YEAR, MarketSimulator,
                                kind_counts, validate_symbols)

START_MS = 1767623400000  # 2026-01-05T14:30:00Z
LATE_BY_S = 1800
OOO_MAX_S = 5
RATIOS = dict(duplicate_ratio=0.1, late_ratio=0.05, out_of_order_ratio=0.1, malformed_ratio=0.05)


@pytest.fixture(scope="module")
def symbols():
    return dict(load_settings({}).simulator.symbols)


@pytest.fixture(scope="module")
def validator():
    return EventValidator()


def make(symbols, seed=42, rate=1000.0, **kw):
    return MarketSimulator(symbols, rate=rate, seed=seed, start_ms=START_MS, annual_drift=0.05,
                           late_by_seconds=LATE_BY_S, out_of_order_max_seconds=OOO_MAX_S, **kw)


@pytest.fixture(scope="module")
def mixed(symbols):
    return make(symbols, **RATIOS).take(10000)


def test_same_seed_gives_byte_identical_records(symbols):
    assert make(symbols, **RATIOS).take(3000) == make(symbols, **RATIOS).take(3000)


def test_different_seed_gives_different_records(symbols):
    a = [r.value for r in make(symbols, seed=1, **RATIOS).take(100)]
    b = [r.value for r in make(symbols, seed=2, **RATIOS).take(100)]
    assert a != b
    assert len(set(a) & set(b)) == 0


def test_take_continues_the_stream(symbols):
    sim = make(symbols, **RATIOS)
    assert sim.take(50) + sim.take(50) == make(symbols, **RATIOS).take(100)


def test_kind_counts_are_near_their_ratios_and_add_up(mixed):
    counts = kind_counts(mixed)
    assert sum(counts.values()) == 10000
    assert set(counts) == set(KINDS)
    expected = {"duplicate": 0.1, "late": 0.05, "out_of_order": 0.1, "malformed": 0.05, "trade": 0.7}
    for kind, p in expected.items():
        sd = math.sqrt(10000 * p * (1 - p))
        assert abs(counts[kind] - 10000 * p) < 5 * sd, (kind, counts[kind])


def test_every_valid_record_passes_the_validator(mixed, validator):
    valid = [r for r in mixed if r.kind != "malformed"]
    assert len(valid) > 9000
    for record in valid:
        event, reason = validator.validate_payload(record.value)
        assert reason is None, (record, reason)
        assert event["event_id"] == record.event_id
        assert record.key == event["symbol"].encode()
        assert record.trade_ts == event["trade_ts"]
        assert record.expected_reason is None


def test_every_malformed_record_fails_with_its_expected_reason(mixed, validator):
    malformed = [r for r in mixed if r.kind == "malformed"]
    assert len(malformed) > 300
    reasons = Counter()
    for record in malformed:
        assert record.event_id is None
        assert validator.validate_payload(record.value) == (None, record.expected_reason), record
        reasons[record.expected_reason if not record.expected_reason.endswith(":required") else ":required"] += 1
    assert set(reasons) == {"malformed_json", "price:exclusiveMinimum", "volume:minimum", "symbol:pattern",
                            ":required", "price:type", "additionalProperties"}


def test_malformed_records_are_keyed_by_the_symbol_they_came_from(symbols, mixed):
    for record in mixed:
        if record.kind == "malformed":
            assert record.key.decode() in symbols


def test_duplicates_are_byte_identical_to_an_earlier_valid_record(mixed):
    seen = set()
    duplicates = 0
    for record in mixed:
        if record.kind in ("trade", "late", "out_of_order"):
            seen.add((record.key, record.value, record.event_id, record.trade_ts))
        elif record.kind == "duplicate":
            duplicates += 1
            assert (record.key, record.value, record.event_id, record.trade_ts) in seen
    assert duplicates > 800


def test_duplicate_before_any_trade_is_a_trade(symbols):
    records = make(symbols, duplicate_ratio=1.0).take(5)
    assert [r.kind for r in records] == ["trade", "duplicate", "duplicate", "duplicate", "duplicate"]
    assert {r.value for r in records} == {records[0].value}


def test_distinct_trades_have_fresh_ids_and_consecutive_sequences(mixed):
    distinct = [r for r in mixed if r.kind in ("trade", "late", "out_of_order")]
    assert len({r.event_id for r in distinct}) == len(distinct)
    assert [json.loads(r.value)["sequence"] for r in distinct] == list(range(1, len(distinct) + 1))


def test_timestamps_by_kind(mixed):
    late = [r for r in mixed if r.kind == "late"]
    ooo = [r for r in mixed if r.kind == "out_of_order"]
    assert late and ooo
    for record in late:
        assert record.trade_ts == record.clock_ms - LATE_BY_S * 1000
    for record in ooo:
        assert record.clock_ms - OOO_MAX_S * 1000 <= record.trade_ts < record.clock_ms
    for record in mixed:
        if record.kind == "trade":
            assert record.trade_ts == record.clock_ms
    clocks = [r.clock_ms for r in mixed]
    assert clocks == sorted(clocks)
    assert clocks[0] >= START_MS


def test_prices_are_positive_with_at_most_two_decimals(mixed):
    for record in mixed:
        if record.kind == "malformed":
            continue
        text = re.search(rb'"price":([^,]+),', record.value).group(1).decode()
        assert re.fullmatch(r"\d+\.\d{1,2}", text), text
        assert float(text) > 0


def test_volumes_are_round_lots_or_flagged_odd_lots(mixed):
    round_lots = odd_lots = 0
    for record in mixed:
        if record.kind == "malformed":
            continue
        event = json.loads(record.value)
        volume = event["volume"]
        if event["conditions"] == ["I"]:
            assert 1 <= volume <= 99 and volume == int(volume)
            odd_lots += 1
        else:
            assert volume >= 100 and volume % 100 == 0
            round_lots += 1
    assert 0.1 < odd_lots / (odd_lots + round_lots) < 0.3


def test_mean_inter_arrival_matches_the_rate(symbols):
    records = make(symbols, rate=1000.0).take(20000)
    assert {r.kind for r in records} == {"trade"}
    ts = [r.trade_ts for r in records]
    assert ts == sorted(ts)
    mean_ms = (ts[-1] - ts[0]) / (len(ts) - 1)
    assert abs(mean_ms - 1.0) < 0.05


def test_symbols_are_chosen_by_weight(symbols):
    records = make(symbols).take(20000)
    counts = Counter(r.key.decode() for r in records)
    total_weight = sum(spec["weight"] for spec in symbols.values())
    for symbol, spec in symbols.items():
        p = spec["weight"] / total_weight
        assert abs(counts[symbol] - 20000 * p) < 5 * math.sqrt(20000 * p * (1 - p)), symbol


def test_zero_volatility_and_drift_keep_the_price(validator):
    sim = MarketSimulator({"ABC": {"price": 12.34, "volatility": 0.0, "weight": 1}}, rate=10, seed=1,
                          start_ms=START_MS, annual_drift=0.0, late_by_seconds=LATE_BY_S,
                          out_of_order_max_seconds=OOO_MAX_S)
    assert {json.loads(r.value)["price"] for r in sim.take(500)} == {12.34}


def test_drift_compounds_over_simulated_time():
    # With no volatility, GBM is deterministic: p(t) = p0 * exp(mu * t / trading seconds per year).
    sim = MarketSimulator({"ABC": {"price": 100.0, "volatility": 0.0, "weight": 1}}, rate=0.1, seed=3,
                          start_ms=START_MS, annual_drift=2.0, late_by_seconds=LATE_BY_S,
                          out_of_order_max_seconds=OOO_MAX_S)
    last = sim.take(20000)[-1]
    elapsed_s = (last.clock_ms - START_MS) / 1000
    expected = 100.0 * math.exp(2.0 * elapsed_s / TRADING_SECONDS_PER_YEAR)
    assert expected > 105  # the run is long enough for drift to show
    assert abs(json.loads(last.value)["price"] - expected) <= 0.011


def test_prices_follow_their_volatility(symbols):
    # Log returns over the run: a 0.55-vol symbol moves more than a 0.20-vol one.
    records = make(symbols, rate=50).take(20000)
    prices = {}
    for r in records:
        prices.setdefault(r.key.decode(), []).append(json.loads(r.value)["price"])

    def realised(symbol):
        p = prices[symbol]
        returns = [math.log(b / a) for a, b in zip(p, p[1:])]
        return math.sqrt(sum(x * x for x in returns) / len(returns))

    assert realised("TSLA") > realised("JPM")
    assert all(p > 0 for series in prices.values() for p in series)


def test_validate_symbols_defaults_and_order(symbols):
    result = validate_symbols(["MSFT", "BRK.B", "MSFT", "BINANCE:BTCUSDT"], symbols)
    assert list(result) == ["MSFT", "BRK.B", "BINANCE:BTCUSDT"]
    assert result["MSFT"] == dict(symbols["MSFT"])
    assert result["BRK.B"] == DEFAULT_SYMBOL_SPEC == {"price": 100.0, "volatility": 0.3, "weight": 1}


@pytest.mark.parametrize("bad", ["aapl", "1ABC", "", "A" * 21, "AA PL"])
def test_validate_symbols_rejects_what_the_schema_rejects(bad, symbols):
    with pytest.raises(ValueError, match=re.escape(f"invalid symbol {bad!r}")):
        validate_symbols(["AAPL", bad], symbols)


def test_validate_symbols_needs_at_least_one():
    with pytest.raises(ValueError, match="no symbols"):
        validate_symbols([], {})


@pytest.mark.parametrize("kwargs, message", [
    ({"rate": 0}, "rate must be"),
    ({"duplicate_ratio": 1.5}, "duplicate_ratio must be within"),
    ({"late_ratio": 0.6, "malformed_ratio": 0.5}, "sum to"),
    ({"source": "Sim"}, "invalid source"),
])
def test_simulator_rejects_bad_arguments(symbols, kwargs, message):
    with pytest.raises(ValueError, match=message):
        make(symbols, **kwargs)
