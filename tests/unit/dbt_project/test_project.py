"""The Gold dbt project (dbt_project/): parses for both targets, and builds end to end on a tiny local Silver.

No services needed: the fixture Silver tables are Delta tables in a temporary folder (written with deltalake, the
same library the dbt-duckdb delta plugin reads with), pointed at through the dbt var `silver_root`, merged over the
vars every dbt run is given (conf/dbt_vars.py). Each dbt call gets its own DuckDB file, target/ and logs/ folders,
so the tests never touch the developer's warehouse or dbt_project/target.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest
import yaml
from deltalake import DeltaTable, write_deltalake

from conf.dbt_vars import dbt_vars
from conf.settings import load_settings
from scripts.snowflake_setup import gold_marts
from spark_jobs.silver_changes import index_changes

ROOT = Path(__file__).resolve().parents[3]
PROJECT = ROOT / "dbt_project"
DBT = str(Path(sys.executable).with_name("dbt"))

SILVER_TRADES_SCHEMA = pa.schema([
    ("event_id", pa.string()), ("schema_version", pa.int64()), ("source", pa.string()),
    ("symbol", pa.string()), ("price", pa.float64()), ("volume", pa.float64()), ("trade_ts", pa.int64()),
    ("conditions", pa.list_(pa.string())), ("sequence", pa.int64()), ("exchange", pa.string()),
    ("trade_time", pa.timestamp("us", tz="UTC")), ("kafka_topic", pa.string()),
    ("kafka_partition", pa.int32()), ("kafka_offset", pa.int64()),
    ("kafka_timestamp", pa.timestamp("us", tz="UTC")), ("ingest_time", pa.timestamp("us", tz="UTC")),
    ("date", pa.string()), ("hour", pa.string()),
])

# Friday 2026-11-20 and Monday 2026-11-23, 40 minutes from 15:00 UTC (10:00 New York).
SESSIONS = [datetime(2026, 11, 20, 15, 0, tzinfo=timezone.utc), datetime(2026, 11, 23, 15, 0, tzinfo=timezone.utc)]
MINUTES = 40
# One after-hours AAPL trade at 22:30:05 on Thursday 19 November in New York, already Friday in UTC: its candles
# belong to trading date 2026-11-19 (date_key 20261119).
OVERNIGHT = datetime(2026, 11, 20, 3, 30, 5, tzinfo=timezone.utc)
CANDLES_1M = 2 * 2 * MINUTES + 1

GOLD_MARTS = {"fct_candles_1m", "fct_candles_1h", "fct_candles_1d", "fct_session_candles_1d", "fct_symbol_kpi",
              "fct_volatility", "fct_moving_averages", "fct_top_movers", "fct_treemap", "fct_daily_bars",
              "fct_daily_analytics", "fct_return_correlations", "dim_symbol", "dim_date"}
# Built only where Gold reads quotes (the var lake_quotes_enabled: the setting warehouse.quotes_enabled).
QUOTE_MARTS = {"fct_latest_quotes"}
# Facts with a symbol and a date_key (the correlations relate two symbols, over many dates).
FACTS = GOLD_MARTS - {"dim_symbol", "dim_date", "fct_return_correlations"}
# The build below reads quotes too.
BUILT_FACTS = FACTS | QUOTE_MARTS
CANDLE_TABLES = ("fct_candles_1m", "fct_candles_1h", "fct_candles_1d", "fct_session_candles_1d")
POWERBI_DOC = ROOT / "docs" / "powerbi.md"


def _trade(event_id: str, symbol: str, price: float, volume: float, at: datetime, offset: int) -> dict:
    return {
        "event_id": event_id, "schema_version": 1, "source": "simulator", "symbol": symbol, "price": price,
        "volume": volume, "trade_ts": int(at.timestamp() * 1000), "conditions": [], "sequence": None,
        "exchange": "XNAS" if symbol == "MSFT" else None,  # Silver of trade schema v1 and v2 events
        "trade_time": at, "kafka_topic": "market.trades.v1", "kafka_partition": 0, "kafka_offset": offset,
        "kafka_timestamp": at, "ingest_time": datetime.now(timezone.utc),
        "date": at.strftime("%Y-%m-%d"), "hour": at.strftime("%H"),
    }


def _fixture_trades() -> list[dict]:
    """Two symbols, two sessions, two trades a minute; the second trade of a minute is written first (arrival
    order differs from event order), and one minute has two trades with the same timestamp. Plus the OVERNIGHT
    trade, whose trading date is the day before its UTC date."""
    rows, offset = [_trade("AAPL-overnight", "AAPL", 95.0, 7.0, OVERNIGHT, 100_000)], 0
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


def _write_silver(silver: Path, rows: list[dict], mode: str) -> dict:
    """Write fixture Silver trades (with the change data feed on, as the stream creates Silver), then index the
    change as the Gold DAG does before dbt (spark_jobs/silver_changes.py); returns the index run's result."""
    table = pa.Table.from_pylist(rows, schema=SILVER_TRADES_SCHEMA)
    write_deltalake(str(silver / "trades"), table, mode=mode, partition_by=["date", "hour"],
                    configuration={"delta.enableChangeDataFeed": "true"})
    return index_changes(str(silver / "trades"))


BARS_SCHEMA = pa.schema([
    ("event_id", pa.string()), ("source", pa.string()), ("symbol", pa.string()), ("trading_date", pa.string()),
    ("open", pa.float64()), ("high", pa.float64()), ("low", pa.float64()), ("close", pa.float64()),
    ("volume", pa.float64()), ("ingest_time", pa.timestamp("us", tz="UTC")), ("date", pa.string()),
])


def _write_bars(silver: Path, bars: list[tuple]) -> None:
    """Backfilled daily bars (symbol, trading date, open, high, low, close, volume, source, loaded at) in
    silver/bars, with the columns Gold reads."""
    rows = [{"event_id": f"{source}-{symbol}-{day}", "source": source, "symbol": symbol, "trading_date": day,
             "open": o, "high": h, "low": low, "close": c, "volume": v, "ingest_time": loaded, "date": day}
            for symbol, day, o, h, low, c, v, source, loaded in bars]
    write_deltalake(str(silver / "bars"), pa.Table.from_pylist(rows, schema=BARS_SCHEMA), mode="overwrite",
                    partition_by=["date"])


QUOTES_SCHEMA = pa.schema([
    ("event_id", pa.string()), ("schema_version", pa.int64()), ("source", pa.string()), ("symbol", pa.string()),
    ("current", pa.float64()), ("change", pa.float64()), ("percent_change", pa.float64()), ("high", pa.float64()),
    ("low", pa.float64()), ("open", pa.float64()), ("previous_close", pa.float64()), ("quote_ts", pa.int64()),
    ("quote_time", pa.timestamp("us", tz="UTC")), ("ingest_time", pa.timestamp("us", tz="UTC")),
    ("date", pa.string()), ("hour", pa.string()),
])


def _write_quotes(silver: Path, quotes: list[tuple]) -> None:
    """Quote snapshots (event id, symbol, current, change, percent change, high, low, open, previous close, quote
    time) in silver/quotes, with the columns Gold reads, as the stream writes them."""
    rows = [{"event_id": event_id, "schema_version": 1, "source": "finnhub", "symbol": symbol, "current": current,
             "change": change, "percent_change": pct, "high": high, "low": low, "open": open_,
             "previous_close": previous, "quote_ts": int(at.timestamp() * 1000), "quote_time": at,
             "ingest_time": at + timedelta(seconds=2), "date": at.strftime("%Y-%m-%d"), "hour": at.strftime("%H")}
            for event_id, symbol, current, change, pct, high, low, open_, previous, at in quotes]
    write_deltalake(str(silver / "quotes"), pa.Table.from_pylist(rows, schema=QUOTES_SCHEMA), mode="overwrite",
                    partition_by=["date", "hour"])


def _dbt(*args: str, tmp: Path, target: str = "local", extra_env: dict | None = None, check: bool = True,
         variables: dict | None = None, given_vars: bool = True) -> subprocess.CompletedProcess:
    """dbt in folders of the test's own, given the vars the settings make in its environment (conf/dbt_vars.py) with
    `variables` merged over them, as every caller gives them; given_vars=False: no vars at all."""
    env = {
        **os.environ,
        "DBT_PROFILES_DIR": str(PROJECT),
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
        "DBT_DUCKDB_PATH": str(tmp / "gold.duckdb"),
        **(extra_env or {}),
    }
    merged = {**dbt_vars(load_settings(env)), **(variables or {})}
    given = ["--vars", json.dumps(merged)] if given_vars else []
    cmd = [DBT, *args, *given, "--project-dir", str(PROJECT), "--target", target,
           "--target-path", str(tmp / "target"), "--log-path", str(tmp / "logs")]
    result = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    if check and result.returncode != 0:
        pytest.fail(f"{' '.join(args)} failed ({result.returncode}):\n{result.stdout[-6000:]}\n{result.stderr[-2000:]}")
    return result


def _surrogate_key(label: str, *parts: str) -> str:
    """What macros/keys.sql computes: md5 of 'label|part|...', in lower-case hex."""
    return hashlib.md5("|".join([label, *parts]).encode(), usedforsecurity=False).hexdigest()


def _models(manifest: dict) -> dict[str, dict]:
    return {n["name"]: n for n in manifest["nodes"].values() if n["resource_type"] == "model"}


# The lake as the settings say (conf/pipeline.yaml's lake section, here overridden through the environment): Gold's
# sources read it through the dbt vars.
LAKE_ENV = {"STOCKLAKE_LAKE_BUCKET": "other-bucket", "STOCKLAKE_LAKE_S3_ENDPOINT": "https://s3.eu-west-1.amazonaws.com",
            "STOCKLAKE_LAKE_S3_REGION": "eu-west-1"}


@pytest.fixture(scope="module")
def local_manifest(tmp_path_factory) -> dict:
    tmp = tmp_path_factory.mktemp("parse-local")
    _dbt("parse", tmp=tmp, extra_env=LAKE_ENV)
    return json.loads((tmp / "target" / "manifest.json").read_text())


def test_parse_local_target(local_manifest):
    manifest = local_manifest
    assert manifest["metadata"]["adapter_type"] == "duckdb"
    gold = {n["name"] for n in manifest["nodes"].values()
            if n["resource_type"] == "model" and n["path"].startswith("marts/")}
    assert gold == GOLD_MARTS
    # The BI role is granted exactly what dbt builds with these vars (quotes off here: no fct_latest_quotes).
    assert {mart.lower() for mart in gold_marts(dbt_vars(load_settings(LAKE_ENV)))} == gold
    for node in manifest["nodes"].values():
        if node["resource_type"] == "model" and node["path"].startswith("marts/"):
            assert node["config"]["contract"]["enforced"], node["name"]
            assert node["config"]["materialized"] in ("table", "incremental"), node["name"]  # never a view
            assert node["description"] and all(c["description"] and c["data_type"] for c in node["columns"].values())
            # DuckDB has no grants: none are managed on the local target.
            assert node["config"]["grants"] == {}, node["name"]
    for table in ("trades", "trades_changes", "bars"):
        meta = manifest["sources"][f"source.stocklake.lake.{table}"]["config"]["meta"]
        assert meta["delta_table_path"] == f"s3://other-bucket/silver/{table}"
        assert meta["storage_options"] == {
            "AWS_ENDPOINT_URL": "https://s3.eu-west-1.amazonaws.com", "AWS_REGION": "eu-west-1",
            "AWS_ALLOW_HTTP": "false", "AWS_VIRTUAL_HOSTED_STYLE_REQUEST": "false"}


def test_a_dbt_run_without_the_settings_vars_stops_at_the_first_one_it_needs(tmp_path):
    """No second copy of a setting in the project: without the vars conf/dbt_vars.py makes, dbt says which is missing
    instead of falling back to a default."""
    bare = _dbt("parse", tmp=tmp_path, given_vars=False, check=False)
    missing = re.search(r"Required var '(\w+)' not found", bare.stdout)
    assert bare.returncode != 0 and missing and missing.group(1) in SETTING_VARS, bare.stdout[-3000:]


# The settings' defaults (conf/pipeline.yaml) and the exchange time zone they make: none may stand in dbt_project/
# outside its seeds and tests (a unit test's fixture rows may say New York).
SETTING_LITERALS = ("'lakehouse'", '"lakehouse"', "//lakehouse", "127.0.0.1:19000", "us-east-1", "America/New_York")
SETTING_VARS = ("silver_root", "lake_storage_options", "lake_quotes_enabled", "exchange_calendar", "exchange_timezone")
# A setting's var read with a default, or a setting read from the environment instead of from its var.
SETTING_DEFAULT = re.compile(rf"var\(\s*['\"](?:{'|'.join(SETTING_VARS)})['\"]\s*,|env_var\(\s*['\"]STOCKLAKE_")


def _yaml_strings(value) -> list[str]:
    if isinstance(value, dict):
        return [text for key, item in value.items() for text in (*_yaml_strings(key), *_yaml_strings(item))]
    if isinstance(value, list):
        return [text for item in value for text in _yaml_strings(item)]
    return [value] if isinstance(value, str) else []


def test_the_dbt_project_restates_no_setting():
    assert set(dbt_vars(load_settings({}))) == set(SETTING_VARS)
    restated = []
    for path in sorted(PROJECT.rglob("*")):
        parts = path.relative_to(PROJECT).parts
        if not path.is_file() or parts[0] in ("seeds", "tests", "target", "logs", "dbt_packages"):
            continue
        text = path.read_text()
        if path.suffix == ".yml":  # what the project says, without the unit tests' fixture rows
            spec = {key: value for key, value in (yaml.safe_load(text) or {}).items() if key != "unit_tests"}
            text = "\n".join(_yaml_strings(spec))
        restated += [(path.name, literal) for literal in SETTING_LITERALS if literal in text]
        restated += [(path.name, found) for found in SETTING_DEFAULT.findall(text)]
    assert restated == []
    assert not set(SETTING_VARS) & set(yaml.safe_load((PROJECT / "dbt_project.yml").read_text())["vars"])


def test_star_schema_keys_are_declared_and_tested(local_manifest):
    models = _models(local_manifest)
    surrogate = {**{candles: "candle_key" for candles in CANDLE_TABLES},
                 "fct_volatility": "volatility_key", "fct_moving_averages": "moving_average_key",
                 "fct_daily_bars": "daily_bar_key", "fct_daily_analytics": "daily_analytics_key"}
    for name, key in surrogate.items():
        assert list(models[name]["columns"])[0] == key and models[name]["columns"][key]["data_type"] == "varchar"
    for name in FACTS:
        assert models[name]["columns"]["date_key"]["data_type"] == "integer", name
    assert list(models["dim_date"]["columns"])[0] == "date_key"
    assert models["dim_date"]["columns"]["date_key"]["data_type"] == "integer"

    tests = {}
    for node in local_manifest["nodes"].values():
        # (dbt keeps a disabled model's tests among the nodes, disabled too.)
        if node["resource_type"] == "test" and node.get("test_metadata") and node["config"]["enabled"]:
            model = node["attached_node"].removeprefix("model.stocklake.")
            tests.setdefault(node["test_metadata"]["name"], set()).add(
                (model, node["column_name"], node["test_metadata"]["kwargs"].get("to")))
    # Every fact relates to both dimensions; the candles also keep their trading_date -> date_day test.
    assert tests["relationships"] == (
        {(fact, "date_key", "ref('dim_date')") for fact in FACTS}
        | {(fact, "symbol", "ref('dim_symbol')") for fact in FACTS}
        | {(candles, "trading_date", "ref('dim_date')") for candles in CANDLE_TABLES}
        | {("fct_return_correlations", column, "ref('dim_symbol')") for column in ("symbol", "other_symbol")})
    for name, key in [*surrogate.items(), ("dim_date", "date_key"), ("dim_symbol", "symbol")]:
        assert {(name, key, None)} <= tests["unique"] & tests["not_null"], name


def test_exposures_list_the_dashboard_and_the_powerbi_report(local_manifest):
    exposures = local_manifest["exposures"]
    assert set(exposures) == {"exposure.stocklake.market_dashboard", "exposure.stocklake.powerbi_market_report"}
    dashboard = exposures["exposure.stocklake.market_dashboard"]
    assert (dashboard["type"], dashboard["url"], dashboard["owner"]["name"]) == (
        "dashboard", "http://127.0.0.1:8501", "data platform")
    assert sorted(dashboard["depends_on"]["nodes"]) == sorted(f"model.stocklake.{name}" for name in (
        "fct_symbol_kpi", "fct_candles_1m", "fct_candles_1h", "fct_candles_1d", "fct_moving_averages",
        "fct_volatility", "fct_top_movers", "fct_treemap", "dim_symbol"))
    report = exposures["exposure.stocklake.powerbi_market_report"]
    assert (report["type"], report["owner"]["name"]) == ("dashboard", "data platform")
    assert sorted(report["depends_on"]["nodes"]) == sorted(f"model.stocklake.{name}" for name in (
        "fct_symbol_kpi", "fct_candles_1m", "fct_candles_1h", "fct_candles_1d", "fct_treemap", "dim_symbol",
        "dim_date"))


def test_powerbi_doc_names_only_what_the_models_have(local_manifest):
    """Every table[column] that docs/powerbi.md uses (DAX, relationships, visuals) is a column of that mart, and
    the tables it uses are exactly the Power BI exposure's depends_on."""
    models = _models(local_manifest)
    text = POWERBI_DOC.read_text()
    references = set(re.findall(r"\b((?:fct|dim)_\w+)\[(\w+)\]", text))
    assert len(references) >= 30  # the pattern does find the DAX and the relationships
    missing = sorted((table, column) for table, column in references
                     if table not in models or column not in models[table]["columns"])
    assert missing == []
    report = local_manifest["exposures"]["exposure.stocklake.powerbi_market_report"]
    assert {table for table, _ in references} == {
        node.removeprefix("model.stocklake.") for node in report["depends_on"]["nodes"]}
    # The tables to load, as the Snowflake navigator shows them, are the same set.
    loaded = re.search(r"tick these seven tables: (.*?)\. Choose", text, flags=re.S).group(1)
    assert {name.lower() for name in re.findall(r"`(\w+)`", loaded)} == {table for table, _ in references}
    # The upgrade step for incremental models (on_schema_change='fail') is spelled out.
    assert "--full-refresh" in text and "on_schema_change='fail'" in text


SNOWFLAKE_ENV = {"SNOWFLAKE_ACCOUNT": "example-account", "SNOWFLAKE_USER": "nobody",
                 "SNOWFLAKE_PASSWORD": "not-used", "SNOWFLAKE_DATABASE": "LAKE_DB",  # pragma: allowlist secret
                 "SNOWFLAKE_SILVER_SCHEMA": "SILVER_EXT"}


def test_parse_snowflake_target_needs_no_connection(tmp_path):
    # Production reads quotes: the external table QUOTES (scripts/snowflake_setup.py) and the marts over it.
    env = {**SNOWFLAKE_ENV, "SNOWFLAKE_BI_ROLE": "stocklake_bi", "STOCKLAKE_WAREHOUSE_QUOTES_ENABLED": "true"}
    _dbt("parse", tmp=tmp_path, target="snowflake", extra_env=env)
    manifest = json.loads((tmp_path / "target" / "manifest.json").read_text())
    assert manifest["metadata"]["adapter_type"] == "snowflake"
    for table in ("trades", "quotes"):
        source = manifest["sources"][f"source.stocklake.lake.{table}"]
        assert (source["database"], source["schema"], source["identifier"]) == ("LAKE_DB", "SILVER_EXT", table)
    assert "not-used" not in (tmp_path / "target" / "manifest.json").read_text()
    # dbt manages no grants (Airflow grants the BI role SELECT on the marts, through the Snowflake provider); a
    # rebuilt mart keeps the grants made on it, and nothing else is told to copy them.
    configs = {n["name"]: n["config"] for n in manifest["nodes"].values() if n["resource_type"] in ("model", "seed")}
    assert {name for name, config in configs.items() if config["grants"]} == set()
    assert {name for name, config in configs.items() if config.get("copy_grants")} == GOLD_MARTS | QUOTE_MARTS
    # ... and which Airflow grants the BI role SELECT on: every mart dbt builds with these vars, no other.
    assert {mart.lower() for mart in gold_marts(dbt_vars(load_settings(env)))} == GOLD_MARTS | QUOTE_MARTS


def test_build_on_a_local_silver_then_rebuild_exactly_what_changed_in_it(tmp_path):
    silver = tmp_path / "silver"
    _write_silver(silver, _fixture_trades(), mode="overwrite")
    loaded = datetime(2026, 11, 24, tzinfo=timezone.utc)
    _write_bars(silver, [
        ("AAPL", "2026-11-18", 90.0, 92.0, 89.0, 91.0, 1000.0, "file", loaded),
        # Two sources' bars of one day: the one loaded last wins.
        ("AAPL", "2026-11-19", 91.0, 94.0, 90.0, 93.0, 1100.0, "file", loaded),
        ("AAPL", "2026-11-19", 91.0, 95.0, 90.0, 94.0, 1200.0, "finnhub", loaded + timedelta(hours=1)),
        # A day the stream has: its own trades win.
        ("AAPL", "2026-11-20", 1.0, 1.0, 1.0, 1.0, 1.0, "file", loaded),
    ])
    _write_quotes(silver, QUOTES)
    variables = {"silver_root": str(silver), "lake_quotes_enabled": True}

    # Seeds, models, contracts, data tests and unit tests, on the fixture.
    build = _dbt("build", tmp=tmp_path, variables=variables)
    assert "ERROR=0" in build.stdout and "SKIP=0" in build.stdout
    # The relationships tests (every fact key in its dimension) were part of that build, and passed.
    results = json.loads((tmp_path / "target" / "run_results.json").read_text())["results"]
    relationships = [r for r in results if r["unique_id"].startswith("test.stocklake.relationships_")]
    assert len(relationships) == len(CANDLE_TABLES) + 2 * len(BUILT_FACTS) + 2
    assert {r["status"] for r in relationships} == {"pass"}
    # The unit tests on their own, in a new process, as `dbt test --select test_type:unit` runs them.
    unit = _dbt("test", "--select", "test_type:unit", tmp=tmp_path, variables=variables)
    assert "17 unit tests" in unit.stdout and "ERROR=0" in unit.stdout, unit.stdout[-3000:]

    con = duckdb.connect(str(tmp_path / "gold.duckdb"), read_only=True)
    try:
        _assert_star_schema_keys(con)
        _assert_latest_quotes(con)
        keys_before = _candle_keys(con)
        assert con.sql("select count(*) from fct_candles_1m").fetchall() == [(CANDLES_1M,)]
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
        # The daily series: the backfilled days before the stream's (Thursday had after-hours trades only, no
        # regular bar: its backfilled bar is the day's), then the stream's own bars.
        assert con.sql("select cast(trading_date as varchar), close, bar_source from fct_daily_bars "
                       "where symbol = 'AAPL' order by trading_date").fetchall() == [
            ("2026-11-18", 91.0, "backfill"), ("2026-11-19", 94.0, "backfill"),
            ("2026-11-20", friday_close, "trades"), ("2026-11-23", 110 + 39 * 0.5 + (39 % 3) + 0.25, "trades")]
        analytics = con.sql("select daily_return, ytd_return, sma_7 from fct_daily_analytics where symbol = 'AAPL' "
                            "and trading_date = date '2026-11-19'").fetchall()
        assert analytics == [(pytest.approx(94.0 / 91.0 - 1), pytest.approx(94.0 / 90.0 - 1), None)]
        assert con.sql("select symbol, other_symbol, days from fct_return_correlations").fetchall() == [
            ("AAPL", "MSFT", 1)]
    finally:
        con.close()

    # Gold rebuilds exactly what changed in Silver, at every grain, however old: a late trade for Friday 15:10
    # (days before Monday's newest candle; earlier in its minute than any trade there, higher than all) is merged
    # into Friday's minute, hour and day candles, and no other row is rewritten.
    late_at = SESSIONS[0] + timedelta(minutes=10)
    indexed = _write_silver(silver, [_trade("AAPL-late", "AAPL", 999.0, 5.0, late_at, 10_000)], mode="append")
    assert (indexed["status"], indexed["buckets"], indexed["inserted_rows"]) == ("indexed", 1, 1), indexed
    rewritten = _build_candles(tmp_path, variables)
    assert rewritten == {"1m": 1, "1h": 1, "1d": 1}
    with duckdb.connect(str(tmp_path / "gold.duckdb"), read_only=True) as con:
        assert con.sql("select count(*) from fct_candles_1m").fetchall() == [(CANDLES_1M,)]
        # Rebuilt candles keep their keys: a key depends on the natural key only.
        assert _candle_keys(con) == keys_before
        minute = con.sql("select open, high, trade_count, volume from fct_candles_1m "
                         "where symbol = 'AAPL' and candle_start = timestamp '2026-11-20 15:10:00'").fetchall()
        assert minute == [(999.0, 999.0, 3, 45.0)]
        day = con.sql("select high, trade_count from fct_candles_1d "
                      "where symbol = 'AAPL' and trading_date = date '2026-11-20'").fetchall()
        assert day == [(999.0, 2 * MINUTES + 1)]
        candles = _all_candles(con)

    # Compaction rewrites files and changes no row: nothing is indexed and nothing rebuilt.
    DeltaTable(str(silver / "trades")).optimize.compact()
    assert index_changes(str(silver / "trades"))["status"] == "no_row_changes"
    assert _build_candles(tmp_path, variables) == {"1m": 0, "1h": 0, "1d": 0}
    with duckdb.connect(str(tmp_path / "gold.duckdb"), read_only=True) as con:
        assert _all_candles(con) == candles

    # Rows leaving Silver (as a reprocess that now rejects them would): Monday's MSFT 15:20 minute loses both its
    # trades, so its candle goes, and its hour and day lose two trades.
    table = DeltaTable(str(silver / "trades"))
    table.delete("symbol = 'MSFT' and event_id in ('MSFT-1-20-a', 'MSFT-1-20-b')")
    indexed = index_changes(str(silver / "trades"))
    assert (indexed["buckets"], indexed["deleted_rows"]) == (1, 2), indexed
    assert _build_candles(tmp_path, variables) == {"1m": 0, "1h": 1, "1d": 1}
    with duckdb.connect(str(tmp_path / "gold.duckdb"), read_only=True) as con:
        assert con.sql("select count(*) from fct_candles_1m").fetchall() == [(CANDLES_1M - 1,)]
        counts = con.sql("select (select trade_count from fct_candles_1h where symbol = 'MSFT' "
                         "and candle_start = timestamp '2026-11-23 15:00:00'), (select trade_count from "
                         "fct_candles_1d where symbol = 'MSFT' and trading_date = date '2026-11-23')").fetchall()
        assert counts == [(2 * MINUTES - 2, 2 * MINUTES - 2)]


def _build_candles(tmp: Path, variables: dict) -> dict[str, int]:
    """dbt run of the candle models; {grain: rows the build wrote}, counted as the rows stamped with a silver_version
    above every one the table held before."""
    with duckdb.connect(str(tmp / "gold.duckdb"), read_only=True) as con:
        before = {grain: con.sql(f"select max(silver_version) from fct_candles_{grain}").fetchall()[0][0]
                  for grain in ("1m", "1h", "1d")}
    _dbt("run", "--select", "fct_candles_1m", "fct_candles_1h", "fct_session_candles_1d", "fct_candles_1d",
         tmp=tmp, variables=variables)
    with duckdb.connect(str(tmp / "gold.duckdb"), read_only=True) as con:
        return {grain: con.sql(f"select count(*) from fct_candles_{grain} where silver_version > {version}")
                .fetchall()[0][0] for grain, version in before.items()}


def _all_candles(con) -> dict[str, list[tuple]]:
    return {grain: con.sql(f"select * from fct_candles_{grain} order by all").fetchall()
            for grain in ("1m", "1h", "1d")}


def _candle_keys(con) -> dict[tuple, str]:
    keys = {}
    for grain, bucket in (("1m", "candle_start"), ("1h", "candle_start"), ("1d", "trading_date")):
        rows = con.execute(f"select candle_key, symbol, {bucket} from fct_candles_{grain}").fetchall()
        keys.update({(grain, symbol, start): key for key, symbol, start in rows})
    return keys


def _assert_star_schema_keys(con) -> None:
    """Exact key values on the built Gold: surrogate keys recomputed in Python for every row, date keys from the
    trading date, and every fact key present in its dimension."""
    # The overnight candle: 03:30 UTC on the 20th is trading date 2026-11-19 in New York, after its close: post.
    assert con.execute(
        "select candle_key, trading_date, date_key from fct_candles_1m "
        "where symbol = 'AAPL' and candle_start = timestamp '2026-11-20 03:30:00'").fetchall() == [
        ("26a145b9e4c366dd1cb62e8d124a67de", date(2026, 11, 19), 20261119)]  # pragma: allowlist secret
    assert con.execute(
        "select candle_key, date_key, session, trade_count from fct_candles_1h "
        "where symbol = 'AAPL' and candle_start = timestamp '2026-11-20 03:00:00'").fetchall() == [
        ("53188f3ed40265f9b6b7c218ae35c151", 20261119, "post", 1)]  # pragma: allowlist secret
    # Thursday had after-hours trades only: no daily (regular-session) bar, an after-hours row.
    assert con.execute("select count(*) from fct_candles_1d where trading_date = date '2026-11-19'").fetchall() == [
        (0,)]
    assert con.execute(
        "select candle_key, date_key, session, close from fct_session_candles_1d "
        "where symbol = 'AAPL' and trading_date = date '2026-11-19'").fetchall() == [
        ("7e9b22687139b529029315c7d020a61b", 20261119, "post", 95.0)]  # pragma: allowlist secret

    timestamp = "%Y-%m-%d %H:%M:%S"
    # table -> (key column, label, bucket column, the natural key's last part if any)
    surrogate = {
        "fct_candles_1m": ("candle_key", "candle_1m", "candle_start", None),
        "fct_candles_1h": ("candle_key", "candle_1h", "candle_start", "session"),
        "fct_candles_1d": ("candle_key", "candle_1d", "trading_date", None),
        "fct_session_candles_1d": ("candle_key", "session_candle_1d", "trading_date", "session"),
        "fct_volatility": ("volatility_key", "volatility", "candle_start", "window_minutes"),
        "fct_moving_averages": ("moving_average_key", "moving_average", "candle_start", "window_minutes"),
        "fct_daily_bars": ("daily_bar_key", "daily_bar", "trading_date", None),
        "fct_daily_analytics": ("daily_analytics_key", "daily_analytics", "trading_date", None),
    }
    for table, (key, label, bucket, last) in surrogate.items():
        rows = con.execute(f"select {key}, symbol, {bucket}, {last or 'null'} from {table}").fetchall()
        assert rows and len({row[0] for row in rows}) == len(rows), table
        text_format = timestamp if bucket == "candle_start" else "%Y-%m-%d"
        expected = [_surrogate_key(label, symbol, start.strftime(text_format),
                                   *([] if part is None else [str(part)]))
                    for _, symbol, start, part in rows]
        assert [row[0] for row in rows] == expected, table
    for table in [*BUILT_FACTS, "dim_date"]:
        day = "date_day" if table == "dim_date" else "trading_date"
        wrong = con.execute(f"select {day}, date_key from {table} "
                            f"where date_key != cast(strftime({day}, '%Y%m%d') as integer)").fetchall()
        total = con.execute(f"select count(*), count(distinct date_key) from {table}").fetchall()[0]
        assert wrong == [] and total[0] > 0, table
    assert con.execute("select count(*), count(distinct date_key), min(date_key), max(date_key) "
                       "from dim_date").fetchall() == [(5843, 5843, 20200101, 20351230)]
    # The seeds' sessions reach dim_date: a session exactly on the trading days, half days flagged, UTC times
    # (the seed's 4,018 sessions less 2035-12-31, past the spine's exclusive end).
    assert con.execute("select count(*) filter (where is_trading_day), count(session_open_utc), "
                       "count(*) filter (where is_trading_day and session_close_utc > session_open_utc), "
                       "count(*) filter (where is_half_day) from dim_date").fetchall() == [(4017, 4017, 4017, 33)]
    assert con.execute("select date_day, is_trading_day, is_half_day, session_open_utc, session_close_utc "
                       "from dim_date where date_day between date '2026-11-26' and date '2026-11-27' "
                       "order by date_day").fetchall() == [
        (date(2026, 11, 26), False, False, None, None),
        (date(2026, 11, 27), True, True, datetime(2026, 11, 27, 14, 30), datetime(2026, 11, 27, 18, 0))]
    for table in BUILT_FACTS:
        orphans = con.execute(
            f"select count(*) from {table} as fact "
            f"left join dim_date on fact.date_key = dim_date.date_key "
            f"left join dim_symbol on fact.symbol = dim_symbol.symbol "
            f"where dim_date.date_key is null or dim_symbol.symbol is null").fetchall()
        assert orphans == [(0,)], table


# Monday 2026-11-23: AAPL's quote at 15:59 New York, then a newer one after the close (the source sent no percent
# change); IBM, quoted but never traded and not in the symbols seed.
QUOTES = [
    ("q-aapl-1", "AAPL", 130.0, 10.0, 8.3, 131.0, 109.0, 110.0, 120.0, datetime(2026, 11, 23, 20, 59, tzinfo=timezone.utc)),
    ("q-aapl-2", "AAPL", 131.0, 11.0, None, 132.0, 110.0, 110.0, 120.0, datetime(2026, 11, 23, 21, 0, tzinfo=timezone.utc)),
    ("q-ibm-1", "IBM", 200.0, 2.0, 1.0, 201.0, 199.0, 199.5, 198.0, datetime(2026, 11, 23, 15, 0, tzinfo=timezone.utc)),
]


def _assert_latest_quotes(con) -> None:
    """One row per quoted symbol, its newest snapshot, with the day range as the spread; a quoted symbol missing from
    the seed joins dim_symbol."""
    assert con.execute(
        "select symbol, trading_date, date_key, market_calendar, current_price, previous_close, pct_change, "
        "day_range, day_range_pct, quote_time_utc, quote_event_id from fct_latest_quotes order by symbol").fetchall() == [
        ("AAPL", date(2026, 11, 23), 20261123, "XNYS", 131.0, 120.0, None, 22.0, pytest.approx(100 * 22 / 131),
         datetime(2026, 11, 23, 21, 0), "q-aapl-2"),
        ("IBM", date(2026, 11, 23), 20261123, "XNYS", 200.0, 198.0, 1.0, 2.0, 1.0, datetime(2026, 11, 23, 15, 0),
         "q-ibm-1")]
    assert con.execute("select sector, is_in_reference from dim_symbol where symbol = 'IBM'").fetchall() == [
        ("Unknown", False)]
