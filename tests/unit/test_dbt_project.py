"""The Gold dbt project (dbt_project/): parses for both targets, and builds end to end on a tiny local Silver.

No services needed: the fixture Silver tables are Delta tables in a temporary folder (written with deltalake, the
same library the dbt-duckdb delta plugin reads with), pointed at through the dbt var `silver_root`. Each dbt call
gets its own DuckDB file, target/ and logs/ folders, so the tests never touch the developer's warehouse or
dbt_project/target.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest
from deltalake import write_deltalake

ROOT = Path(__file__).resolve().parents[2]
PROJECT = ROOT / "dbt_project"
DBT = str(Path(sys.executable).with_name("dbt"))

SILVER_TRADES_SCHEMA = pa.schema([
    ("event_id", pa.string()), ("schema_version", pa.int64()), ("source", pa.string()),
    ("symbol", pa.string()), ("price", pa.float64()), ("volume", pa.float64()), ("trade_ts", pa.int64()),
    ("conditions", pa.list_(pa.string())), ("sequence", pa.int64()),
    ("trade_time", pa.timestamp("us", tz="UTC")), ("kafka_topic", pa.string()),
    ("kafka_partition", pa.int32()), ("kafka_offset", pa.int64()),
    ("kafka_timestamp", pa.timestamp("us", tz="UTC")), ("ingest_time", pa.timestamp("us", tz="UTC")),
    ("date", pa.string()), ("hour", pa.string()),
])

# Friday 2026-11-20 and Monday 2026-11-23, 40 minutes from 15:00 UTC (10:00 New York).
SESSIONS = [datetime(2026, 11, 20, 15, 0, tzinfo=timezone.utc), datetime(2026, 11, 23, 15, 0, tzinfo=timezone.utc)]
MINUTES = 40


def _trade(event_id: str, symbol: str, price: float, volume: float, at: datetime, offset: int) -> dict:
    return {
        "event_id": event_id, "schema_version": 1, "source": "simulator", "symbol": symbol, "price": price,
        "volume": volume, "trade_ts": int(at.timestamp() * 1000), "conditions": [], "sequence": None,
        "trade_time": at, "kafka_topic": "market.trades.v1", "kafka_partition": 0, "kafka_offset": offset,
        "kafka_timestamp": at, "ingest_time": datetime.now(timezone.utc),
        "date": at.strftime("%Y-%m-%d"), "hour": at.strftime("%H"),
    }


def _fixture_trades() -> list[dict]:
    """Two symbols, two sessions, two trades a minute; the second trade of a minute is written first (arrival
    order differs from event order), and one minute has two trades with the same timestamp."""
    rows, offset = [], 0
    for day, start in enumerate(SESSIONS):
        for symbol, base in (("AAPL", 100.0), ("MSFT", 400.0)):
            for minute in range(MINUTES):
                at = start + timedelta(minutes=minute, seconds=1)
                early_price = base + day * 10 + minute * 0.5 + (minute % 3)
                late_price = early_price + 0.25
                late_at = at + timedelta(seconds=30)
                if minute == 7:  # a timestamp tie: event_id decides (x7a opens, x7b closes)
                    late_at = at
                rows.append(_trade(f"{symbol}-{day}-{minute}-b", symbol, late_price, 10.0, late_at, offset))
                rows.append(_trade(f"{symbol}-{day}-{minute}-a", symbol, early_price, 30.0, at, offset + 1))
                offset += 2
    return rows


def _write_silver(silver: Path, rows: list[dict], mode: str) -> None:
    table = pa.Table.from_pylist(rows, schema=SILVER_TRADES_SCHEMA)
    write_deltalake(str(silver / "trades"), table, mode=mode, partition_by=["date", "hour"])


def _dbt(*args: str, tmp: Path, target: str = "local", extra_env: dict | None = None,
         check: bool = True) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "DBT_PROFILES_DIR": str(PROJECT),
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
        "DBT_DUCKDB_PATH": str(tmp / "gold.duckdb"),
        **(extra_env or {}),
    }
    cmd = [DBT, *args, "--project-dir", str(PROJECT), "--target", target,
           "--target-path", str(tmp / "target"), "--log-path", str(tmp / "logs")]
    result = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    if check and result.returncode != 0:
        pytest.fail(f"{' '.join(args)} failed ({result.returncode}):\n{result.stdout[-6000:]}\n{result.stderr[-2000:]}")
    return result


def test_parse_local_target(tmp_path):
    # The bucket comes from configuration (STOCKLAKE_LAKE_BUCKET, as conf/pipeline.yaml's lake.bucket).
    _dbt("parse", tmp=tmp_path, extra_env={"STOCKLAKE_LAKE_BUCKET": "other-bucket"})
    manifest = json.loads((tmp_path / "target" / "manifest.json").read_text())
    assert manifest["metadata"]["adapter_type"] == "duckdb"
    gold = {n["name"] for n in manifest["nodes"].values()
            if n["resource_type"] == "model" and n["path"].startswith("marts/")}
    assert gold == {"fct_candles_1m", "fct_candles_1h", "fct_candles_1d", "fct_symbol_kpi", "fct_volatility",
                    "fct_moving_averages", "fct_top_movers", "fct_treemap", "dim_symbol", "dim_date"}
    for node in manifest["nodes"].values():
        if node["resource_type"] == "model" and node["path"].startswith("marts/"):
            assert node["config"]["contract"]["enforced"], node["name"]
            assert node["description"] and all(c["description"] and c["data_type"] for c in node["columns"].values())
    source = manifest["sources"]["source.stocklake.lake.trades"]
    assert source["config"]["meta"]["delta_table_path"] == "s3://other-bucket/silver/trades"


def test_parse_snowflake_target_needs_no_connection(tmp_path):
    env = {"SNOWFLAKE_ACCOUNT": "example-account", "SNOWFLAKE_USER": "nobody", "SNOWFLAKE_PASSWORD": "not-used",
           "SNOWFLAKE_DATABASE": "LAKE_DB", "SNOWFLAKE_SILVER_SCHEMA": "SILVER_EXT"}
    _dbt("parse", tmp=tmp_path, target="snowflake", extra_env=env)
    manifest = json.loads((tmp_path / "target" / "manifest.json").read_text())
    assert manifest["metadata"]["adapter_type"] == "snowflake"
    source = manifest["sources"]["source.stocklake.lake.trades"]
    assert (source["database"], source["schema"]) == ("LAKE_DB", "SILVER_EXT")
    assert "not-used" not in (tmp_path / "target" / "manifest.json").read_text()


def test_build_on_a_local_silver_then_merge_a_late_trade(tmp_path):
    silver = tmp_path / "silver"
    _write_silver(silver, _fixture_trades(), mode="overwrite")
    vars_arg = json.dumps({"silver_root": str(silver)})

    # Seeds, models, contracts, data tests and unit tests, on the fixture.
    build = _dbt("build", "--vars", vars_arg, tmp=tmp_path)
    assert "ERROR=0" in build.stdout and "SKIP=0" in build.stdout
    # The unit tests on their own, in a new process, as `dbt test --select test_type:unit` runs them.
    unit = _dbt("test", "--select", "test_type:unit", "--vars", vars_arg, tmp=tmp_path)
    assert "6 unit tests" in unit.stdout and "ERROR=0" in unit.stdout, unit.stdout[-3000:]

    con = duckdb.connect(str(tmp_path / "gold.duckdb"), read_only=True)
    try:
        assert con.sql("select count(*) from fct_candles_1m").fetchall() == [(2 * 2 * MINUTES,)]
        # Minute 7 of Monday: two trades at the same ms; event_id orders them (-a opens, -b closes).
        open_, close, count = con.sql(
            "select open, close, trade_count from fct_candles_1m "
            "where symbol = 'AAPL' and candle_start = timestamp '2026-11-23 15:07:00'").fetchall()[0]
        assert (open_, close, count) == (110 + 3.5 + 1, 110 + 3.5 + 1 + 0.25, 2)
        # Friday is Monday's previous trading date: its last close is the previous close.
        kpi = con.sql("select trading_date, previous_close, pct_change from fct_symbol_kpi "
                      "where symbol = 'AAPL'").fetchall()[0]
        friday_close = 100 + 39 * 0.5 + (39 % 3) + 0.25
        assert str(kpi[0]) == "2026-11-23" and kpi[1] == pytest.approx(friday_close)
        assert kpi[2] is not None
        assert con.sql("select count(*) from fct_volatility where annualized_volatility is not null "
                       "and window_minutes = 30").fetchall()[0][0] > 0
        assert con.sql("select count(distinct change_basis) from fct_top_movers").fetchall() == [(1,)]
    finally:
        con.close()

    # A late trade reaches Silver for Monday 15:10 (earlier in the minute than any trade there, higher than all):
    # the incremental run must merge it into the existing candles, not add a row.
    late_at = SESSIONS[1] + timedelta(minutes=10)
    _write_silver(silver, [_trade("AAPL-late", "AAPL", 999.0, 5.0, late_at, 10_000)], mode="append")
    _dbt("run", "--select", "fct_candles_1m", "fct_candles_1h", "fct_candles_1d", "--vars", vars_arg, tmp=tmp_path)
    con = duckdb.connect(str(tmp_path / "gold.duckdb"), read_only=True)
    try:
        assert con.sql("select count(*) from fct_candles_1m").fetchall() == [(2 * 2 * MINUTES,)]
        minute = con.sql("select open, high, trade_count, volume from fct_candles_1m "
                         "where symbol = 'AAPL' and candle_start = timestamp '2026-11-23 15:10:00'").fetchall()
        assert minute == [(999.0, 999.0, 3, 45.0)]
        day = con.sql("select high, trade_count from fct_candles_1d "
                      "where symbol = 'AAPL' and trading_date = date '2026-11-23'").fetchall()
        assert day == [(999.0, 2 * MINUTES + 1)]
    finally:
        con.close()
