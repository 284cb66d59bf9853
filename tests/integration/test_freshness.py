"""spark_jobs/freshness.py on a Silver table the stream's code creates and Spark writes, on the real MinIO: the newest
trade from the Delta log's statistics, judged against the exchange's hours from the command line."""
from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime, timezone

import pytest

from conf.contracts.schemas import load_contract
from spark_jobs.lib.tables import KAFKA_SCHEMA, ensure_tables
from spark_jobs.lib.transforms import TRADES, bronze_rows, parse_events, silver_rows
from tests.integration.stack import REPO, expected_records, producer_args

pytestmark = pytest.mark.integration

def freshness(env: dict[str, str], now: str, tmp_path) -> tuple[subprocess.CompletedProcess, dict]:
    out = tmp_path / f"freshness-{now[:16].replace(':', '')}.json"
    result = subprocess.run([sys.executable, "-m", "spark_jobs.freshness", "--now", now, "--json", str(out)],
                            env=env, cwd=REPO, capture_output=True, text=True, timeout=120)
    return result, (json.loads(out.read_text()) if out.exists() else {})


def test_trades_stopping_in_the_session_alarm_and_a_closed_market_does_not(spark, isolated, tmp_path):
    settings, env = isolated
    # 60 simulated trades from 15:00 UTC on Monday 23 November 2026 (10:00 New York), through the stream's code.
    records = expected_records(env, producer_args(60, seed=3, start_time="2026-11-23T15:00:00", rate=0.25))
    kafka_rows = [(r.key, r.value, settings.kafka.trades_topic, 0, i, datetime.fromtimestamp(r.trade_ts / 1000,
                                                                                             timezone.utc), 0)
                  for i, r in enumerate(records)]
    schema = load_contract(TRADES.schema_name)
    ensure_tables(spark, settings, TRADES, schema)
    parsed = parse_events(bronze_rows(spark.createDataFrame(kafka_rows, KAFKA_SCHEMA)), TRADES, schema,
                          settings.stream.max_future_skew_seconds)
    silver_rows(parsed, TRADES).write.format("delta").mode("append").save(settings.lake_uri("silver/trades"))
    newest = datetime.fromtimestamp(max(r.trade_ts for r in records) / 1000, timezone.utc)
    assert datetime(2026, 11, 23, 15, tzinfo=timezone.utc) < newest < datetime(2026, 11, 23, 15, 5, tzinfo=timezone.utc)

    fresh, report = freshness(env, "2026-11-23T15:10:00Z", tmp_path)
    assert fresh.returncode == 0, fresh.stderr
    assert report["fresh"] is True and report["newest_trade"] == newest.isoformat()
    stale, report = freshness(env, "2026-11-23T15:25:00Z", tmp_path)
    assert stale.returncode == 1 and report["fresh"] is False
    age = (datetime(2026, 11, 23, 15, 25, tzinfo=timezone.utc) - newest).total_seconds()
    assert stale.stdout.endswith(f"STALE: market open since 2026-11-23 14:30 UTC and newest trade "
                                 f"{newest:%Y-%m-%d %H:%M:%S} UTC, {age:,.0f} s old "
                                 "(> watchdog.max_silver_trade_age_seconds 900)\n")
    # The same Silver on Saturday, or on Thanksgiving: no alarm.
    for closed in ("2026-11-28T16:00:00Z", "2026-11-26T16:00:00Z"):
        result, report = freshness(env, closed, tmp_path)
        assert result.returncode == 0 and report["reason"].startswith("market closed, no trade expected"), report
