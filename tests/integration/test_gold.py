"""Gold end to end: simulator -> Kafka -> the stream -> Silver -> `dbt build` (local target, DuckDB reading the
Silver Delta tables on MinIO) -> every Gold candle checked against an independent pandas computation from the same
Silver rows: exact OHLC, volume and trade count, VWAP to 1e-9."""
from __future__ import annotations

import json

import duckdb
import pandas as pd
import pytest

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
    settings, dbt_env, warehouse = gold_warehouse.settings, gold_warehouse.env, gold_warehouse.path
    build = gold_warehouse.build_stdout
    assert "ERROR=0" in build and "WARN=0" in build, build[-3000:]
    # Silver was just written: fresh. And the docs site builds, with the Gold models in its catalog.
    freshness = dbt(dbt_env, "source", "freshness", "--target", "local")
    assert "PASS freshness of lake.trades" in freshness.stdout, freshness.stdout[-3000:]
    dbt(dbt_env, "docs", "generate", "--target", "local")
    catalog = json.loads((gold_warehouse.workdir / "dbt-target" / "catalog.json").read_text())
    assert {"model.stocklake.fct_candles_1m", "model.stocklake.fct_symbol_kpi"} <= set(catalog["nodes"])

    silver = (spark.read.format("delta").load(settings.lake_uri("silver/trades"))
              .select("event_id", "symbol", "price", "volume", "trade_ts").toPandas())
    assert len(silver) == silver["event_id"].nunique() > 5000

    with duckdb.connect(str(warehouse), read_only=True) as con:
        for grain in ("1m", "1h", "1d"):
            gold = con.sql(f"select * from fct_candles_{grain}").df()
            expected = expected_candles(silver, grain)
            key = "trading_date" if grain == "1d" else "candle_start"
            gold = gold.rename(columns={key: "bucket"})
            if grain == "1d":
                gold["bucket"] = pd.to_datetime(gold["bucket"]).dt.date
            else:
                gold["bucket"] = pd.to_datetime(gold["bucket"], utc=True)
            merged = expected.merge(gold, on=["symbol", "bucket"], how="outer", suffixes=("", "_gold"),
                                    indicator=True)
            assert (merged["_merge"] == "both").all(), merged[merged["_merge"] != "both"].head()
            assert len(merged) == len(expected) == len(gold)
            for column in ("open", "high", "low", "close", "volume", "trade_count"):
                assert (merged[column] == merged[f"{column}_gold"]).all(), (grain, column)
            assert ((merged["vwap"] - merged["vwap_gold"]).abs() <= 1e-9 * merged["vwap"].abs()).all(), grain
