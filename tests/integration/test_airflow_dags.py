"""The Airflow DAGs: integrity (every DAG imports, its schedule, retries, timeouts, alerts, tags, docs) and `airflow
dags test` runs of lakehouse_compaction and gold_dbt end to end against the local Kafka + MinIO + Spark + dbt.

Airflow lives in its own environment (.venv-airflow); tests/integration/airflow_harness.py runs it as subprocesses.
"""
from __future__ import annotations

import json
import re
from collections import Counter
from datetime import datetime, timedelta, timezone

import duckdb
import pytest

from tests.integration.airflow_harness import airflow, airflow_env, airflow_home, dag_report  # noqa: F401
from tests.integration.stack import producer_args, run_producer, run_stream_in_session

pytestmark = pytest.mark.integration

ALERT = "stocklake_airflow.alerts.slack_failure_alert"
# dag id -> (schedule, task ids, retries of every task, tags)
EXPECTED_DAGS = {
    "lakehouse_compaction": ("20 * * * *", ["compact"], 2, ["lakehouse", "maintenance", "spark"]),
    "lakehouse_maintenance": ("40 2 * * *", ["reconcile", "retention", "vacuum"], 2,
                              ["lakehouse", "maintenance", "spark"]),
    "snowflake_refresh": ("*/15 * * * *", ["refresh_external_tables", "warehouse_is_snowflake"], 2,
                          ["snowflake", "warehouse"]),
    "gold_dbt": (None, ["dbt_build", "gold_summary_notice", "index_silver_changes", "refresh_warehouse_silver"], 2,
                 ["dbt", "gold", "warehouse"]),
    "data_quality": ("25 * * * *", ["check_silver_trades"], 0, ["quality", "silver"]),
    "historical_backfill": (None, ["backfill", "backfill_arguments"], 2, ["backfill", "lakehouse", "spark"]),
    "stream_watchdog": ("*/5 * * * *", ["check_silver_freshness", "check_stream"], 0, ["monitoring", "stream"]),
    "reprocess": (None, ["index_silver_changes", "rebuild_gold", "rebuild_silver", "refresh_warehouse_silver",
                         "reprocess_arguments"], 2,
                  ["gold", "lakehouse", "spark"]),
}


@pytest.fixture(scope="module")
def report(airflow_home):  # noqa: F811
    return dag_report(airflow_env(airflow_home))


def test_every_dag_imports_with_its_schedule_retries_timeouts_alerts_tags_and_docs(report):
    assert report["import_errors"] == {}
    dags = {dag["dag_id"]: dag for dag in report["dags"]}
    assert sorted(dags) == sorted(EXPECTED_DAGS)
    for dag_id, (schedule, task_ids, retries, tags) in EXPECTED_DAGS.items():
        dag = dags[dag_id]
        assert dag["task_ids"] == task_ids, dag_id
        assert dag["tags"] == tags, dag_id
        assert (dag["max_active_runs"], dag["catchup"], dag["has_cycle"], dag["doc_md"]) == (1, False, False, True)
        assert dag["owners"] == ["data-platform"], dag_id
        assert dag["dagrun_timeout_seconds"] is not None, dag_id
        if schedule is not None:
            assert dag["schedule"] == schedule, dag_id
        for task_id, task in dag["tasks"].items():
            assert task["retries"] == retries, (dag_id, task_id)
            assert task["execution_timeout_seconds"] is not None, (dag_id, task_id)
            # Every task's failure posts the Slack alert.
            assert task["on_failure_callback"] == [ALERT], (dag_id, task_id)
    assert dags["historical_backfill"]["schedule"] is None and dags["reprocess"]["schedule"] is None
    # Reprocess and Gold: Silver's changes indexed, then the warehouse's view of Silver, then Gold (what changed).
    rebuild = dags["reprocess"]["tasks"]
    assert [rebuild[task]["upstream"] for task in ("rebuild_silver", "index_silver_changes",
                                                   "refresh_warehouse_silver", "rebuild_gold")] == [
        ["reprocess_arguments"], ["rebuild_silver"], ["index_silver_changes"], ["refresh_warehouse_silver"]]
    gold = dags["gold_dbt"]["tasks"]
    assert [gold[task]["upstream"] for task in ("index_silver_changes", "refresh_warehouse_silver", "dbt_build")] == [
        [], ["index_silver_changes"], ["refresh_warehouse_silver"]]
    assert rebuild["rebuild_silver"]["outlets"] == ["silver_quotes", "silver_trades"]
    # Gold: data-aware (Silver changed) or every 30 minutes.
    assert sorted(dags["gold_dbt"]["schedule_assets"]) == ["silver_bars", "silver_trades", "warehouse_silver"]
    assert "7,37 * * * *" in dags["gold_dbt"]["timetable"]
    # Dependencies: snowflake refresh only after the target check; maintenance runs reconcile, retention, vacuum.
    assert dags["snowflake_refresh"]["tasks"]["refresh_external_tables"]["upstream"] == ["warehouse_is_snowflake"]
    maintenance = dags["lakehouse_maintenance"]["tasks"]
    assert (maintenance["retention"]["upstream"], maintenance["vacuum"]["upstream"]) == (["reconcile"], ["retention"])
    assert dags["historical_backfill"]["tasks"]["backfill"]["upstream"] == ["backfill_arguments"]
    # Gold's success notice only after the build succeeded.
    assert dags["gold_dbt"]["tasks"]["gold_summary_notice"]["upstream"] == ["dbt_build"]
    # Tasks that change Silver announce it, which is what schedules gold_dbt.
    assert dags["lakehouse_maintenance"]["tasks"]["reconcile"]["outlets"] == ["silver_quotes", "silver_trades"]
    assert "silver_trades" in dags["lakehouse_compaction"]["tasks"]["compact"]["outlets"]


def file_counts(spark, uri: str) -> Counter:
    """Data files per (date, hour) partition in the table's current version."""
    counts: Counter = Counter()
    for path in spark.read.format("delta").load(uri).inputFiles():
        match = re.search(r"/date=(\d{4}-\d{2}-\d{2})/hour=(\d{2})/", path)
        counts[(match.group(1), match.group(2))] += 1
    return counts


def dags_test(dag_id: str, env: dict[str, str]) -> str:
    result = airflow(["dags", "test", dag_id], env, timeout=1200)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    assert re.search(rf"DagRun Finished: dag_id={dag_id},[^\n]* state=success,", output), output[-6000:]
    return output


def task_states(dag_id: str, dags_test_output: str, env: dict[str, str]) -> dict[str, str]:
    run_id = re.search(rf"DagRun Finished: dag_id={dag_id},[^\n]*? run_id=([^,]+),", dags_test_output).group(1)
    result = airflow(["tasks", "states-for-dag-run", dag_id, run_id, "-o", "json"], env)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = json.loads(result.stdout.strip().splitlines()[-1])
    return {row["task_id"]: row["state"] for row in rows}


def test_snowflake_refresh_is_skipped_cleanly_on_the_local_warehouse(airflow_home):  # noqa: F811
    env = airflow_env(airflow_home)
    output = dags_test("snowflake_refresh", env)
    assert task_states("snowflake_refresh", output, env) == {"warehouse_is_snowflake": "success",
                                                             "refresh_external_tables": "skipped"}


# Stream, two `airflow dags test` runs (each a spark-submit or a dbt build): longer than the suite's default limit.
@pytest.mark.timeout(1800)
def test_compaction_and_gold_dags_run_end_to_end_on_the_local_stack(spark, isolated, airflow_home,  # noqa: F811
                                                                    tmp_path):
    settings, env = isolated
    # Trades three hours ago (a closed hour), several micro-batches so the hour holds several small files.
    start = (datetime.now(timezone.utc) - timedelta(hours=3)).replace(minute=5, second=0, microsecond=0)
    run_producer(env, producer_args(3000, seed=31, start_time=start.strftime("%Y-%m-%dT%H:%M:%S"),
                                    duplicate_ratio=0.02), tmp_path)
    stream_env = {**env, "STOCKLAKE_STREAM_MAX_OFFSETS_PER_TRIGGER": "1000"}
    run_stream_in_session(spark, stream_env, tmp_path / "stream.log")

    silver_uri, bronze_uri = settings.lake_uri("silver/trades"), settings.lake_uri("bronze/trades")
    closed_hour = (start.strftime("%Y-%m-%d"), start.strftime("%H"))
    silver_before = file_counts(spark, silver_uri)
    assert silver_before[closed_hour] >= 2, silver_before
    bronze_files_before = set(spark.read.format("delta").load(bronze_uri).inputFiles())
    silver_ids_before = sorted(r.event_id for r in spark.read.format("delta").load(silver_uri)
                               .select("event_id").collect())

    warehouse = tmp_path / "gold.duckdb"
    dag_env = airflow_env(airflow_home, {**env, "DBT_DUCKDB_PATH": str(warehouse)})
    dags_test("lakehouse_compaction", dag_env)

    # The closed Silver hour is one file now, with every row. Bronze is partitioned by Kafka time: its rows arrived
    # minutes ago, in an hour that is still open (or within its grace period), which compaction never touches.
    silver_after = file_counts(spark, silver_uri)
    assert silver_after[closed_hour] == 1, silver_after
    assert sorted(r.event_id for r in spark.read.format("delta").load(silver_uri)
                  .select("event_id").collect()) == silver_ids_before
    assert set(spark.read.format("delta").load(bronze_uri).inputFiles()) == bronze_files_before

    dags_test("gold_dbt", dag_env)
    with duckdb.connect(str(warehouse), read_only=True) as con:
        (trades, symbols), = con.execute(
            "select sum(trade_count), count(distinct symbol) from fct_candles_1m").fetchall()
    assert trades == len(silver_ids_before)
    assert symbols == len(settings.simulator.symbols)
