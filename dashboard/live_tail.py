"""The open minutes: Silver's trades from Gold's newest minute on, read live, so a trade shows within seconds.

Gold is rebuilt on a schedule (the Gold DAG, `make gold`), so on its own the dashboard would show a market up to
one schedule old. The live tail reads Silver itself (deltalake, no Spark): every trade from the start of Gold's
newest 1-minute candle on (the cutoff), aggregated per (symbol, UTC minute), and kept current from Silver's change
data feed (the versions since the last read: a few files per refresh). The dashboard then shows Gold's candles before
the cutoff and the tail's from it on, and the KPI day bar as Gold's minutes before the cutoff plus the tail's: every
trade counted once, whatever Silver version Gold was built from. A trade that reaches Silver for a minute before the
cutoff (a late one) shows with Gold's next build.

The tail's minutes get their trading date and session as Gold's do (dbt_project/macros/sessions.sql): the symbol's
calendar (fct_symbol_kpi.market_calendar; else 24/7 for an EXCHANGE:PAIR symbol, the exchange calendar for a
ticker), the exchange's sessions from dim_date, and the exchange calendar and time zone Gold's dbt vars
exchange_calendar / exchange_timezone are made from (conf.calendars, of the setting market_hours.calendar).
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any

import pandas as pd

TRADE_COLUMNS = ["symbol", "price", "volume", "trade_ts", "event_id"]
BUCKET_KEYS = ["symbol", "minute_start"]
# What a bucket (a minute, a day bar) holds besides its keys; first/last: the trade that opens/closes it.
MEASURES = ["open", "high", "low", "close", "volume", "notional", "trade_count", "first_ts", "first_id", "last_ts",
            "last_id"]
# Sessions whose trades make the daily bar (fct_candles_1d: the regular session; a 24/7 symbol's whole UTC day).
BAR_SESSIONS = ("regular", "continuous")
TWENTY_FOUR_SEVEN = "24/7"
EMPTY_BUCKETS = pd.DataFrame({
    "symbol": pd.Series(dtype="object"), "minute_start": pd.Series(dtype="datetime64[ms]"),
    **{name: pd.Series(dtype="float64") for name in ("open", "high", "low", "close", "volume", "notional")},
    "trade_count": pd.Series(dtype="int64"), "first_ts": pd.Series(dtype="int64"),
    "first_id": pd.Series(dtype="object"), "last_ts": pd.Series(dtype="int64"), "last_id": pd.Series(dtype="object")})


@dataclass(frozen=True)
class Calendar:
    """What dbt's session macros need: the exchange calendar and time zone (dbt vars), each symbol's calendar, and
    the exchange's trading days (dim_date: date_day, session_open_utc, session_close_utc, previous_trading_date)."""
    exchange: str
    timezone: str
    symbol_calendars: dict[str, str]
    days: pd.DataFrame

    def of(self, symbol: str) -> str:
        return self.symbol_calendars.get(symbol) or (TWENTY_FOUR_SEVEN if ":" in symbol else self.exchange)


# ------------------------------------------------------------------------------------------- buckets (pure pandas)

def as_days(values: Any) -> Any:
    """Trading dates as midnight timestamps (naive), the one form compared here: DuckDB hands DATE columns to
    pandas as timestamps, Snowflake and Python as datetime.date."""
    return pd.to_datetime(values)


def trade_buckets(trades: pd.DataFrame) -> pd.DataFrame:
    """Each trade (symbol, price, volume, trade_ts epoch ms, event_id) as a one-trade bucket of its UTC minute."""
    if trades.empty:
        return EMPTY_BUCKETS.copy()
    price = trades["price"].astype("float64")
    volume = trades["volume"].astype("float64")
    return pd.DataFrame({
        "symbol": trades["symbol"].to_numpy(),
        "minute_start": pd.to_datetime(trades["trade_ts"] // 60_000 * 60_000, unit="ms"),
        "open": price.to_numpy(), "high": price.to_numpy(), "low": price.to_numpy(), "close": price.to_numpy(),
        "volume": volume.to_numpy(), "notional": (price * volume).to_numpy(),
        "trade_count": 1, "first_ts": trades["trade_ts"].to_numpy(), "first_id": trades["event_id"].to_numpy(),
        "last_ts": trades["trade_ts"].to_numpy(), "last_id": trades["event_id"].to_numpy()})


def merge_buckets(buckets: pd.DataFrame, keys: list[str] | None = None) -> pd.DataFrame:
    """Buckets with the same keys made one: open/close from the first/last trade by (exchange time, event id), as
    Gold's candles order them (macros/candles.sql); high, low, sums."""
    keys = keys or BUCKET_KEYS
    if buckets.empty:
        return buckets.reset_index(drop=True)
    by_first = buckets.sort_values([*keys, "first_ts", "first_id"]).groupby(keys, sort=True)
    by_last = buckets.sort_values([*keys, "last_ts", "last_id"]).groupby(keys, sort=True)
    merged = by_first.agg(open=("open", "first"), first_ts=("first_ts", "first"), first_id=("first_id", "first"),
                          high=("high", "max"), low=("low", "min"), volume=("volume", "sum"),
                          notional=("notional", "sum"), trade_count=("trade_count", "sum"))
    last = by_last.agg(close=("close", "last"), last_ts=("last_ts", "last"), last_id=("last_id", "last"))
    return merged.join(last).reset_index()[[*keys, *MEASURES]]


def with_sessions(buckets: pd.DataFrame, calendar: Calendar) -> pd.DataFrame:
    """Minute buckets plus market_calendar, trading_date and session, as int_trades__bucketed assigns them."""
    out = buckets.copy()
    out["market_calendar"] = [calendar.of(symbol) for symbol in out["symbol"]]
    around_the_clock = out["market_calendar"] == TWENTY_FOUR_SEVEN
    local = out["minute_start"].dt.tz_localize("UTC").dt.tz_convert(calendar.timezone).dt.tz_localize(None)
    out["trading_date"] = local.dt.normalize().where(~around_the_clock, out["minute_start"].dt.normalize())
    days = calendar.days.assign(date_day=as_days(calendar.days["date_day"])).set_index("date_day")
    opens = out["trading_date"].map(days["session_open_utc"]) if not days.empty else pd.Series(pd.NaT, out.index)
    closes = out["trading_date"].map(days["session_close_utc"]) if not days.empty else pd.Series(pd.NaT, out.index)
    on_exchange = out["market_calendar"] == calendar.exchange
    session = pd.Series("closed", index=out.index, dtype="object")
    has_session = on_exchange & opens.notna()
    session[has_session & (out["minute_start"] < opens)] = "pre"
    session[has_session & (out["minute_start"] >= opens) & (out["minute_start"] < closes)] = "regular"
    session[has_session & (out["minute_start"] >= closes)] = "post"
    session[around_the_clock] = "continuous"
    out["session"] = session
    return out


# ----------------------------------------------------------------------------------------------- Gold + the tail

def live_candles(gold: pd.DataFrame, tail: pd.DataFrame, symbol: str, cutoff: pd.Timestamp,
                 limit: int) -> pd.DataFrame:
    """One symbol's 1-minute candles: Gold's (queries.candles rows) before the cutoff, the tail's (with_sessions
    rows) from it on; session VWAP continued from Gold's running sums of the same trading date; the latest `limit`."""
    mine = tail[tail["symbol"] == symbol]
    if mine.empty:
        return gold
    before = gold[gold["period_start"] < cutoff]
    live = pd.DataFrame({
        "period_start": mine["minute_start"].to_numpy(), "trading_date": mine["trading_date"].to_numpy(),
        "session": mine["session"].to_numpy(), "open": mine["open"].to_numpy(), "high": mine["high"].to_numpy(),
        "low": mine["low"].to_numpy(), "close": mine["close"].to_numpy(), "volume": mine["volume"].to_numpy(),
        "vwap": (mine["notional"] / mine["volume"].where(mine["volume"] != 0)).to_numpy(),
        "trade_count": mine["trade_count"].to_numpy(), "notional": mine["notional"].to_numpy()})
    base = before.groupby(as_days(before["trading_date"]))[["session_notional", "session_volume"]].last()
    running = live.groupby("trading_date")[["notional", "volume"]].cumsum()
    live["session_notional"] = running["notional"] + live["trading_date"].map(base["session_notional"]).fillna(0)
    live["session_volume"] = running["volume"] + live["trading_date"].map(base["session_volume"]).fillna(0)
    live["session_vwap"] = live["session_notional"] / live["session_volume"].where(live["session_volume"] != 0)
    frames = [frame for frame in (before, live[[c for c in gold.columns if c in live.columns]]) if not frame.empty]
    merged = pd.concat(frames, ignore_index=True).sort_values("period_start")
    return merged.tail(limit).reset_index(drop=True)


def day_bars(tail: pd.DataFrame, gold_parts: pd.DataFrame) -> pd.DataFrame:
    """Per symbol and trading date with tail trades in a daily-bar session: the bar from Gold's minutes before the
    cutoff (queries.day_parts rows, if any) and the tail's minutes."""
    bars = tail[tail["session"].isin(BAR_SESSIONS)]
    if bars.empty:
        return bars.assign(last_trade_time_utc=pd.Series(dtype="datetime64[ms]"))
    keys = ["symbol", "trading_date"]
    tail_days = merge_buckets(bars[[*keys, *MEASURES]], keys)
    # Gold's part is older than every tail minute: it supplies the open, the tail the close.
    gold = gold_parts.assign(trading_date=as_days(gold_parts["trading_date"]), first_ts=-1, first_id="",
                             last_ts=-1, last_id="")[[*keys, *MEASURES]]
    both = merge_buckets(pd.concat([frame for frame in (gold, tail_days) if not frame.empty], ignore_index=True),
                         keys)
    both = both.merge(tail_days[keys], on=keys)  # only the days the tail touches
    both["last_trade_time_utc"] = pd.to_datetime(both["last_ts"], unit="ms")
    return both


def live_kpis(kpis: pd.DataFrame, bars: pd.DataFrame, calendar: Calendar) -> pd.DataFrame:
    """fct_symbol_kpi rows with each symbol's newest tail day bar in place of Gold's (a symbol without tail trades
    in a bar session keeps Gold's row). A new trading date's previous close is Gold's last price when Gold's date
    is the previous trading date (the day before for a 24/7 symbol), else unknown, as fct_symbol_kpi decides."""
    if bars.empty:
        return kpis
    newest = bars.sort_values("trading_date").groupby("symbol").tail(1).set_index("symbol")
    days = calendar.days
    previous = dict(zip(as_days(days["date_day"]), as_days(days["previous_trading_date"])))
    rows = []
    for row in kpis.to_dict("records"):
        bar = newest.loc[row["symbol"]] if row["symbol"] in newest.index else None
        if bar is not None and bar["trading_date"] >= as_days(row["trading_date"]):
            row = _with_bar(row, bar, calendar, previous)
        rows.append(row)
    return pd.DataFrame(rows, columns=kpis.columns)


def _with_bar(row: dict[str, Any], bar: pd.Series, calendar: Calendar,
              previous: dict[pd.Timestamp, pd.Timestamp]) -> dict[str, Any]:
    gold_day = as_days(row["trading_date"])
    if bar["trading_date"] != gold_day:
        if calendar.of(row["symbol"]) == TWENTY_FOUR_SEVEN:
            prior = bar["trading_date"] - timedelta(days=1)
        else:
            prior = previous.get(bar["trading_date"])
        row["previous_close"] = row["last_price"] if prior is not None and prior == gold_day else None
    close, day_open, previous_close = bar["close"], bar["open"], row["previous_close"]
    known = previous_close is not None and not pd.isna(previous_close)
    row.update(trading_date=bar["trading_date"], last_price=close, day_open=day_open, day_high=bar["high"],
               day_low=bar["low"], day_volume=bar["volume"], day_notional=bar["notional"],
               day_trade_count=bar["trade_count"], last_trade_time_utc=bar["last_trade_time_utc"],
               day_vwap=bar["notional"] / bar["volume"] if bar["volume"] else None,
               price_change=close - previous_close if known else None,
               pct_change=100 * (close - previous_close) / previous_close if known and previous_close else None,
               pct_change_from_open=100 * (close - day_open) / day_open if day_open else None)
    return row


@dataclass(frozen=True)
class LiveMinutes:
    """One refresh's open minutes (with_sessions rows) and what Gold said about them (queries.TailBasis)."""
    basis: Any
    calendar: Calendar
    minutes: pd.DataFrame

    def market(self, market: Any) -> Any:
        """queries.Market with the live KPI day bars and freshness (top movers and the treemap stay Gold's)."""
        if self.minutes.empty:
            return market
        kpis = live_kpis(market.kpis, day_bars(self.minutes, self.basis.day_parts), self.calendar)
        # Freshness as Gold measures it (queries.freshness: the KPIs' last trade, a daily-bar session's).
        bar_minutes = self.minutes[self.minutes["session"].isin(BAR_SESSIONS)]
        if bar_minutes.empty:
            return replace(market, kpis=kpis)
        newest = pd.Timestamp(int(bar_minutes["last_ts"].max()), unit="ms")
        latest = newest if market.latest_row_time is None else max(market.latest_row_time, newest)
        return replace(market, kpis=kpis, latest_row_time=latest)

    def detail(self, detail: Any, limit: int) -> Any:
        """queries.SymbolDetail with the live 1-minute candles (1h/1d candles and the indicators stay Gold's)."""
        if detail.interval != "1m":
            return detail
        return replace(detail, candles=live_candles(detail.candles, self.minutes, detail.symbol, self.basis.cutoff,
                                                    limit))


# ------------------------------------------------------------------------------------------ reading Silver (I/O)

class LiveTail:
    """Silver trades from a cutoff minute on, as minute buckets, kept current from the change data feed.

    One per Silver table and dashboard server (every session shares it). A new cutoff (Gold was rebuilt), a feed
    that cannot be read (its files vacuumed), or rows the feed says were deleted (reprocess) make it read the
    minutes from the cutoff on afresh from the current snapshot."""

    def __init__(self, uri: str, storage_options: dict[str, str]):
        self.uri = uri
        self._options = storage_options
        self._cutoff: pd.Timestamp | None = None
        self._version: int | None = None
        self._buckets = EMPTY_BUCKETS.copy()
        self.version: int | None = None  # the Silver version the buckets are current with
        self._lock = threading.Lock()  # the dashboard's sessions refresh on threads of their own

    def minutes(self, cutoff: pd.Timestamp) -> pd.DataFrame:
        """Minute buckets of every Silver trade at or after `cutoff` (naive UTC), as of Silver's current version."""
        with self._lock:
            return self._minutes(cutoff)

    def _minutes(self, cutoff: pd.Timestamp) -> pd.DataFrame:
        from deltalake import DeltaTable

        table = DeltaTable(self.uri, storage_options=self._options)
        current = table.version()
        cutoff_ms = int(cutoff.value // 1_000_000)
        if cutoff != self._cutoff or self._version is None:
            self._buckets = merge_buckets(trade_buckets(self._snapshot_from(table, cutoff, cutoff_ms)))
        elif current > self._version:
            added = self._added_since(table, self._version + 1, current, cutoff_ms)
            if added is None:
                self._buckets = merge_buckets(trade_buckets(self._snapshot_from(table, cutoff, cutoff_ms)))
            elif not added.empty:
                self._buckets = merge_buckets(pd.concat([self._buckets, trade_buckets(added)], ignore_index=True))
        self._cutoff, self._version, self.version = cutoff, current, current
        return self._buckets

    @staticmethod
    def _snapshot_from(table: Any, cutoff: pd.Timestamp, cutoff_ms: int) -> pd.DataFrame:
        import pyarrow.dataset as ds

        # Silver is partitioned by event date and hour (UTC): no partition before the cutoff's hour is read.
        day, hour = f"{cutoff:%Y-%m-%d}", f"{cutoff:%H}"
        partitions = (ds.field("date") > day) | ((ds.field("date") == day) & (ds.field("hour") >= hour))
        wanted = partitions & (ds.field("trade_ts") >= cutoff_ms)
        return table.to_pyarrow_table(columns=TRADE_COLUMNS, filters=wanted).to_pandas()

    @staticmethod
    def _added_since(table: Any, first: int, last: int, cutoff_ms: int) -> pd.DataFrame | None:
        """Rows versions first..last inserted at or after the cutoff; None when only a fresh read is exact."""
        try:
            feed = table.load_cdf(starting_version=first, ending_version=last,
                                  columns=[*TRADE_COLUMNS, "_change_type"]).read_all().to_pandas()
        except Exception:  # noqa: BLE001 - a feed delta-rs cannot read (vacuumed, expired): read the snapshot
            return None
        if feed["_change_type"].isin(["delete", "update_preimage"]).any():
            return None
        inserted = feed[feed["_change_type"].isin(["insert", "update_postimage"])]
        return inserted[inserted["trade_ts"] >= cutoff_ms][TRADE_COLUMNS]
