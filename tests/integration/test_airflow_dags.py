"""The Airflow DAGs: integrity (every DAG imports, its schedule, retries, timeouts, alerts, tags, docs), and every DAG
run once through Airflow, in one Airflow process (airflow/run_dags.py), in the order operations run them, on the
local Kafka + MinIO + Spark + dbt, with Snowflake's statements going through the Snowflake provider to a stand-in
(tests/standins/snowflake_server.py).

Airflow lives in its own environment (.venv-airflow); tests/integration/airflow_harness.py runs it as subprocesses.
"""
from __future__ import annotations

import json
import re
from collections import Counter
from datetime import datetime, timedelta, timezone

import duckdb
import pytest

from delta.tables import DeltaTable
from pyspark.sql import functions as F

from tests.integration.airflow_harness import REPO, airflow_env, airflow_home, dag_report, run_dags  # noqa: F401
from producer.simulator import VALID_KINDS
from tests.integration.stack import expected_records, producer_args, run_producer, run_stream_in_session
from tests.standins.slack_webhook_server import SlackWebhookStandIn
from tests.standins.snowflake_server import SnowflakeStandIn

pytestmark = pytest.mark.integration

ALERT = "stocklake_airflow.alerts.slack_failure_alert"
# dag id -> (schedule, task ids, retries of every task, tags)
EXPECTED_DAGS = {
    "lakehouse_compaction": ("20 * * * *", ["compact"], 2, ["lakehouse", "maintenance", "spark"]),
    "lakehouse_maintenance": ("40 2 * * *", ["reconcile", "retention", "vacuum"], 2,
                              ["lakehouse", "maintenance", "spark"]),
    "snowflake_refresh": ("*/15 * * * *", ["refresh_external_tables"], 2, ["snowflake", "warehouse"]),
    "gold_dbt": (None, ["dbt_build", "gold_summary_notice", "grant_bi_select", "index_silver_changes",
                        "refresh_warehouse_silver"], 2, ["dbt", "gold", "warehouse"]),
    "data_quality": ("25 * * * *", ["check_silver_trades"], 0, ["quality", "silver"]),
    "historical_backfill": (None, ["backfill", "backfill_arguments"], 2, ["backfill", "lakehouse", "spark"]),
    "stream_watchdog": ("*/5 * * * *", ["check_silver_freshness", "check_stream"], 0, ["monitoring", "stream"]),
    "reprocess": (None, ["grant_bi_select", "index_silver_changes", "rebuild_gold", "rebuild_silver",
                         "refresh_warehouse_silver", "reprocess_arguments"], 2,
                  ["gold", "lakehouse", "spark"]),
}
# The Gold marts' tables on Snowflake, which the BI role may read: those dbt builds with the settings (here
# warehouse.quotes_enabled is off, its default: no FCT_LATEST_QUOTES).
GOLD_MARTS = ("DIM_DATE", "DIM_SYMBOL", "FCT_CANDLES_1D", "FCT_CANDLES_1H", "FCT_CANDLES_1M", "FCT_DAILY_ANALYTICS",
              "FCT_DAILY_BARS", "FCT_MOVING_AVERAGES", "FCT_RETURN_CORRELATIONS", "FCT_SESSION_CANDLES_1D",
              "FCT_SYMBOL_KPI", "FCT_TOP_MOVERS", "FCT_TREEMAP", "FCT_VOLATILITY")


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
    # The warehouse refresh is skipped on the local target, and the Gold build still runs after it (never after a
    # failure); the BI grants follow the build.
    for dag_id, build in (("gold_dbt", "dbt_build"), ("reprocess", "rebuild_gold")):
        tasks = dags[dag_id]["tasks"]
        assert (tasks[build]["trigger_rule"], tasks["grant_bi_select"]["upstream"]) == ("none_failed", [build])
        assert tasks["refresh_warehouse_silver"]["operator"] == "_PythonDecoratedOperator"
    # Maintenance runs reconcile, retention, vacuum.
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


SAMPLE_BARS = REPO / "producer" / "samples" / "daily-bars-sample.csv"


def only_states(runs: list[dict]) -> list[tuple[str, str, dict[str, str]]]:
    return [(run["dag_id"], run["state"], run["tasks"]) for run in runs]


def silver_ids(spark, uri: str) -> list[str]:
    return sorted(r.event_id for r in spark.read.format("delta").load(uri).select("event_id").collect())


def gold_trades(warehouse) -> tuple[int, int]:
    with duckdb.connect(str(warehouse), read_only=True) as con:
        (trades, symbols), = con.execute(
            "select sum(trade_count), count(distinct symbol) from fct_candles_1m").fetchall()
    return trades, symbols


def sample_bars(first: str, last: str) -> int:
    return sum(1 for line in SAMPLE_BARS.read_text().splitlines()[1:] if first <= line.split(",")[1] <= last)


def operations(spark, uri: str, since: int) -> list[tuple[str, dict]]:
    """The table's commits after version `since`, oldest first: (operation, its metrics)."""
    rows = spark.sql(f"DESCRIBE HISTORY delta.`{uri}`").where(F.col("version") > since).orderBy("version").collect()
    return [(row.operation, dict(row.operationMetrics or {})) for row in rows]


def latest_version(spark, uri: str) -> int:
    return DeltaTable.forPath(spark, uri).history(1).collect()[0].version


# The stream, then every DAG in the order operations run them, in one Airflow process: longer than the default limit.
@pytest.mark.timeout(2400)
def test_every_dag_runs_through_airflow_in_one_process_on_the_local_stack(spark, isolated, airflow_home,  # noqa: F811
                                                                          tmp_path):
    settings, env = isolated
    # Trades three hours ago (a closed hour), several micro-batches so the hour holds several small files; some
    # arrive late (stamped half an hour back), and those the stream's watermark drops stay in Bronze only.
    start = (datetime.now(timezone.utc) - timedelta(hours=3)).replace(minute=5, second=0, microsecond=0)
    args = producer_args(2000, seed=31, start_time=start.strftime("%Y-%m-%dT%H:%M:%S"), duplicate_ratio=0.02,
                         late_ratio=0.02)
    run_producer(env, args, tmp_path)
    valid_ids = sorted({r.event_id for r in expected_records(env, args) if r.kind in VALID_KINDS})
    # Both entities' queries, as production runs them (the watchdog checks every query); no quotes were published.
    run_stream_in_session(spark, {**env, "STOCKLAKE_STREAM_MAX_OFFSETS_PER_TRIGGER": "700"}, tmp_path / "stream.log",
                          entities=("trades", "quotes"))
    silver_uri, bronze_uri = settings.lake_uri("silver/trades"), settings.lake_uri("bronze/trades")
    # Both hours with trades (the late ones' too) are closed, and the stream's batches left several files in each.
    small_files = file_counts(spark, silver_uri)
    dropped_late = len(valid_ids) - len(silver_ids(spark, silver_uri))
    assert len(small_files) == 2 and min(small_files.values()) >= 2 and dropped_late > 0
    silver_version, bronze_version = latest_version(spark, silver_uri), latest_version(spark, bronze_uri)
    day = start.strftime("%Y-%m-%d")

    warehouse = tmp_path / "gold.duckdb"
    with SnowflakeStandIn(tmp_path / "snowflake") as snowflake, SlackWebhookStandIn() as slack:
        dag_env = airflow_env(airflow_home, {**env, "DBT_DUCKDB_PATH": str(warehouse), "AIRFLOW_CONN_SLACK_ALERTS":
                                             json.dumps({"conn_type": "slackwebhook", "password": slack.token,
                                                         "host": slack.base_url})})
        on_snowflake = {"STOCKLAKE_WAREHOUSE_TARGET": "snowflake", "SNOWFLAKE_WAREHOUSE": "etl_wh",
                        "SNOWFLAKE_BI_ROLE": "stocklake_bi", "REQUESTS_CA_BUNDLE": str(snowflake.ca_bundle),
                        "AIRFLOW_CONN_SNOWFLAKE_DEFAULT": json.dumps(snowflake.airflow_connection())}
        runs, output = run_dags([
            # Minutes after the stream: it is healthy; Silver's newest trade is three hours old by construction.
            {"dag_id": "stream_watchdog", "env": {"STOCKLAKE_WATCHDOG_MAX_SILVER_TRADE_AGE_SECONDS": "86400"}},
            {"dag_id": "data_quality"},
            {"dag_id": "lakehouse_compaction"},
            {"dag_id": "snowflake_refresh"},
            {"dag_id": "gold_dbt"},
            {"dag_id": "historical_backfill",
             "conf": {"start": "2026-01-05", "end": "2026-01-07", "source": "file", "file": str(SAMPLE_BARS),
                      "symbols": ""}},
            # Production's Snowflake, for the provider's two tasks: the refresh DAG, and Gold's refresh and grants.
            {"dag_id": "snowflake_refresh", "env": on_snowflake},
            {"dag_id": "gold_dbt", "tasks": ["refresh_warehouse_silver", "grant_bi_select"], "env": on_snowflake},
            {"dag_id": "lakehouse_maintenance"},
            {"dag_id": "reprocess", "conf": {"from_date": day, "to_date": day, "entity": "trades"}},
        ], dag_env, tmp_path)
        received, posted = snowflake.statements(), slack.messages()

    assert only_states(runs) == [
        ("stream_watchdog", "success", {"check_stream": "success", "check_silver_freshness": "success"}),
        ("data_quality", "success", {"check_silver_trades": "success"}),
        ("lakehouse_compaction", "success", {"compact": "success"}),
        ("snowflake_refresh", "success", {"refresh_external_tables": "skipped"}),
        ("gold_dbt", "success", {"index_silver_changes": "success", "refresh_warehouse_silver": "skipped",
                                 "dbt_build": "success", "grant_bi_select": "skipped",
                                 "gold_summary_notice": "success"}),
        ("historical_backfill", "success", {"backfill_arguments": "success", "backfill": "success"}),
        ("snowflake_refresh", "success", {"refresh_external_tables": "success"}),
        ("gold_dbt", "success", {"refresh_warehouse_silver": "success", "grant_bi_select": "success"}),
        ("lakehouse_maintenance", "success", {"reconcile": "success", "retention": "success", "vacuum": "success"}),
        ("reprocess", "success", {"reprocess_arguments": "success", "rebuild_silver": "success",
                                  "index_silver_changes": "success", "refresh_warehouse_silver": "skipped",
                                  "rebuild_gold": "success", "grant_bi_select": "skipped"}),
    ], output[-6000:]

    # Silver's commits, in order: compaction rewrote each closed hour's small files into one; reconcile inserted the
    # late rows from Bronze; vacuum removed nothing (no file is old enough); reprocess replaced the day. Bronze is
    # partitioned by Kafka time: its rows arrived minutes ago, in an hour that is still open (or within its grace
    # period), which compaction never touches.
    silver_ops = operations(spark, silver_uri, silver_version)
    assert [op for op, _ in silver_ops] == ["OPTIMIZE", "OPTIMIZE", "MERGE", "VACUUM START", "VACUUM END",
                                            "WRITE"], silver_ops
    assert sorted((int(metrics["numRemovedFiles"]), metrics["numAddedFiles"]) for _, metrics in silver_ops[:2]) == \
        sorted((files, "1") for files in small_files.values())
    assert silver_ops[2][1]["numTargetRowsInserted"] == str(dropped_late)
    assert silver_ops[4][1]["numDeletedFiles"] == "0", silver_ops[4]
    assert "OPTIMIZE" not in [op for op, _ in operations(spark, bronze_uri, bronze_version)]
    assert silver_ids(spark, silver_uri) == valid_ids
    # Gold on DuckDB, rebuilt by reprocess from what changed: every Silver trade in the candles.
    assert gold_trades(warehouse) == (len(valid_ids), len(settings.simulator.symbols))
    # Slack got one message: the first Gold build's summary (before reconcile), no failure alert.
    (notice,) = posted
    summary = re.fullmatch(r"Gold build ok: 1m candles [\d,]+ rows, 1h [\d,]+, 1d [\d,]+ \(([\d,]+) trades\); "
                           r"newest trade .* UTC \(.*\)", notice)
    assert summary and int(summary.group(1).replace(",", "")) == len(valid_ids) - dropped_late, notice
    assert slack.token not in output
    # The backfill: the sample's bars of those three days in silver/bars.
    assert spark.read.format("delta").load(settings.lake_uri("silver/bars")).count() == sample_bars(
        "2026-01-05", "2026-01-07")
    # Snowflake received, through the provider, the refresh of each Silver table (the change index first), then
    # Gold's refresh and SELECT on each Gold mart for the BI role; no task log shows the connection's password.
    refresh = [f'ALTER EXTERNAL TABLE "STOCKLAKE"."SILVER"."{table}" REFRESH'
               for table in ("TRADES_CHANGES", "TRADES", "QUOTES")]
    grants = [f'GRANT SELECT ON TABLE "STOCKLAKE"."GOLD"."{mart}" TO ROLE "STOCKLAKE_BI"' for mart in GOLD_MARTS]
    assert received[:3] == refresh
    # Gold's two tasks ran alone here (no edge between them), each in its own order.
    assert ([sql for sql in received[3:] if sql.startswith("ALTER")], [sql for sql in received[3:] if sql.startswith(
        "GRANT")]) == (refresh, grants)
    assert snowflake.airflow_connection()["password"] not in output
