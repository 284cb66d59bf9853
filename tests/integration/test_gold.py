"""Gold end to end: simulator -> Kafka -> the stream -> Silver -> `dbt build` (local target, DuckDB reading the
Silver Delta tables on MinIO) -> every Gold candle checked against an independent pandas computation from the same
Silver rows: exact OHLC, volume and trade count, VWAP to 1e-9."""
from __future__ import annotations

import json
import subprocess

import duckdb
import pandas as pd
import pytest

from tests.integration.stack import REPO, producer_args, run_producer, run_stream_available_now

pytestmark = pytest.mark.integration

EXCHANGE_TZ = "America/New_York"
DBT = str(REPO / ".venv" / "bin" / "dbt")
# Two trading days (Thursday and Friday) so the daily candles, the previous close and the KPI change exist.
DAYS = ("2026-11-19T15:00:00", "2026-11-20T15:00:00")


def dbt(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    result = subprocess.run([DBT, *args, "--project-dir", str(REPO / "dbt_project"), "--profiles-dir",
                             str(REPO / "dbt_project"), "--target-path", env["DBT_TARGET_PATH"]], env=env,
                            cwd=REPO, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
    return result


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


def test_gold_candles_equal_an_independent_pandas_computation(spark, isolated, tmp_path):
    settings, env = isolated
    for seed, day in enumerate(DAYS, start=21):
        run_producer(env, producer_args(3000, seed=seed, start_time=day, out_of_order_ratio=0.05,
                                        duplicate_ratio=0.02), tmp_path)
    run_stream_available_now(env, tmp_path / "stream.log")

    warehouse = tmp_path / "gold.duckdb"
    dbt_env = {**env, "DBT_DUCKDB_PATH": str(warehouse), "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
               "DBT_TARGET_PATH": str(tmp_path / "dbt-target")}
    build = dbt(dbt_env, "build", "--target", "local")
    assert "ERROR=0" in build.stdout and "WARN=0" in build.stdout, build.stdout[-3000:]
    # Silver was just written: fresh. And the docs site builds, with the Gold models in its catalog.
    freshness = dbt(dbt_env, "source", "freshness", "--target", "local")
    assert "PASS freshness of lake.trades" in freshness.stdout, freshness.stdout[-3000:]
    dbt(dbt_env, "docs", "generate", "--target", "local")
    catalog = json.loads((tmp_path / "dbt-target" / "catalog.json").read_text())
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
