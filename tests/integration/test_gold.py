"""Gold end to end: simulator -> Kafka -> the stream -> Silver (late events, dropped by the watermark, put there
by the reconcile job) -> `dbt build` (local target, DuckDB reading the Silver Delta tables on MinIO) -> every Gold
candle checked against independent pandas computations, from the Silver rows and from the producer's own records:
exact OHLC, volume and trade count, VWAP to 1e-9."""
from __future__ import annotations

import json

import duckdb
import pandas as pd
import pytest

from producer.simulator import VALID_KINDS
from tests.integration.conftest import dbt

pytestmark = pytest.mark.integration

EXCHANGE_TZ = "America/New_York"


def expected_candles(silver: pd.DataFrame, grain: str) -> pd.DataFrame:
    """OHLCV, VWAP and trade count per symbol and bucket, computed independently of the SQL.

    Open and close are the first and last trade by (trade_ts, event_id): event time with a deterministic
    tie-break, never arrival order. 1m and 1h buckets are UTC instants; 1d is the exchange's trading date.
    """
    trades = silver.sort_values(["symbol", "trade_ts", "event_id"]).copy()
    utc = pd.to_datetime(trades["trade_ts"], unit="ms", utc=True)
    if grain == "1d":
        trades["bucket"] = utc.dt.tz_convert(EXCHANGE_TZ).dt.date
    else:
        trades["bucket"] = utc.dt.floor("1min" if grain == "1m" else "1h")
    trades["notional"] = trades["price"] * trades["volume"]
    grouped = trades.groupby(["symbol", "bucket"], sort=True)
    candles = grouped.agg(open=("price", "first"), high=("price", "max"), low=("price", "min"),
                          close=("price", "last"), volume=("volume", "sum"), notional=("notional", "sum"),
                          trade_count=("price", "size")).reset_index()
    candles["vwap"] = candles["notional"] / candles["volume"]
    return candles.drop(columns="notional")


def test_gold_candles_equal_an_independent_pandas_computation(spark, gold_warehouse):
    dbt_env, warehouse = gold_warehouse.env, gold_warehouse.path
    build = gold_warehouse.build_stdout
    assert "ERROR=0" in build and "WARN=0" in build, build[-3000:]
    # Silver was just written: fresh. And the docs site builds, with the Gold models in its catalog.
    freshness = dbt(dbt_env, "source", "freshness", "--target", "local")
    assert "PASS freshness of lake.trades" in freshness.stdout, freshness.stdout[-3000:]
    dbt(dbt_env, "docs", "generate", "--target", "local")
    catalog = json.loads((gold_warehouse.workdir / "dbt-target" / "catalog.json").read_text())
    assert {"model.stocklake.fct_candles_1m", "model.stocklake.fct_symbol_kpi"} <= set(catalog["nodes"])

    silver = (gold_warehouse.lake.table(spark, "silver", "reconcile")
              .select("event_id", "symbol", "price", "volume", "trade_ts").toPandas())
    assert len(silver) == silver["event_id"].nunique() > 5000
    # Silver holds exactly the distinct valid events the producer sent (the late ones reconciled in).
    assert set(silver["event_id"]) == set(producer_trades(gold_warehouse.records)["event_id"])

    assert_gold_candles_equal(warehouse, silver)


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


def assert_gold_candles_equal(warehouse, trades: pd.DataFrame) -> dict[str, int]:
    """Every 1m, 1h and 1d Gold candle equals expected_candles(trades), and there is no other; {grain: candles}."""
    compared = {}
    with duckdb.connect(str(warehouse), read_only=True) as con:
        for grain in ("1m", "1h", "1d"):
            gold = con.sql(f"select * from fct_candles_{grain}").df()
            expected = expected_candles(trades, grain)
            key = "trading_date" if grain == "1d" else "candle_start"
            gold = gold.rename(columns={key: "bucket"})
            if grain == "1d":
                gold["bucket"] = pd.to_datetime(gold["bucket"]).dt.date
            else:
                gold["bucket"] = pd.to_datetime(gold["bucket"], utc=True)
            merged = expected.merge(gold, on=["symbol", "bucket"], how="outer", suffixes=("", "_gold"),
                                    indicator=True)
            assert (merged["_merge"] == "both").all(), (grain, merged[merged["_merge"] != "both"].head())
            assert len(merged) == len(expected) == len(gold)
            for column in ("open", "high", "low", "close", "volume", "trade_count"):
                assert (merged[column] == merged[f"{column}_gold"]).all(), (grain, column)
            assert ((merged["vwap"] - merged["vwap_gold"]).abs() <= 1e-9 * merged["vwap"].abs()).all(), grain
            compared[grain] = len(merged)
    return compared


def test_late_events_behind_the_watermark_are_reconciled_and_gold_equals_the_producers_records(gold_warehouse):
    """late -> counted by the stream -> reconciled into Silver -> Gold exact, checked against what the producer
    sent rather than against Silver."""
    records = gold_warehouse.records
    late = {r.event_id for r in records if r.kind == "late"}
    assert late, "the fixture sent no late event"
    assert any(r.kind == "duplicate" and r.event_id in late for r in records), "no late event re-delivered"
    assert any(r.kind == "malformed" for r in records) and any(r.kind == "out_of_order" for r in records)
    # Behind the watermark: after the stream runs exactly the late events were missing from Silver, counted late.
    accounted = gold_warehouse.lake.accounted
    assert accounted["late_rows"] == len(late) and accounted["balanced"] is True, accounted
    # The reconcile job found exactly them, none still pending in the stream, and inserted them all.
    (reconciled,) = gold_warehouse.lake.reconciled["entities"]
    assert {k: reconciled[k] for k in ("missing_rows", "pending_rows", "inserted_rows")} == {
        "missing_rows": len(late), "pending_rows": 0, "inserted_rows": len(late)}, reconciled

    trades = producer_trades(records)
    assert len(trades) > 5000 and late <= set(trades["event_id"])
    compared = assert_gold_candles_equal(gold_warehouse.path, trades)
    # The late events are in Gold: each one's 1-minute candle (Friday 14:31 UTC, before the on-time trades) exists.
    late_trades = trades[trades["event_id"].isin(late)]
    late_minutes = set(zip(late_trades["symbol"],
                           pd.to_datetime(late_trades["trade_ts"], unit="ms", utc=True).dt.floor("1min")))
    with duckdb.connect(str(gold_warehouse.path), read_only=True) as con:
        gold_minutes = con.sql("select symbol, candle_start from fct_candles_1m").df()
    gold_minutes = set(zip(gold_minutes["symbol"], pd.to_datetime(gold_minutes["candle_start"], utc=True)))
    assert late_minutes and late_minutes <= gold_minutes and len(gold_minutes) == compared["1m"]
