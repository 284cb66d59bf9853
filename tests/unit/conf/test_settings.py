"""conf/settings.py: defaults, override file, environment, and clear errors naming the setting."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from conf.contracts.schemas import load_schema
from conf.settings import ConfigError, interval_seconds, load_settings


def test_defaults_come_from_pipeline_yaml():
    settings = load_settings({})
    assert settings.kafka.bootstrap_servers == "127.0.0.1:19092"
    assert settings.kafka.trades_topic == "market.trades.v1"
    assert settings.lake_uri("silver/trades") == "s3a://lakehouse/silver/trades"
    assert settings.simulator.symbols["AAPL"] == {"price": 189.5, "volatility": 0.25, "weight": 5}


def test_environment_overrides_are_parsed_into_the_defaults_type():
    settings = load_settings({"STOCKLAKE_KAFKA_PARTITIONS": "3", "STOCKLAKE_LAKE_PATH_STYLE_ACCESS": "false",
                              "STOCKLAKE_STREAM_WATERMARK_DELAY": "5 minutes",
                              "STOCKLAKE_SIMULATOR_SYMBOLS": '{"IBM": {"price": 1, "volatility": 0.1, "weight": 1}}'})
    assert settings.kafka.partitions == 3
    assert settings.lake.path_style_access is False
    assert settings.stream.watermark_delay == "5 minutes"
    assert list(settings.simulator.symbols) == ["IBM"]


def test_override_file_then_environment(tmp_path):
    override = tmp_path / "prod.yaml"
    override.write_text("kafka:\n  bootstrap_servers: broker-1:9092\n  partitions: 12\n")
    settings = load_settings({"STOCKLAKE_CONFIG": str(override), "STOCKLAKE_KAFKA_PARTITIONS": "24"})
    assert settings.kafka.bootstrap_servers == "broker-1:9092"
    assert settings.kafka.partitions == 24


@pytest.mark.parametrize("env, message", [
    ({"STOCKLAKE_KAFKA_PARTITONS": "3"}, "STOCKLAKE_KAFKA_PARTITONS: unknown setting in the environment"),
    ({"STOCKLAKE_KAFKA_PARTITIONS": "three"}, "kafka.partitions: expected a whole number, got 'three'"),
    ({"STOCKLAKE_KAFKA_PARTITIONS": "0"}, "kafka.partitions: must be greater than 0, got 0"),
    ({"STOCKLAKE_STREAM_WATERMARK_DELAY": "ten"}, "stream.watermark_delay: not an interval: 'ten'"),
    ({"STOCKLAKE_STREAM_STARTING_OFFSETS": "middle"}, "stream.starting_offsets: must be earliest or latest"),
    ({"STOCKLAKE_CONFIG": "/nonexistent.yaml"}, "STOCKLAKE_CONFIG: no such file: /nonexistent.yaml"),
    ({"STOCKLAKE_MARKET_HOURS_SESSION": "24x7"}, "market_hours.session: must be regular, extended or always"),
    ({"STOCKLAKE_MARKET_HOURS_PRE_MARKET_MINUTES": "-5"}, "market_hours.pre_market_minutes: must be within 0..720"),
    ({"STOCKLAKE_FINNHUB_WS_URL": "https://ws.finnhub.io"}, "finnhub.ws_url: must start with ws:// or wss://"),
    ({"STOCKLAKE_FINNHUB_REST_URL": "finnhub.io"}, "finnhub.rest_url: must start with http:// or https://"),
    ({"STOCKLAKE_FINNHUB_MAX_SYMBOLS": "0"}, "finnhub.max_symbols: must be greater than 0, got 0"),
    ({"STOCKLAKE_FINNHUB_QUOTE_CALLS_PER_MINUTE": "0"}, "finnhub.quote_calls_per_minute: must be greater than 0"),
    ({"STOCKLAKE_FINNHUB_WATCHDOG_SILENCE_SECONDS": "soon"}, "finnhub.watchdog_silence_seconds: expected a number"),
    ({"STOCKLAKE_FINNHUB_RECONNECT_INITIAL_SECONDS": "90"},
     "finnhub.reconnect_max_seconds: must be >= finnhub.reconnect_initial_seconds"),
    ({"STOCKLAKE_PRODUCER_METRICS_PORT": "70000"}, "producer.metrics_port: must be 0 (off) to 65535, got 70000"),
    ({"STOCKLAKE_MAINTENANCE_VACUUM_RETENTION_HOURS": "24"},
     "maintenance.vacuum_retention_hours: must be >= 168 (Delta's safety check"),
    ({"STOCKLAKE_MAINTENANCE_CLOSED_HOUR_GRACE_MINUTES": "-1"}, "maintenance.closed_hour_grace_minutes: must be >= 0"),
    ({"STOCKLAKE_MAINTENANCE_BRONZE_RETENTION_DAYS": "0"}, "maintenance.bronze_retention_days: must be greater than 0"),
    ({"STOCKLAKE_MAINTENANCE_COMPACTION_MIN_FILES": "1"}, "maintenance.compaction_min_files: must be >= 2, got 1"),
    ({"STOCKLAKE_WAREHOUSE_TARGET": "bigquery"}, "warehouse.target: must be local or snowflake, got 'bigquery'"),
    ({"STOCKLAKE_WAREHOUSE_DUCKDB_PATH": " "}, "warehouse.duckdb_path: must name the local Gold's DuckDB file"),
    ({"STOCKLAKE_STREAM_METRICS_PORT": "70000"}, "stream.metrics_port: must be 0 (off) to 65535, got 70000"),
    ({"STOCKLAKE_STREAM_METRICS_TABLE": "/"}, "stream.metrics_table: must name a lake path"),
    ({"STOCKLAKE_WATCHDOG_MAX_CONSUMER_LAG": "0"}, "watchdog.max_consumer_lag: must be greater than 0, got 0"),
])
def test_bad_settings_fail_with_one_line_naming_the_setting(env, message):
    with pytest.raises(ConfigError) as error:
        load_settings(env)
    assert message in str(error.value)
    assert "\n" not in str(error.value)


def test_unknown_key_in_override_file(tmp_path):
    override = tmp_path / "bad.yaml"
    override.write_text("stream:\n  watermark: 5 minutes\n")
    with pytest.raises(ConfigError, match=r"^stream.watermark: unknown setting \(from STOCKLAKE_CONFIG="):
        load_settings({"STOCKLAKE_CONFIG": str(override)})


def test_intervals_and_schemas():
    assert interval_seconds("5 seconds") == 5.0
    assert interval_seconds("10 minutes") == 600.0
    assert load_schema("trade.v1")["required"][0] == "event_id"
    with pytest.raises(ConfigError, match="no message schema 'trade.v9'"):
        load_schema("trade.v9")


def run_settings_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("STOCKLAKE_")}
    return subprocess.run([sys.executable, "-m", "conf.settings", *args], env={**clean, **env}, capture_output=True,
                          text=True, cwd=Path(__file__).resolve().parents[3], timeout=60)


def test_the_local_gold_file_is_one_setting_that_dbts_variable_overrides():
    settings = load_settings({})
    assert settings.duckdb_path({}) == ".lake/warehouse/gold.duckdb"
    assert load_settings({"STOCKLAKE_WAREHOUSE_DUCKDB_PATH": "/w/g.duckdb"}).duckdb_path({}) == "/w/g.duckdb"
    assert settings.duckdb_path({"DBT_DUCKDB_PATH": "/data/other.duckdb"}) == "/data/other.duckdb"
    assert settings.duckdb_path({"DBT_DUCKDB_PATH": ""}) == ".lake/warehouse/gold.duckdb"
    assert run_settings_cli({}, "warehouse.duckdb_path").stdout == ".lake/warehouse/gold.duckdb\n"


def test_settings_cli_prints_one_effective_setting_for_scripts_and_airflow_tasks():
    assert run_settings_cli({}, "warehouse.target").stdout == "local\n"
    assert run_settings_cli({"STOCKLAKE_WAREHOUSE_TARGET": "snowflake"}, "warehouse.target").stdout == "snowflake\n"
    assert run_settings_cli({}, "maintenance.vacuum_retention_hours").stdout == "168\n"
    unknown = run_settings_cli({}, "warehouse.nope")
    assert (unknown.returncode, unknown.stdout, unknown.stderr) == (2, "", "settings: no setting 'warehouse.nope'\n")
    bad = run_settings_cli({"STOCKLAKE_WAREHOUSE_TARGET": "x"}, "warehouse.target")
    assert bad.returncode == 2
    assert bad.stderr == "settings: configuration error: warehouse.target: must be local or snowflake, got 'x'\n"


def test_dashboard_defaults_and_overrides():
    assert dict(load_settings({}).dashboard) == {"port": 8501, "refresh_seconds": 5, "live_tail": True,
                                                 "freshness_red_after_seconds": 900, "candles_limit": 390}
    assert load_settings({"STOCKLAKE_DASHBOARD_LIVE_TAIL": "false"}).dashboard.live_tail is False
    settings = load_settings({"STOCKLAKE_DASHBOARD_PORT": "8600", "STOCKLAKE_DASHBOARD_CANDLES_LIMIT": "60"})
    assert (settings.dashboard.port, settings.dashboard.candles_limit) == (8600, 60)
    # `make dashboard` reads the port through the settings CLI.
    assert run_settings_cli({"STOCKLAKE_DASHBOARD_PORT": "8600"}, "dashboard.port").stdout == "8600\n"


@pytest.mark.parametrize("env, message", [
    ({"STOCKLAKE_DASHBOARD_PORT": "0"}, "dashboard.port: must be within 1..65535, got 0"),
    ({"STOCKLAKE_DASHBOARD_PORT": "70000"}, "dashboard.port: must be within 1..65535, got 70000"),
    ({"STOCKLAKE_DASHBOARD_PORT": "http"}, "dashboard.port: expected a whole number, got 'http'"),
    ({"STOCKLAKE_DASHBOARD_REFRESH_SECONDS": "0"}, "dashboard.refresh_seconds: must be at least 1 (second), got 0"),
    ({"STOCKLAKE_DASHBOARD_FRESHNESS_RED_AFTER_SECONDS": "-5"},
     "dashboard.freshness_red_after_seconds: must be at least 1 (second), got -5"),
    ({"STOCKLAKE_DASHBOARD_CANDLES_LIMIT": "0"}, "dashboard.candles_limit: must be within 1..10000, got 0"),
    ({"STOCKLAKE_DASHBOARD_CANDLES_LIMIT": "50000"}, "dashboard.candles_limit: must be within 1..10000, got 50000"),
])
def test_bad_dashboard_settings_fail_with_one_line_naming_the_setting(env, message):
    with pytest.raises(ConfigError) as error:
        load_settings(env)
    assert str(error.value).startswith(message)
    assert "\n" not in str(error.value)
