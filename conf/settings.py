"""Pipeline settings: conf/pipeline.yaml, then an optional override file, then environment variables.

conf/pipeline.yaml is both the defaults and the schema: every key a user can set is there, and its value's type
is the type an override must have. Anything else (an unknown key, a wrong type) is a ConfigError naming the
setting and where the bad value came from, so a typo fails at start-up instead of being silently ignored.
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping

import yaml

CONF_DIR = Path(__file__).resolve().parent
DEFAULTS_FILE = CONF_DIR / "pipeline.yaml"
ENV_PREFIX = "STOCKLAKE_"
OVERRIDE_FILE_ENV = "STOCKLAKE_CONFIG"
# STOCKLAKE_* variables that are not settings: where the override file, the cache and the runtime folder are,
# and (for Airflow tasks, scripts/airflow_env.py) the checkout and the job environment's Python.
KAFKA_SECURITY_PROTOCOLS = ("PLAINTEXT", "SASL_PLAINTEXT", "SASL_SSL", "SSL")
KAFKA_SASL_MECHANISMS = ("SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN")
# The variable dbt_project/profiles.yml reads the local Gold's DuckDB file from (Settings.duckdb_path).
DUCKDB_PATH_ENV = "DBT_DUCKDB_PATH"
NON_SETTING_ENV = {"STOCKLAKE_CONFIG", "STOCKLAKE_CACHE", "STOCKLAKE_HOME", "STOCKLAKE_REPO", "STOCKLAKE_JOB_PYTHON"}
INTERVAL = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(milliseconds?|ms|seconds?|s|minutes?|min|hours?|h)\s*$", re.I)
INTERVAL_SECONDS = {"ms": 0.001, "millisecond": 0.001, "milliseconds": 0.001, "s": 1, "second": 1, "seconds": 1,
                    "min": 60, "minute": 60, "minutes": 60, "h": 3600, "hour": 3600, "hours": 3600}


class ConfigError(ValueError):
    """A setting is unknown or has a value of the wrong type or range."""


class Section(Mapping[str, Any]):
    """Read-only view of one settings section, with attribute access (settings.kafka.bootstrap_servers)."""

    def __init__(self, name: str, values: dict[str, Any]):
        self._name = name
        self._values = MappingProxyType(values)

    def __getattr__(self, key: str) -> Any:
        try:
            return self._values[key]
        except KeyError:
            raise AttributeError(f"no setting {self._name}.{key}") from None

    def __getitem__(self, key: str) -> Any:
        return self._values[key]

    def __iter__(self):
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return f"Section({self._name!r}, {dict(self._values)!r})"


class Settings:
    def __init__(self, sections: dict[str, dict[str, Any]]):
        self._sections = {name: Section(name, values) for name, values in sections.items()}

    def __getattr__(self, name: str) -> Section:
        try:
            return self._sections[name]
        except KeyError:
            raise AttributeError(f"no settings section {name}") from None

    def as_dict(self) -> dict[str, dict[str, Any]]:
        return {name: dict(section) for name, section in self._sections.items()}

    def lake_uri(self, table: str) -> str:
        """s3a:// URI of a lake path such as 'bronze/trades' or '_checkpoints/silver_trades'."""
        return f"s3a://{self.lake.bucket}/{table.strip('/')}"

    def duckdb_path(self, environ: Mapping[str, str] | None = None) -> str:
        """The local Gold's DuckDB file: DBT_DUCKDB_PATH (dbt's variable) when set, else warehouse.duckdb_path."""
        env = os.environ if environ is None else environ
        return env.get(DUCKDB_PATH_ENV) or self.warehouse.duckdb_path


def _type_name(value: Any) -> str:
    return {bool: "true/false", int: "a whole number", float: "a number", str: "text", list: "a list",
            dict: "a mapping"}.get(type(value), type(value).__name__)


def _coerce(path: str, default: Any, value: Any, origin: str) -> Any:
    """Check an override value against the default's type; env strings are parsed into that type."""
    from_env = origin.startswith("environment")
    bad = ConfigError(f"{path}: expected {_type_name(default)}, got {value!r} (from {origin})")
    if isinstance(default, bool):
        if from_env:
            lowered = str(value).strip().lower()
            if lowered in ("true", "1", "yes", "on"):
                return True
            if lowered in ("false", "0", "no", "off"):
                return False
            raise bad
        if not isinstance(value, bool):
            raise bad
        return value
    if isinstance(default, int):
        if from_env:
            try:
                return int(str(value).strip())
            except ValueError:
                raise bad from None
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad
        return value
    if isinstance(default, float):
        if from_env:
            try:
                return float(str(value).strip())
            except ValueError:
                raise bad from None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad
        return float(value)
    if isinstance(default, str):
        if not isinstance(value, str):
            raise bad
        return value
    if isinstance(default, list):
        if from_env:
            return [item.strip() for item in str(value).split(",") if item.strip()]
        if not isinstance(value, list):
            raise bad
        return value
    if isinstance(default, dict):
        if from_env:
            try:
                value = json.loads(value)
            except json.JSONDecodeError as exc:
                raise ConfigError(f"{path}: expected a JSON mapping ({exc.msg}) (from {origin})") from None
        if not isinstance(value, dict):
            raise bad
        return value
    raise bad


def _apply(merged: dict[str, dict[str, Any]], overrides: Mapping[str, Any], origin: str) -> None:
    if not isinstance(overrides, Mapping):
        raise ConfigError(f"expected a mapping of sections at the top level (from {origin})")
    for section, values in overrides.items():
        if section not in merged:
            raise ConfigError(f"{section}: unknown settings section (from {origin}); known: {', '.join(merged)}")
        if not isinstance(values, Mapping):
            raise ConfigError(f"{section}: expected a mapping of settings (from {origin})")
        for key, value in values.items():
            if key not in merged[section]:
                raise ConfigError(f"{section}.{key}: unknown setting (from {origin}); "
                                  f"known: {', '.join(merged[section])}")
            merged[section][key] = _coerce(f"{section}.{key}", merged[section][key], value, origin)


def env_name(section: str, key: str) -> str:
    return f"{ENV_PREFIX}{section}_{key}".upper()


def interval_seconds(text: str) -> float:
    """'5 seconds' -> 5.0, '10 minutes' -> 600.0 (the interval forms Spark accepts)."""
    m = INTERVAL.match(text)
    if not m:
        raise ValueError(f"not an interval: {text!r} (use e.g. '5 seconds', '10 minutes')")
    return float(m.group(1)) * INTERVAL_SECONDS[m.group(2).lower()]


def _validate(merged: dict[str, dict[str, Any]]) -> None:
    """Every rule a setting's type alone does not say (ranges, choices, URLs, files): a ConfigError naming it."""
    for check in (_check_numbers, _check_kafka, _check_sources, _check_stream_metrics, _check_monitoring,
                  _check_market_hours, _check_maintenance, _check_warehouse_and_dashboard, _check_simulator):
        check(merged)


def _check_numbers(merged: dict[str, dict[str, Any]]) -> None:
    for path in ("stream.trigger_interval", "stream.watermark_delay"):
        section, key = path.split(".")
        try:
            interval_seconds(merged[section][key])
        except ValueError as exc:
            raise ConfigError(f"{path}: {exc}") from None
    positive = ["kafka.partitions", "kafka.replication_factor", "stream.max_offsets_per_trigger",
                "stream.kafka_fetch_max_wait_ms",
                "stream.shuffle_partitions", "producer.batch_size_bytes", "producer.delivery_timeout_ms",
                "spark.delta_snapshot_partitions", "finnhub.max_symbols", "finnhub.watchdog_silence_seconds",
                "finnhub.reconnect_initial_seconds", "finnhub.reconnect_max_seconds", "finnhub.quote_calls_per_minute",
                "finnhub.quote_poll_interval_seconds", "finnhub.quote_max_age_seconds",
                "finnhub.rate_limited_initial_seconds", "finnhub.http_timeout_seconds",
                "maintenance.compaction_lookback_hours", "maintenance.compaction_min_files",
                "maintenance.vacuum_retention_hours", "maintenance.bronze_retention_days",
                "maintenance.reconcile_lookback_days", "quality.latest_hours", "watchdog.max_batch_age_seconds",
                "watchdog.max_consumer_lag", "watchdog.max_heartbeat_age_seconds",
                "watchdog.max_silver_trade_age_seconds"]
    for path in positive:
        section, key = path.split(".")
        if merged[section][key] <= 0:
            raise ConfigError(f"{path}: must be greater than 0, got {merged[section][key]}")
    for path in ("producer.heartbeat_interval_seconds", "stream.heartbeat_interval_seconds"):
        section, key = path.split(".")
        if not merged[section][key] >= 0:  # also refuses NaN
            raise ConfigError(f"{path}: must be >= 0 (0 = off), got {merged[section][key]}")


def _check_kafka(merged: dict[str, dict[str, Any]]) -> None:
    kafka = merged["kafka"]
    if kafka["security_protocol"] not in KAFKA_SECURITY_PROTOCOLS:
        raise ConfigError(f"kafka.security_protocol: must be one of {', '.join(KAFKA_SECURITY_PROTOCOLS)}, "
                          f"got {kafka['security_protocol']!r}")
    if kafka["sasl_mechanism"] not in KAFKA_SASL_MECHANISMS:
        raise ConfigError(f"kafka.sasl_mechanism: must be one of {', '.join(KAFKA_SASL_MECHANISMS)}, "
                          f"got {kafka['sasl_mechanism']!r}")
    if kafka["sasl_mechanism"] == "PLAIN" and kafka["security_protocol"] == "SASL_PLAINTEXT":
        # PLAIN sends the password itself; only over TLS.
        raise ConfigError("kafka.sasl_mechanism: PLAIN sends the password in clear; use SCRAM or SASL_SSL")
    if kafka["ssl_ca_location"] and not Path(kafka["ssl_ca_location"]).is_file():
        raise ConfigError(f"kafka.ssl_ca_location: no such file: {kafka['ssl_ca_location']}")


def _check_sources(merged: dict[str, dict[str, Any]]) -> None:
    if merged["stream"]["starting_offsets"] not in ("earliest", "latest"):
        raise ConfigError(f"stream.starting_offsets: must be earliest or latest, "
                          f"got {merged['stream']['starting_offsets']!r}")
    if merged["finnhub"]["reconnect_max_seconds"] < merged["finnhub"]["reconnect_initial_seconds"]:
        raise ConfigError("finnhub.reconnect_max_seconds: must be >= finnhub.reconnect_initial_seconds")
    for path in ("finnhub.ws_url", "finnhub.rest_url"):
        section, key = path.split(".")
        scheme = ("ws://", "wss://") if key == "ws_url" else ("http://", "https://")
        if not merged[section][key].startswith(scheme):
            raise ConfigError(f"{path}: must start with {' or '.join(scheme)}, got {merged[section][key]!r}")
    if not 0 <= merged["producer"]["metrics_port"] <= 65535:
        raise ConfigError(f"producer.metrics_port: must be 0 (off) to 65535, got {merged['producer']['metrics_port']}")


def _check_stream_metrics(merged: dict[str, dict[str, Any]]) -> None:
    stream = merged["stream"]
    if not 0 <= stream["metrics_port"] <= 65535:
        raise ConfigError(f"stream.metrics_port: must be 0 (off) to 65535, got {stream['metrics_port']}")
    if stream["metrics_flush_seconds"] <= 0:
        raise ConfigError(f"stream.metrics_flush_seconds: must be greater than 0, "
                          f"got {stream['metrics_flush_seconds']}")
    if not stream["metrics_table"].strip("/"):
        raise ConfigError("stream.metrics_table: must name a lake path, e.g. _metrics/stream_progress")


def _check_monitoring(merged: dict[str, dict[str, Any]]) -> None:
    monitoring = merged["monitoring"]
    for key in ("prometheus_port", "pushgateway_port"):
        if not 1 <= monitoring[key] <= 65535:
            raise ConfigError(f"monitoring.{key}: must be within 1..65535, got {monitoring[key]}")
    for key, empty in (("pushgateway_url", "no push"), ("prometheus_url", "the local Prometheus")):
        if monitoring[key] and not monitoring[key].startswith(("http://", "https://")):
            raise ConfigError(f"monitoring.{key}: must be empty ({empty}) or start with http:// or https://, "
                              f"got {monitoring[key]!r}")


def _check_market_hours(merged: dict[str, dict[str, Any]]) -> None:
    if merged["market_hours"]["session"] not in ("regular", "extended", "always"):
        raise ConfigError(f"market_hours.session: must be regular, extended or always, "
                          f"got {merged['market_hours']['session']!r}")
    for key in ("pre_market_minutes", "after_hours_minutes"):
        if not 0 <= merged["market_hours"][key] <= 720:
            raise ConfigError(f"market_hours.{key}: must be within 0..720, got {merged['market_hours'][key]}")


def _check_maintenance(merged: dict[str, dict[str, Any]]) -> None:
    if merged["maintenance"]["compaction_min_files"] < 2:
        # An hour already compacted to one file would be rewritten (re-Z-ordered) on every run.
        raise ConfigError(f"maintenance.compaction_min_files: must be >= 2, "
                          f"got {merged['maintenance']['compaction_min_files']}")
    if merged["maintenance"]["closed_hour_grace_minutes"] < 0:
        raise ConfigError("maintenance.closed_hour_grace_minutes: must be >= 0")
    if merged["maintenance"]["vacuum_retention_hours"] < 168:
        raise ConfigError(f"maintenance.vacuum_retention_hours: must be >= 168 (Delta's safety check: files younger "
                          f"than 7 days may still be read), got {merged['maintenance']['vacuum_retention_hours']}")


def _check_warehouse_and_dashboard(merged: dict[str, dict[str, Any]]) -> None:
    if merged["warehouse"]["target"] not in ("local", "snowflake"):
        raise ConfigError(f"warehouse.target: must be local or snowflake, got {merged['warehouse']['target']!r}")
    if not merged["warehouse"]["duckdb_path"].strip():
        raise ConfigError("warehouse.duckdb_path: must name the local Gold's DuckDB file")
    dashboard = merged["dashboard"]
    if not 1 <= dashboard["port"] <= 65535:
        raise ConfigError(f"dashboard.port: must be within 1..65535, got {dashboard['port']}")
    for key in ("refresh_seconds", "freshness_red_after_seconds"):
        if dashboard[key] < 1:
            raise ConfigError(f"dashboard.{key}: must be at least 1 (second), got {dashboard[key]}")
    # A Plotly candlestick of tens of thousands of candles makes every refresh slow in the browser.
    if not 1 <= dashboard["candles_limit"] <= 10000:
        raise ConfigError(f"dashboard.candles_limit: must be within 1..10000, got {dashboard['candles_limit']}")


def _check_simulator(merged: dict[str, dict[str, Any]]) -> None:
    for symbol, spec in merged["simulator"]["symbols"].items():
        if not isinstance(spec, Mapping) or not {"price", "volatility", "weight"} <= set(spec):
            raise ConfigError(f"simulator.symbols.{symbol}: needs price, volatility and weight")
        if spec["price"] <= 0 or spec["volatility"] < 0 or spec["weight"] <= 0:
            raise ConfigError(f"simulator.symbols.{symbol}: price and weight must be > 0, volatility >= 0")


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    env = os.environ if environ is None else environ
    merged: dict[str, dict[str, Any]] = yaml.safe_load(DEFAULTS_FILE.read_text())
    override_file = env.get(OVERRIDE_FILE_ENV)
    if override_file:
        path = Path(override_file)
        if not path.is_file():
            raise ConfigError(f"{OVERRIDE_FILE_ENV}: no such file: {override_file}")
        _apply(merged, yaml.safe_load(path.read_text()) or {}, f"{OVERRIDE_FILE_ENV}={override_file}")
    known = {env_name(s, k): (s, k) for s, values in merged.items() for k in values}
    env_overrides: dict[str, dict[str, Any]] = {}
    for name, value in env.items():
        if not name.startswith(ENV_PREFIX) or name in NON_SETTING_ENV:
            continue
        if name not in known:
            raise ConfigError(f"{name}: unknown setting in the environment")
        section, key = known[name]
        env_overrides.setdefault(section, {})[key] = _coerce(f"{section}.{key}", merged[section][key], value,
                                                             f"environment {name}")
    for section, values in env_overrides.items():
        merged[section].update(values)
    _validate(merged)
    return Settings(merged)










def main(argv: list[str]) -> int:
    """`python -m conf.settings SECTION.KEY`: print one effective setting (for shell scripts and Airflow tasks
    that need a setting without importing the pipeline); without an argument, all of them as JSON."""
    import sys

    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"settings: configuration error: {exc}", file=sys.stderr)
        return 2
    if not argv:
        print(json.dumps(settings.as_dict(), indent=2))
        return 0
    section, _, key = argv[0].partition(".")
    try:
        value = settings.as_dict()[section][key]
    except KeyError:
        print(f"settings: no setting {argv[0]!r}", file=sys.stderr)
        return 2
    print(value if isinstance(value, str) else json.dumps(value))
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main(sys.argv[1:]))
