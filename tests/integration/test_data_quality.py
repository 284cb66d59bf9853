"""The data-quality suite on a real Silver Delta table on MinIO, written with the stream's own transforms."""
from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from datetime import datetime, timezone

import pytest
from pyspark.sql import functions as F

from conf.contracts.schemas import load_contract
from spark_jobs.data_quality import main
from spark_jobs.lib.tables import KAFKA_SCHEMA, ensure_tables
from spark_jobs.lib.transforms import TRADES, bronze_rows, parse_events, silver_rows
from tests.integration.stack import REPO, expected_records, producer_args

pytestmark = pytest.mark.integration

PAIR = ("expect_column_pair_values_to_be_equal", "partition,event_time_partition")


def write_silver(spark, settings, env) -> list:
    """Simulated trades from 14:59:59 to just past 15:00 (hours 14 and 15 of 2026-01-05) into Silver, through
    the stream's table creation and its bronze -> parse -> silver transforms."""
    records = expected_records(env, producer_args(1200, seed=5, start_time="2026-01-05T14:59:59"))
    assert Counter(r.kind for r in records) == {"trade": 1200}
    kafka_rows = [(r.key, r.value, settings.kafka.trades_topic, i % 6, i // 6,
                   datetime.fromtimestamp(r.trade_ts / 1000 + 1, timezone.utc), 0)
                  for i, r in enumerate(records)]
    ensure_tables(spark, settings, TRADES, load_contract(TRADES.schema_name))
    parsed = parse_events(bronze_rows(spark.createDataFrame(kafka_rows, KAFKA_SCHEMA)), TRADES,
                          load_contract(TRADES.schema_name), settings.stream.max_future_skew_seconds)
    silver_rows(parsed, TRADES).write.format("delta").mode("append").save(settings.lake_uri("silver/trades"))
    return records


def run(argv, tmp_path) -> tuple[int, dict]:
    out = tmp_path / f"dq-{len(list(tmp_path.iterdir()))}.json"
    code = main([*argv, "--json", str(out)])
    return code, json.loads(out.read_text())["entities"][0]


def failures(report: dict) -> dict:
    return {(s["expectation"], s["column"]): s["unexpected_count"] for s in report["expectations"] if not s["success"]}


def test_suite_passes_on_good_silver_and_catches_each_kind_of_bad_row(spark, isolated, tmp_path, capsys):
    settings, env = isolated
    records = write_silver(spark, settings, env)
    per_hour = Counter(datetime.fromtimestamp(r.trade_ts / 1000, timezone.utc).hour for r in records)
    assert per_hour == {14: 1018, 15: 182}

    # Hour 15 closes at 16:00 + 15 minutes' grace.
    code, report = run(["--hours", "2", "--now", "2026-01-05T16:15:00Z"], tmp_path)
    assert (code, report["partitions"], report["rows"], report["success"]) == (
        0, ["2026-01-05/14", "2026-01-05/15"], 1200, True)
    assert len(report["expectations"]) == 22 and failures(report) == {}
    code, report = run(["--hours", "2", "--now", "2026-01-05T16:14:59Z"], tmp_path)
    assert (code, report["partitions"], report["rows"]) == (0, ["2026-01-05/14"], 1018)
    code, report = run(["--now", "2026-01-05T15:14:59Z"], tmp_path)
    assert (code, report["partitions"], report["rows"], report["nothing_to_check"]) == (0, [], 0, True)
    assert "data_quality trades: nothing to check (no closed hour partition" in capsys.readouterr().out

    # Bad rows appended straight to the Silver table, each breaking one rule, in partition 2026-01-05/15.
    silver_path = settings.lake_uri("silver/trades")
    hour_15 = spark.read.format("delta").load(silver_path).where("hour = '15'").orderBy("event_id").limit(4)
    first, second, third, fourth = hour_15.collect()
    new_id = lambda n: F.lit(f"{n:064x}")  # noqa: E731
    by_id = lambda row: hour_15.where(F.col("event_id") == row["event_id"])  # noqa: E731
    bad = (by_id(first).withColumn("event_id", new_id(1)).withColumn("price", F.lit(0.0))
           .unionByName(by_id(second))  # the same event again
           .unionByName(by_id(third).withColumn("event_id", new_id(3))
                        .withColumn("trade_time", F.col("trade_time") + F.expr("INTERVAL 2 HOURS")))
           .unionByName(by_id(fourth).withColumn("event_id", new_id(4)).withColumn("symbol", F.lit("ZZZZ"))))
    bad.write.format("delta").mode("append").save(silver_path)

    # Through the CLI, as the DAG runs it.
    out = tmp_path / "bad.json"
    result = subprocess.run([sys.executable, "-m", "spark_jobs.data_quality", "--partition", "2026-01-05/15",
                             "--json", str(out)], env=env, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert result.returncode == 1, result.stderr[-3000:]
    report = json.loads(out.read_text())["entities"][0]
    assert report["rows"] == 182 + 4
    assert failures(report) == {
        ("expect_column_values_to_be_between", "price"): 1,
        ("expect_column_values_to_be_unique", "event_id"): 2,
        PAIR: 1,
        ("expect_column_values_to_be_in_set", "symbol"): 1,
    }
    samples = {(s["expectation"], s["column"]): s["unexpected_sample"] for s in report["expectations"]}
    assert samples[("expect_column_values_to_be_between", "price")] == [{"event_id": f"{1:064x}", "price": 0.0}]
    assert [row["event_id"] for row in samples[("expect_column_values_to_be_unique", "event_id")]] == [
        second["event_id"]] * 2
    assert samples[PAIR] == [{"event_id": f"{3:064x}", "partition": "2026-01-05/15",
                              "event_time_partition": "2026-01-05/17"}]
    assert samples[("expect_column_values_to_be_in_set", "symbol")] == [{"event_id": f"{4:064x}", "symbol": "ZZZZ"}]
    assert result.stdout.splitlines()[-1] == (
        f"data_quality trades: FAILED: 18/22 expectations passed on 186 rows of 2026-01-05/15 "
        f"(s3://{settings.lake.bucket}/silver/trades)")
    # Hour 14 is untouched and still passes.
    code, report = run(["--partition", "2026-01-05/14", "--partition", "2026-01-05/09"], tmp_path)
    assert (code, report["rows"], report["missing_partitions"]) == (0, 1018, ["2026-01-05/09"])


def test_a_missing_silver_table_fails_the_check(isolated, capsys):
    settings, _ = isolated
    assert main(["--hours", "1"]) == 1
    assert capsys.readouterr().out.startswith(
        f"data_quality trades: FAILED: cannot read s3://{settings.lake.bucket}/silver/trades: TableNotFoundError")
