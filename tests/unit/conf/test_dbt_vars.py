"""conf/dbt_vars.py: the Gold dbt project's vars are the settings (defaults and overrides), and its CLI."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conf.calendars import exchange_calendar
from conf.dbt_vars import dbt_vars
from conf.lake import storage_options
from conf.settings import ConfigError, load_settings

REPO = Path(__file__).resolve().parents[3]


def test_the_vars_are_the_settings_defaults():
    settings = load_settings({})
    assert dbt_vars(settings) == {
        "silver_root": f"s3://{settings.lake.bucket}/silver",
        "lake_storage_options": storage_options(settings),
        "lake_quotes_enabled": settings.warehouse.quotes_enabled,
        "exchange_calendar": settings.market_hours.calendar,
        "exchange_timezone": "America/New_York",
    }
    assert dbt_vars(settings)["silver_root"] == "s3://lakehouse/silver"
    assert dbt_vars(settings)["lake_storage_options"] == {
        "AWS_ENDPOINT_URL": "http://127.0.0.1:19000", "AWS_REGION": "us-east-1", "AWS_ALLOW_HTTP": "true",
        "AWS_VIRTUAL_HOSTED_STYLE_REQUEST": "false"}


def test_the_vars_follow_the_environment_overrides():
    variables = dbt_vars(load_settings({
        "STOCKLAKE_LAKE_BUCKET": "prod-lake", "STOCKLAKE_LAKE_S3_ENDPOINT": "https://s3.eu-west-1.amazonaws.com",
        "STOCKLAKE_LAKE_S3_REGION": "eu-west-1", "STOCKLAKE_LAKE_PATH_STYLE_ACCESS": "false",
        "STOCKLAKE_WAREHOUSE_QUOTES_ENABLED": "true", "STOCKLAKE_MARKET_HOURS_CALENDAR": "XLON"}))
    assert variables == {
        "silver_root": "s3://prod-lake/silver",
        "lake_storage_options": {"AWS_ENDPOINT_URL": "https://s3.eu-west-1.amazonaws.com", "AWS_REGION": "eu-west-1",
                                 "AWS_ALLOW_HTTP": "false", "AWS_VIRTUAL_HOSTED_STYLE_REQUEST": "true"},
        "lake_quotes_enabled": True,
        "exchange_calendar": "XLON",
        "exchange_timezone": "Europe/London",
    }


def test_the_exchange_calendar_is_exchange_calendars_own_name_and_zone():
    # An alias stands for its calendar: Gold's seeds and symbols name XNYS.
    assert exchange_calendar("XNAS") == ("XNYS", "America/New_York")
    assert dbt_vars(load_settings({"STOCKLAKE_MARKET_HOURS_CALENDAR": "XNAS"}))["exchange_calendar"] == "XNYS"
    assert exchange_calendar("XTKS") == ("XTKS", "Asia/Tokyo")
    with pytest.raises(ConfigError, match="^market_hours.calendar: unknown exchange calendar 'NYSEX'"):
        exchange_calendar("NYSEX")


def run_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("STOCKLAKE_")}
    return subprocess.run([sys.executable, "-m", "conf.dbt_vars", *args], env={**clean, **env}, capture_output=True,
                          text=True, cwd=REPO, timeout=120)


def test_the_cli_prints_the_vars_as_one_json_line_for_dbt():
    env = {"STOCKLAKE_LAKE_BUCKET": "other-bucket"}
    done = run_cli(env)
    assert (done.returncode, done.stderr, done.stdout.count("\n")) == (0, "", 1)
    assert json.loads(done.stdout) == dbt_vars(load_settings(env))
    assert json.loads(done.stdout)["silver_root"] == "s3://other-bucket/silver"
    bad = run_cli({"STOCKLAKE_MARKET_HOURS_CALENDAR": "NYSEX"})
    assert (bad.returncode, bad.stdout) == (2, "")
    assert bad.stderr.startswith("dbt_vars: configuration error: market_hours.calendar: unknown exchange calendar")
    assert run_cli({}, "silver_root").returncode == 2
