"""Reprocessing a day from Bronze after a validation rule changes, on the real Kafka, MinIO, Spark, Delta and dbt.

Two days of trades stream into Silver under the current contract and Gold is built. Then the contract gets a new
rule (trades above 2,000 shares are refused: `volume:maximum`) in a copy of conf/schemas, as a user would edit it,
and reprocess.py, reading that contract, rebuilds the first day (in the tests' warm SparkSession; the file entry
point itself is run by test_reprocess_refuses_a_range_with_no_closed_hour). Silver and
quarantine for that day then hold exactly what the new rule gives, the other day is untouched row for row, a second
run changes nothing, and Gold, built incrementally from Silver's change index (spark_jobs/silver_changes.py), matches
the new Silver for day 1 without rewriting a row of day 2.
"""
from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from datetime import datetime, timedelta, timezone

import duckdb
import pytest

from spark_jobs.reprocess import main as reprocess
from tests.integration.code_copy import contract_copy, contract_of, edit_schema
from tests.integration.conftest import dbt, index_silver_changes
from tests.integration.stack import (REPO, environment, expected_records, producer_args, run_producer,
                                     run_stream_in_session)

pytestmark = pytest.mark.integration

DAY_1, DAY_2 = "2026-01-07", "2026-01-08"
NEW_MAX_VOLUME = 2000
# The daily candles and every model they are built from.
GOLD_MODELS = ("--select", "+fct_candles_1d")


def stricter_volume(schemas) -> None:
    # Every version of the contract gets the rule: versions may only add fields, never change a rule alone.
    for name in ("trade.v1", "trade.v2"):
        edit_schema(schemas, name, lambda schema: schema["properties"]["volume"].update(maximum=NEW_MAX_VOLUME))


def rows_by_day(spark, path: str, day: str) -> list[tuple]:
    table = spark.read.format("delta").load(path).where(f"date = '{day}'")
    return sorted(tuple(row) for row in table.collect())


def daily_candles(path) -> dict[tuple[str, str], tuple[float, int]]:
    with duckdb.connect(str(path), read_only=True) as con:
        rows = con.sql("select symbol, cast(trading_date as varchar), volume, trade_count from fct_candles_1d").fetchall()
    return {(symbol, day): (volume, count) for symbol, day, volume, count in rows}


def test_reprocess_rebuilds_one_day_with_the_new_rule_and_leaves_the_rest(spark, isolated, tmp_path):
    settings, env = isolated
    silver_path, quarantine_path = settings.lake_uri("silver/trades"), settings.lake_uri("quarantine/trades")
    # 10:00 New York: every trade (out-of-order ones too) in the regular session, which the daily bars are.
    runs = [producer_args(1200, seed=seed, start_time=f"{day}T15:00:00", duplicate_ratio=0.05,
                          out_of_order_ratio=0.05, malformed_ratio=0.02) for seed, day in ((41, DAY_1), (42, DAY_2))]
    for args in runs:
        assert run_producer(env, args, tmp_path)["delivered"] == 1200
    run_stream_in_session(spark, env, tmp_path / "stream.log")
    day_1_records, day_2_records = (expected_records(env, args) for args in runs)

    gold_env = {**env, "DBT_DUCKDB_PATH": str(tmp_path / "gold.duckdb"), "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
                "DBT_TARGET_PATH": str(tmp_path / "dbt-target")}
    index_silver_changes(env)
    dbt(gold_env, "seed", "--target", "local")  # the calendar and symbols the candles are bucketed with
    dbt(gold_env, "run", "--target", "local", *GOLD_MODELS)
    gold_before = daily_candles(tmp_path / "gold.duckdb")
    day_2_silver, day_2_quarantine = rows_by_day(spark, silver_path, DAY_2), rows_by_day(spark, quarantine_path, DAY_2)
    quarantine_before = sorted(tuple(row) for row in spark.read.format("delta").load(quarantine_path).collect())

    # What the new rule gives for day 1: the distinct valid events within it; the rest of day 1's valid events are
    # now volume:maximum, once per delivery.
    day_1_valid = {r.event_id: json.loads(r.value) for r in day_1_records if r.kind != "malformed"}
    kept = {event_id for event_id, event in day_1_valid.items() if event["volume"] <= NEW_MAX_VOLUME}
    refused = [r for r in day_1_records if r.kind != "malformed" and r.event_id not in kept]
    assert kept and refused, "the seed gives no case to check"
    # Day 1's malformed records that still have a trade time are judged again too (their reasons re-computed);
    # JSON cut short has none, and was received today, outside the day.
    rejudged = sum(1 for r in day_1_records if r.kind == "malformed" and r.trade_ts is not None
                   and r.expected_reason != "malformed_json")

    edited = contract_copy(tmp_path / "edited", stricter_volume)
    # As run a day later: the hours the records were received in (minutes ago) are closed by then.
    tomorrow = (datetime.now(timezone.utc) + timedelta(days=1)).isoformat()
    summaries = []
    for attempt in (1, 2):
        summary_path = tmp_path / f"reprocess-{attempt}.json"
        with environment(env), contract_of(edited):
            assert reprocess(["--from", DAY_1, "--to", DAY_1, "--entity", "trades", "--json", str(summary_path),
                              "--now", tomorrow]) == 0
        summaries.append(json.loads(summary_path.read_text()))
        silver_day_1 = spark.read.format("delta").load(silver_path).where(f"date = '{DAY_1}'")
        assert sorted(row["event_id"] for row in silver_day_1.collect()) == sorted(kept)
        # Day 2 and the old quarantine rows are untouched, row for row.
        assert rows_by_day(spark, silver_path, DAY_2) == day_2_silver
        assert rows_by_day(spark, quarantine_path, DAY_2) == day_2_quarantine
        quarantine = spark.read.format("delta").load(quarantine_path)
        reasons = Counter(row["reason"] for row in quarantine.select("reason").collect())
        malformed = Counter(r.expected_reason for r in (*day_1_records, *day_2_records) if r.kind == "malformed")
        assert reasons == malformed + Counter({"volume:maximum": len(refused)})
        new_rows = quarantine.where("reason = 'volume:maximum'").select("value").collect()
        assert sorted(row["value"] for row in new_rows) == sorted(r.value for r in refused)
        assert (quarantine.where("reason <> 'volume:maximum'").count(), ) == (len(quarantine_before), )

    first, second = (s["entities"][0] for s in summaries)
    assert first["partitions"] == second["partitions"] == f"(date >= '{DAY_1}' AND date <= '{DAY_1}')"
    assert first["silver_rows_before"] == len(day_1_valid) and first["silver_rows_after"] == len(kept)
    assert first["quarantine"] == {"inserted": len(refused), "deleted": 0, "updated": rejudged}
    # The second run finds everything as the first left it: the same rows, re-judged the same way.
    assert second["silver_rows_before"] == second["silver_rows_after"] == len(kept)
    assert second["quarantine"] == {"inserted": 0, "deleted": 0, "updated": rejudged + len(refused)}

    # Gold, built incrementally from what the replacement changed (its deletes and inserts in Silver's change data
    # feed), follows the new Silver for day 1 and rewrites no candle of day 2.
    indexed = index_silver_changes(env)
    # Two replacements since the last index run: day 1's rows by the kept ones, then the kept ones by themselves.
    assert (indexed["full_rebuild"], indexed["deleted_rows"], indexed["inserted_rows"]) == (
        None, len(day_1_valid) + len(kept), 2 * len(kept)), indexed
    dbt(gold_env, "run", "--target", "local", *GOLD_MODELS)
    gold_after = daily_candles(tmp_path / "gold.duckdb")
    with duckdb.connect(str(tmp_path / "gold.duckdb"), read_only=True) as con:
        rewritten = con.sql("select distinct cast(trading_date as varchar) from fct_candles_1d "
                            f"where silver_version = {indexed['silver_version']}").fetchall()
    assert rewritten == [(DAY_1,)]
    expected_day_1 = Counter()
    for event_id in kept:
        expected_day_1[day_1_valid[event_id]["symbol"], "volume"] += day_1_valid[event_id]["volume"]
        expected_day_1[day_1_valid[event_id]["symbol"], "count"] += 1
    assert {symbol: values for (symbol, day), values in gold_after.items() if day == DAY_1} == {
        symbol: (expected_day_1[symbol, "volume"], expected_day_1[symbol, "count"])
        for symbol in {day_1_valid[event_id]["symbol"] for event_id in kept}}
    assert {key: value for key, value in gold_after.items() if key[1] == DAY_2} == \
        {key: value for key, value in gold_before.items() if key[1] == DAY_2}
    assert {key: value for key, value in gold_before.items() if key[1] == DAY_1} != \
        {key: value for key, value in gold_after.items() if key[1] == DAY_1}


def test_reprocess_refuses_a_range_with_no_closed_hour(isolated):
    _, env = isolated
    result = subprocess.run([sys.executable, str(REPO / "spark_jobs" / "reprocess.py"), "--from", "2026-01-07",
                             "--to", "2026-01-07", "--now", "2026-01-07T00:10:00Z"],
                            env=env, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == ("reprocess: error: no closed hour in 2026-01-07..2026-01-07 at "
                             "2026-01-07T00:10:00+00:00: an hour is closed 15 min "
                             "(maintenance.closed_hour_grace_minutes) after it ends\n")
