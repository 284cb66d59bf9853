"""A seeded, reproducible stock market: trades plus the faults a real feed has.

Everything random comes from one random.Random(seed) and time is a simulated clock, so the same arguments
always give byte-identical records. Trades arrive as a Poisson process; each symbol's price follows a
geometric Brownian motion. Besides normal trades the simulator emits, by configured ratios:

    duplicate     the exact bytes of a recently emitted valid record, re-sent (same key, value and event_id)
    late          a new trade stamped late_by_seconds before the clock (beyond the stream's watermark)
    out_of_order  a new trade stamped up to out_of_order_max_seconds before the clock (within the watermark)
    malformed     a payload that breaks the contract in exactly one way; expected_reason says which
"""
from __future__ import annotations

import math
import random
import re
from collections import deque
from dataclasses import dataclass
from typing import Any, Iterable, Iterator, Mapping

from conf.identifiers import SYMBOL, is_symbol
from conf.contracts.schemas import schema_versions

from conf.contracts.events import ADDITIONAL_PROPERTIES, MALFORMED_JSON, SCHEMA_NAME, encode, make_trade_event

KINDS = ("trade", "duplicate", "late", "out_of_order", "malformed")
VALID_KINDS = frozenset({"trade", "late", "out_of_order"})
# Trading seconds per year (252 sessions of 6.5 hours): volatility and drift are annualised over these.
TRADING_SECONDS_PER_YEAR = 252 * 6.5 * 3600
DEFAULT_SYMBOL_SPEC = {"price": 100.0, "volatility": 0.3, "weight": 1}
DUPLICATE_WINDOW = 1000
# The ways a malformed record breaks the contract; cycled through so that even a short run covers each.
MALFORMED_VARIANTS = ("truncated_json", "non_positive_price", "negative_volume", "lowercase_symbol",
                      "missing_field", "price_as_string", "extra_field")
# Finnhub-style condition codes for round lots (regular-way trades mostly carry none) and odd lots.
ROUND_LOT_CONDITIONS = ((), ("1",), ("12",), ("1", "12"))
ROUND_LOT_CONDITION_WEIGHTS = (70, 15, 10, 5)
ODD_LOT_CONDITIONS = ("I",)
ODD_LOT_PROBABILITY = 0.2
# Trade schema v2 venues (ISO 10383 MICs): Nasdaq, NYSE, NYSE Arca, Cboe BZX, IEX.
VENUES = ("XNAS", "XNYS", "ARCX", "BATS", "IEXG")


@dataclass(frozen=True)
class SimRecord:
    """One record as it would be produced to Kafka, with what the simulator knows about it."""

    kind: str                     # "trade" | "duplicate" | "late" | "out_of_order" | "malformed"
    key: bytes                    # the symbol, UTF-8
    value: bytes                  # the payload
    event_id: str | None          # None for malformed records
    expected_reason: str | None   # for malformed records: the reason the validator / stream gives
    trade_ts: int | None          # the payload's trade_ts, when it has a valid one
    clock_ms: int = 0             # simulated clock (epoch ms) when the record was emitted, for pacing


def validate_symbols(symbols: Iterable[str], configured: Mapping[str, Mapping[str, Any]] | None = None
                     ) -> dict[str, dict[str, Any]]:
    """{symbol: {price, volatility, weight}} for the requested symbols, in order, without repeats.

    Symbols missing from `configured` (e.g. settings.simulator.symbols) get DEFAULT_SYMBOL_SPEC. Each symbol
    must match the contract's symbol pattern, else ValueError.
    """
    configured = configured or {}
    result: dict[str, dict[str, Any]] = {}
    for symbol in symbols:
        if not is_symbol(symbol):  # the contract's pattern, matched in full (a trailing newline fails too)
            raise ValueError(f"invalid symbol {symbol!r}: must match ^{SYMBOL.pattern}$ "
                             f"(upper-case ticker, e.g. AAPL, BRK.B)")
        if symbol not in result:
            result[symbol] = dict(configured.get(symbol, DEFAULT_SYMBOL_SPEC))
    if not result:
        raise ValueError("no symbols given")
    return result


def _ratio(name: str, value: float) -> float:
    if not 0.0 <= value <= 1.0:  # also refuses NaN
        raise ValueError(f"{name} must be within [0, 1], got {value!r}")
    return float(value)


class MarketSimulator:
    """Generates an infinite, reproducible stream of SimRecords (see the module docstring)."""

    def __init__(self, symbols: Mapping[str, Mapping[str, Any]], rate: float, seed: int, start_ms: int,
                 annual_drift: float, late_by_seconds: float, out_of_order_max_seconds: float,
                 duplicate_ratio: float = 0.0, late_ratio: float = 0.0, out_of_order_ratio: float = 0.0,
                 malformed_ratio: float = 0.0, source: str = "simulator", schema_version: int = 1):
        if not symbols:
            raise ValueError("no symbols given")
        if not (math.isfinite(rate) and rate > 0):
            raise ValueError(f"rate must be a positive number of trades per second, got {rate!r}")
        if late_by_seconds < 0 or out_of_order_max_seconds < 0:
            raise ValueError("late_by_seconds and out_of_order_max_seconds must be >= 0")
        ratios = [_ratio("duplicate_ratio", duplicate_ratio), _ratio("late_ratio", late_ratio),
                  _ratio("out_of_order_ratio", out_of_order_ratio), _ratio("malformed_ratio", malformed_ratio)]
        if sum(ratios) > 1.0 + 1e-9:
            raise ValueError(f"duplicate, late, out-of-order and malformed ratios sum to {sum(ratios)}, > 1")
        versions = schema_versions(SCHEMA_NAME)
        if schema_version not in versions:
            raise ValueError(f"unknown trade schema version {schema_version!r} (conf/schemas has "
                             f"{', '.join(f'v{v}' for v in versions)})")
        schema = versions[schema_version]
        source_pattern = schema["properties"]["source"]["pattern"]
        if not re.fullmatch(source_pattern.removeprefix("^").removesuffix("$"), source):  # no trailing newline
            raise ValueError(f"invalid source {source!r}: must match {source_pattern}")
        for symbol, spec in symbols.items():
            if spec["price"] <= 0 or spec["volatility"] < 0 or spec["weight"] <= 0:
                raise ValueError(f"{symbol}: price and weight must be > 0, volatility >= 0")

        self._schema = schema
        self._schema_version = schema_version
        self._symbols = list(symbols)
        self._volatility = {s: float(symbols[s]["volatility"]) for s in self._symbols}
        self._cum_weights: list[float] = []
        total = 0.0
        for s in self._symbols:
            total += float(symbols[s]["weight"])
            self._cum_weights.append(total)
        self._rng = random.Random(seed)  # noqa: S311 - a seeded market simulation, reproducible; not cryptography
        self._rate = float(rate)
        self._start_ms = int(start_ms)
        self._mu = float(annual_drift)
        self._late_by_ms = round(late_by_seconds * 1000)
        self._ooo_max_ms = round(out_of_order_max_seconds * 1000)
        # Cumulative thresholds for the kind draw; the remaining probability is a normal trade.
        self._thresholds = []
        acc = 0.0
        for kind, ratio in zip(("duplicate", "late", "out_of_order", "malformed"), ratios):
            acc += ratio
            self._thresholds.append((acc, kind))
        self._source = source
        self._clock_s = 0.0                                    # simulated seconds since start_ms
        self._price = {s: float(symbols[s]["price"]) for s in self._symbols}
        self._last_s = {s: 0.0 for s in self._symbols}         # simulated time of each symbol's last trade
        self._sequence = 0                                     # distinct trades emitted so far
        self._recent: deque[SimRecord] = deque(maxlen=DUPLICATE_WINDOW)
        self._malformed_count = 0

    @property
    def clock_ms(self) -> int:
        """The simulated clock, epoch milliseconds."""
        return self._start_ms + int(self._clock_s * 1000)

    def records(self) -> Iterator[SimRecord]:
        """An infinite stream of records; it continues from (and advances) this simulator's state."""
        while True:
            yield self.next_record()

    def take(self, n: int) -> list[SimRecord]:
        """The next n records."""
        return [self.next_record() for _ in range(n)]

    def next_record(self) -> SimRecord:
        """Advance the clock by one Poisson inter-arrival time and emit one record."""
        rng = self._rng
        self._clock_s += rng.expovariate(self._rate)
        clock_ms = self.clock_ms
        kind = self._draw_kind()
        if kind == "duplicate":
            if self._recent:
                original = self._recent[rng.randrange(len(self._recent))]
                return SimRecord("duplicate", original.key, original.value, original.event_id, None,
                                 original.trade_ts, clock_ms)
            kind = "trade"  # nothing to duplicate yet
        if kind == "malformed":
            return self._malformed(clock_ms)
        if kind == "late":
            trade_ts = clock_ms - self._late_by_ms
        elif kind == "out_of_order":
            trade_ts = clock_ms - (1 + rng.randrange(self._ooo_max_ms) if self._ooo_max_ms > 0 else 0)
        else:
            trade_ts = clock_ms
        symbol = self._draw_symbol()
        price = self._step_price(symbol)
        volume, conditions = self._draw_size()
        self._sequence += 1
        event = make_trade_event(self._source, symbol, trade_ts, price, volume, conditions, self._sequence,
                                 schema_version=self._schema_version,
                                 # v2's venue, drawn from the sequence: no random draw, so v1 and v2 runs of a
                                 # seed are the same trades.
                                 exchange=VENUES[self._sequence % len(VENUES)] if self._schema_version >= 2 else None)
        record = SimRecord(kind, symbol.encode("utf-8"), encode(event), event["event_id"], None, trade_ts,
                           clock_ms)
        self._recent.append(record)
        return record

    # -- draws -------------------------------------------------------------------------------------------

    def _draw_kind(self) -> str:
        u = self._rng.random()
        for threshold, kind in self._thresholds:
            if u < threshold:
                return kind
        return "trade"

    def _draw_symbol(self) -> str:
        return self._rng.choices(self._symbols, cum_weights=self._cum_weights)[0]

    def _step_price(self, symbol: str) -> float:
        """One GBM step over the simulated time since the symbol's last trade; returns the published price."""
        dt = (self._clock_s - self._last_s[symbol]) / TRADING_SECONDS_PER_YEAR
        self._last_s[symbol] = self._clock_s
        sigma = self._volatility[symbol]
        z = self._rng.gauss(0.0, 1.0)
        self._price[symbol] *= math.exp((self._mu - sigma * sigma / 2) * dt + sigma * math.sqrt(dt) * z)
        return self._published_price(symbol)

    def _published_price(self, symbol: str) -> float:
        return max(0.01, round(self._price[symbol], 2))

    def _draw_size(self) -> tuple[int, list[str]]:
        """(volume, conditions): mostly round lots with a heavy tail, some flagged odd lots."""
        rng = self._rng
        if rng.random() < ODD_LOT_PROBABILITY:
            return rng.randint(1, 99), list(ODD_LOT_CONDITIONS)
        # Pareto(1.2) gives mostly 100-200 share prints with occasional blocks; capped at 100,000 shares.
        lots = min(1000, int(rng.paretovariate(1.2)))
        conditions = rng.choices(ROUND_LOT_CONDITIONS, weights=ROUND_LOT_CONDITION_WEIGHTS)[0]
        return 100 * lots, list(conditions)

    # -- malformed records ---------------------------------------------------------------------------------

    def _malformed(self, clock_ms: int) -> SimRecord:
        """A payload derived from a plausible trade but breaking the contract in exactly one way."""
        rng = self._rng
        variant = MALFORMED_VARIANTS[self._malformed_count % len(MALFORMED_VARIANTS)]
        self._malformed_count += 1
        symbol = self._draw_symbol()
        volume, conditions = self._draw_size()
        # Not a distinct trade: it does not move the price path or consume a sequence number.
        event: dict[str, Any] = make_trade_event(self._source, symbol, clock_ms, self._published_price(symbol),
                                                 volume, conditions, None, schema_version=self._schema_version)
        props = self._schema["properties"]
        trade_ts: int | None = clock_ms
        if variant == "truncated_json":
            # Any proper prefix of a JSON object lacks its closing brace, so it never parses.
            full = encode(event)
            value = full[:rng.randrange(1, len(full))]
            return SimRecord("malformed", symbol.encode("utf-8"), value, None, MALFORMED_JSON, trade_ts, clock_ms)
        if variant == "non_positive_price":
            bound = props["price"]["exclusiveMinimum"]
            event["price"] = float(bound) - rng.choice((0.0, 0.01, 1.0, round(event["price"], 2)))
            reason = "price:exclusiveMinimum"
        elif variant == "negative_volume":
            event["volume"] = float(props["volume"]["minimum"]) - 100.0 * rng.randint(1, 10)
            reason = "volume:minimum"
        elif variant == "lowercase_symbol":
            event["symbol"] = symbol.lower()
            reason = "symbol:pattern"
        elif variant == "missing_field":
            field = rng.choice(self._schema["required"])
            del event[field]
            if field == "trade_ts":
                trade_ts = None
            reason = f"{field}:required"
        elif variant == "price_as_string":
            event["price"] = f"{event['price']:.2f}"
            reason = "price:type"
        else:  # extra_field
            extra = next(name for name in ("exchange", "venue", "x_extra") if name not in props)
            event[extra] = "XNAS"
            reason = ADDITIONAL_PROPERTIES
        return SimRecord("malformed", symbol.encode("utf-8"), encode(event), None, reason, trade_ts, clock_ms)


def kind_counts(records: Iterable[SimRecord]) -> dict[str, int]:
    """{kind: count} over records, every kind present (0 if absent)."""
    counts = {kind: 0 for kind in KINDS}
    for record in records:
        counts[record.kind] += 1
    return counts


__all__ = ["SimRecord", "MarketSimulator", "validate_symbols", "KINDS", "VALID_KINDS", "MALFORMED_VARIANTS",
           "DEFAULT_SYMBOL_SPEC", "kind_counts"]
