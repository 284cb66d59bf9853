"""Gold end to end, in the order the pipeline runs: simulator -> Kafka -> the stream -> Silver -> Gold, then late
trades (hours and days old, one across midnight UTC) -> the stream -> Gold -> reconcile -> Gold -> Gold again with
nothing new -> reprocess of a day -> Gold (conftest.lake; each build is spark_jobs/silver_changes.py, then `dbt`
on the local target, DuckDB reading the Silver Delta tables on MinIO). After every build, every 1m, 1h, 1d and
session candle and every KPI row equals an independent pandas computation over the distinct Silver trades of that
moment (OHLC and counts exact, sums and VWAP to 1e-9 relative; sessions from the exchange calendar: the daily bar
is the regular session, the half day closes at 13:00 New York, extended hours have their own rows), and the build
rewrote exactly the candles whose trades changed."""
from __future__ import annotations

import csv
import itertools
import json

import duckdb
import numpy as np
import pandas as pd
import pytest

from producer.simulator import VALID_KINDS
from tests.integration.conftest import REPROCESSED_DAY, dbt
from tests.integration.stack import REPO

pytestmark = pytest.mark.integration

EXCHANGE_TZ = "America/New_York"
# Gold table -> (its bucket: a column of with_buckets, the sessions it keeps (None: all), whether session is a key).
CANDLES = {"fct_candles_1m": ("1m", None, True), "fct_candles_1h": ("1h", None, True),
           "fct_candles_1d": ("1d", {"regular"}, False), "fct_session_candles_1d": ("1d", None, True)}
GOLD_TABLES_COMPARED = (*CANDLES, "fct_symbol_kpi")


def exchange_sessions() -> dict:
    """XNYS regular sessions (dbt_project/seeds/exchange_sessions.csv): trading date -> (open, close), UTC."""
    with (REPO / "dbt_project" / "seeds" / "exchange_sessions.csv").open() as seed:
        return {pd.Timestamp(row["session_date"]).date(): (pd.Timestamp(row["open_utc"], tz="UTC"),
                                                          pd.Timestamp(row["close_utc"], tz="UTC"))
                for row in csv.DictReader(seed) if row["exchange"] == "XNYS"}


SESSIONS = exchange_sessions()


def session_of(time_utc: pd.Timestamp, trading_date) -> str:
    if trading_date not in SESSIONS:
        return "closed"
    open_utc, close_utc = SESSIONS[trading_date]
    return "pre" if time_utc < open_utc else "regular" if time_utc < close_utc else "post"


def with_buckets(trades: pd.DataFrame) -> pd.DataFrame:
    """Each trade's bucket at every grain (the UTC minute and hour; the trading date in New York: every symbol here
    is exchange-listed) and its session on that date."""
    utc = pd.to_datetime(trades["trade_ts"], unit="ms", utc=True)
    day = utc.dt.tz_convert(EXCHANGE_TZ).dt.date
    return trades.assign(**{"1m": utc.dt.floor("1min"), "1h": utc.dt.floor("1h"), "1d": day},
                         session=[session_of(t, d) for t, d in zip(utc, day)])


def expected_candles(silver: pd.DataFrame, table: str) -> pd.DataFrame:
    """OHLCV, VWAP and trade count of a Gold candle table, computed independently of the SQL.

    Open and close are the first and last trade by (trade_ts, event_id): event time with a deterministic
    tie-break, never arrival order. 1m and 1h buckets are UTC instants, split by session; the daily bar is the
    regular session of the trading date; the session table has a row per session.
    """
    grain, sessions, _ = CANDLES[table]
    trades = with_buckets(silver.sort_values(["symbol", "trade_ts", "event_id"]))
    if sessions is not None:
        trades = trades[trades["session"].isin(sessions)]
    trades = trades.assign(bucket=trades[grain], notional=trades["price"] * trades["volume"])
    grouped = trades.groupby(["symbol", "bucket", "session"], sort=True)
    candles = grouped.agg(open=("price", "first"), high=("price", "max"), low=("price", "min"),
                          close=("price", "last"), volume=("volume", "sum"), notional=("notional", "sum"),
                          trade_count=("price", "size")).reset_index()
    candles["vwap"] = candles["notional"] / candles["volume"]
    return candles


def expected_kpis(silver: pd.DataFrame) -> pd.DataFrame:
    """Per symbol, its latest daily (regular-session) bar and the previous trading day's regular close (null when
    that day has no bar: a gap is not a previous close)."""
    daily = expected_candles(silver, "fct_candles_1d")
    days = sorted(SESSIONS)
    latest = daily.sort_values("bucket").groupby("symbol").tail(1).set_index("symbol")
    closes = daily.set_index(["symbol", "bucket"])["close"]
    previous = {symbol: days[days.index(day) - 1] for symbol, day in latest["bucket"].items()}
    latest["previous_close"] = [closes.get((symbol, day)) for symbol, day in previous.items()]
    return latest.reset_index()


def assert_same(expected: pd.DataFrame, gold: pd.DataFrame, keys: list[str], exact: list[str],
                close: list[str], what: str) -> int:
    """Every expected row is in Gold and no other; `exact` columns equal, `close` ones to 1e-9 relative."""
    merged = expected.merge(gold, on=keys, how="outer", suffixes=("", "_gold"), indicator=True)
    assert (merged["_merge"] == "both").all(), (what, merged[merged["_merge"] != "both"][keys].head(10))
    assert len(merged) == len(expected) == len(gold), what
    for column in exact:
        wrong = merged[~((merged[column] == merged[f"{column}_gold"])
                         | (merged[column].isna() & merged[f"{column}_gold"].isna()))]
        assert wrong.empty, (what, column, wrong[[*keys, column, f"{column}_gold"]].head(10))
    for column in close:
        wrong = merged[(merged[column] - merged[f"{column}_gold"]).abs() > 1e-9 * merged[column].abs()]
        assert wrong.empty, (what, column, wrong[[*keys, column, f"{column}_gold"]].head(10))
    return len(merged)


def gold_candles(table: pd.DataFrame, name: str) -> pd.DataFrame:
    if CANDLES[name][0] == "1d":
        return table.assign(bucket=pd.to_datetime(table["trading_date"]).dt.date)
    return table.assign(bucket=pd.to_datetime(table["candle_start"]).dt.tz_localize("UTC"))


def assert_gold_equals(tables: dict[str, pd.DataFrame], trades: pd.DataFrame, what: str) -> dict[str, int]:
    """Every candle of every table and every KPI row equals the pandas computation over `trades`; {table: rows}.
    The intraday candles' session is checked too (a key of 1h; a function of the minute for 1m)."""
    compared = {}
    for name, (_, _, session_key) in CANDLES.items():
        expected = expected_candles(trades, name)
        gold = gold_candles(tables[name], name)
        if not session_key:
            expected, gold = expected.drop(columns="session"), gold.drop(columns="market_calendar")
        compared[name] = assert_same(
            expected, gold, ["symbol", "bucket", *(["session"] if session_key else [])],
            ["open", "high", "low", "close", "volume", "trade_count"], ["vwap", "notional"], f"{what} {name}")
    kpis = tables["fct_symbol_kpi"].assign(bucket=lambda k: pd.to_datetime(k["trading_date"]).dt.date)
    expected = expected_kpis(trades).rename(columns={
        "close": "last_price", "open": "day_open", "high": "day_high", "low": "day_low", "volume": "day_volume",
        "trade_count": "day_trade_count", "vwap": "day_vwap", "notional": "day_notional"})
    assert_same(expected, kpis, ["symbol", "bucket"], ["last_price", "previous_close", "day_open", "day_high",
                                                       "day_low", "day_volume", "day_trade_count"],
                ["day_vwap", "day_notional"], f"{what} kpi")
    return compared


def silver_trades(lake, spark, step: str) -> pd.DataFrame:
    table = lake.table(spark, "silver", step).select("event_id", "symbol", "price", "volume", "trade_ts", "date")
    trades = table.toPandas()
    assert len(trades) == trades["event_id"].nunique() > 5000
    return trades


def rewritten_rows(trades: pd.DataFrame, changed: pd.DataFrame) -> dict[str, int]:
    """The candle rows a build must write when exactly the trades `changed` changed: every row of the tables
    computed from `trades` (Silver after the change) whose (symbol, bucket) a changed trade falls in."""
    changed = with_buckets(changed)
    rows = {}
    for name, (grain, _, _) in CANDLES.items():
        keys = set(zip(changed["symbol"], changed[grain]))
        expected = expected_candles(trades, name)
        rows[name] = sum(key in keys for key in zip(expected["symbol"], expected["bucket"]))
    return rows


def test_every_gold_build_in_operating_order_equals_pandas_and_rewrites_only_what_changed(spark, lake):
    builds = {build.after: build for build in lake.gold}
    assert [(b.after, b.indexed["status"]) for b in lake.gold] == [
        ("first_stream", "indexed"), ("second_stream", "indexed"), ("reconcile", "indexed"),
        ("reconcile", "up_to_date"), ("reprocess", "indexed")]
    silver = {step: silver_trades(lake, spark, step) for step in builds}
    for index, build in enumerate(lake.gold):
        assert "ERROR=0" in build.stdout and "WARN=0" in build.stdout, build.stdout[-3000:]
        assert_gold_equals(build.tables, silver[build.after], f"build {index} after {build.after}")

    # The first build had no index to go by (everything); each later one rewrote exactly the candles of the trades
    # that changed: the stream's new ones (late trades within the watermark included), the reconciled ones (hours
    # and days old, across midnight UTC), none when nothing changed, then the reprocessed day's.
    first, streamed, reconciled, again, reprocessed = lake.gold
    assert first.indexed["full_rebuild"] == "first run: no index yet"
    assert {name: set(first.tables[name]["silver_version"]) for name in CANDLES} == {
        name: {first.indexed["silver_version"]} for name in CANDLES}
    new = silver["second_stream"][~silver["second_stream"]["event_id"].isin(silver["first_stream"]["event_id"])]
    assert len(new) and streamed.rewritten == rewritten_rows(silver["second_stream"], new)
    late = silver["reconcile"][~silver["reconcile"]["event_id"].isin(silver["second_stream"]["event_id"])]
    assert {r.event_id for run in lake.late_runs for r in run if r.kind == "late"} == set(late["event_id"])
    assert reconciled.indexed["inserted_rows"] == len(late)
    assert reconciled.rewritten == rewritten_rows(silver["reconcile"], late)
    assert again.rewritten == {name: 0 for name in CANDLES}
    for name in GOLD_TABLES_COMPARED:
        pd.testing.assert_frame_equal(sort(again.tables[name]), sort(reconciled.tables[name]))
    day = silver["reprocess"][silver["reprocess"]["date"] == REPROCESSED_DAY]
    assert reprocessed.indexed["deleted_rows"] == reprocessed.indexed["inserted_rows"] == len(day)
    assert reprocessed.rewritten == rewritten_rows(silver["reprocess"], day)


def sort(table: pd.DataFrame) -> pd.DataFrame:
    return table.sort_values(list(table.columns[:3])).reset_index(drop=True)


def test_gold_is_fresh_documented_and_holds_what_the_producer_sent(spark, gold_warehouse):
    dbt_env, warehouse = gold_warehouse.env, gold_warehouse.path
    # Silver was just written: fresh. And the docs site builds, with the Gold models in its catalog.
    freshness = dbt(dbt_env, "source", "freshness", "--target", "local")
    assert "PASS freshness of lake.trades" in freshness.stdout, freshness.stdout[-3000:]
    dbt(dbt_env, "docs", "generate", "--target", "local")
    catalog = json.loads((gold_warehouse.workdir / "dbt-target" / "catalog.json").read_text())
    assert {"model.stocklake.fct_candles_1m", "model.stocklake.fct_symbol_kpi"} <= set(catalog["nodes"])

    # Silver holds exactly the distinct valid events the producer sent (the late ones reconciled in), and Gold
    # equals the same computation over the producer's own payloads.
    trades = producer_trades(gold_warehouse.records)
    silver = gold_warehouse.lake.table(spark, "silver").select("event_id").toPandas()
    assert set(silver["event_id"]) == set(trades["event_id"]) and len(silver) == len(trades)
    with duckdb.connect(str(warehouse), read_only=True) as con:
        tables = {name: con.sql(f"select * from {name}").df() for name in GOLD_TABLES_COMPARED}
    compared = assert_gold_equals(tables, trades, "final build vs the producer's records")
    # The days hold every session: Wednesday's close and after-hours, Friday's half-day session and its after-hours
    # from 13:00 New York; the late trades of Thursday 00:30 UTC are Wednesday's after-hours.
    sessions = tables["fct_session_candles_1d"]
    assert set(zip(sessions["trading_date"].astype(str), sessions["session"])) == {
        ("2026-11-25", "regular"), ("2026-11-25", "post"), ("2026-11-27", "regular"), ("2026-11-27", "post")}
    # The late events are in Gold: each one's 1-minute candle exists.
    late = {r.event_id for r in gold_warehouse.records if r.kind == "late"}
    late_minutes = with_buckets(trades[trades["event_id"].isin(late)])[["symbol", "1m"]].drop_duplicates()
    assert len(late_minutes) and compared["fct_candles_1m"] == len(tables["fct_candles_1m"])
    minutes = gold_candles(tables["fct_candles_1m"], "fct_candles_1m")
    assert set(zip(late_minutes["symbol"], late_minutes["1m"])) <= set(zip(minutes["symbol"], minutes["bucket"]))


def producer_trades(records) -> pd.DataFrame:
    """The distinct valid events the producer sent, from its payloads: malformed records and re-deliveries
    (exact duplicates, same event id) dropped; late and out-of-order events kept."""
    events: dict[str, dict] = {}
    for record in records:
        if record.kind in VALID_KINDS:
            event = json.loads(record.value)
            assert event["event_id"] == record.event_id and record.event_id not in events
            events[record.event_id] = event
    columns = ["event_id", "symbol", "price", "volume", "trade_ts"]
    return pd.DataFrame([[event[column] for column in columns] for event in events.values()], columns=columns)


def expected_daily_bars(trades: pd.DataFrame, backfilled: pd.DataFrame) -> pd.DataFrame:
    """The daily series: the stream's regular-session bars, and the backfilled bar of every other day."""
    streamed = expected_candles(trades, "fct_candles_1d").rename(columns={"bucket": "trading_date"})
    bars = backfilled.assign(trading_date=pd.to_datetime(backfilled["date"]).dt.date)
    known = set(zip(streamed["symbol"], streamed["trading_date"]))
    bars = bars[[key not in known for key in zip(bars["symbol"], bars["trading_date"])]]
    columns = ["symbol", "trading_date", "open", "high", "low", "close", "volume"]
    return pd.concat([streamed[columns].assign(bar_source="trades"), bars[columns].assign(bar_source="backfill")],
                     ignore_index=True).sort_values(["symbol", "trading_date"], ignore_index=True)


def expected_analytics(daily: pd.DataFrame) -> pd.DataFrame:
    """Returns, 7/30/90-bar moving averages, 30-bar momentum, YTD return and 30-return annualised volatility."""
    frames = []
    for _, bars in daily.groupby("symbol", sort=True):
        bars = bars.sort_values("trading_date").copy()
        previous = bars["close"].shift(1)
        bars["daily_return"] = bars["close"] / previous - 1
        bars["log_return"] = np.log(bars["close"] / previous)
        for window in (7, 30, 90):
            bars[f"sma_{window}"] = bars["close"].rolling(window, min_periods=window).mean()
        bars["momentum_30d"] = bars["close"] / bars["close"].shift(30) - 1
        base = previous.fillna(bars["open"])
        year = pd.to_datetime(bars["trading_date"]).dt.year
        bars["ytd_return"] = bars["close"] / base.groupby(year).transform("first") - 1
        bars["volatility_30d"] = bars["log_return"].rolling(30, min_periods=30).std(ddof=1) * np.sqrt(252)
        frames.append(bars)
    return pd.concat(frames, ignore_index=True)


def expected_correlations(analytics: pd.DataFrame, days: int = 90) -> pd.DataFrame:
    returns = analytics[analytics["log_return"].notna()]
    recent = sorted(set(returns["trading_date"]))[-days:]
    wide = returns[returns["trading_date"].isin(recent)].pivot(index="trading_date", columns="symbol",
                                                               values="log_return")
    rows = []
    for first, second in itertools.combinations(sorted(wide.columns), 2):
        both = wide[[first, second]].dropna()
        rows.append({"symbol": first, "other_symbol": second, "days": len(both),
                     "correlation": both[first].corr(both[second]) if len(both) >= 2 else None})
    return pd.DataFrame(rows)


def assert_close(expected: pd.DataFrame, gold: pd.DataFrame, keys: list[str], columns: list[str], what: str):
    merged = expected.merge(gold, on=keys, how="outer", suffixes=("", "_gold"), indicator=True)
    assert (merged["_merge"] == "both").all() and len(merged) == len(expected) == len(gold), what
    for column in columns:
        want, got = merged[column].astype(float), merged[f"{column}_gold"].astype(float)
        same = np.isclose(want, got, rtol=1e-9, atol=1e-12) | (want.isna() & got.isna())
        assert same.all(), (what, column, merged.loc[~same, [*keys, column, f"{column}_gold"]].head(10))


def test_the_daily_history_spans_the_backfill_and_its_analytics_equal_pandas(spark, lake):
    final = lake.gold[-1]
    trades = silver_trades(lake, spark, "reprocess")
    daily = expected_daily_bars(trades, lake.backfilled)
    gold_daily = final.tables["fct_daily_bars"].assign(
        trading_date=lambda bars: pd.to_datetime(bars["trading_date"]).dt.date)
    assert_same(daily, gold_daily, ["symbol", "trading_date"], ["open", "high", "low", "close", "volume",
                                                                "bar_source"], [], "fct_daily_bars")
    # Wednesday 25 November is in both: the stream's own trades won; the days before came from the backfill.
    sources = gold_daily.groupby("bar_source")["trading_date"].agg(["min", "max", "count"])
    assert str(sources.loc["backfill", "max"]) == "2026-11-24" and str(sources.loc["trades", "min"]) == "2026-11-25"
    assert sources.loc["backfill", "count"] == len(lake.backfilled) - len(lake.settings.simulator.symbols)

    analytics = expected_analytics(daily)
    gold_analytics = final.tables["fct_daily_analytics"].assign(
        trading_date=lambda rows: pd.to_datetime(rows["trading_date"]).dt.date)
    assert_close(analytics, gold_analytics, ["symbol", "trading_date"],
                 ["close", "daily_return", "log_return", "sma_7", "sma_30", "sma_90", "momentum_30d", "ytd_return",
                  "volatility_30d"], "fct_daily_analytics")
    assert gold_analytics["sma_90"].notna().sum() > 0 and gold_analytics["volatility_30d"].notna().sum() > 0

    correlations = expected_correlations(analytics)
    assert len(correlations) == 28 and (correlations["days"] == 90).all()
    assert_close(correlations, final.tables["fct_return_correlations"], ["symbol", "other_symbol"],
                 ["days", "correlation"], "fct_return_correlations")
