"""Silver's change index (spark_jobs/silver_changes.py) on tables Spark writes, on the real MinIO: a Silver table of
an older release gets the change data feed when the stream starts, Spark's compaction indexes nothing, a row
Spark appends is indexed exactly, and the command line says what it did or why it could not."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
from delta.tables import DeltaTable

from conf.contracts.schemas import load_contract
from spark_jobs.lib.delta import storage_options
from spark_jobs.silver_changes import index_changes
from spark_jobs.lib.tables import SILVER_PROPERTIES, ensure_tables
from spark_jobs.lib.transforms import TRADES
from tests.integration.stack import REPO

pytestmark = pytest.mark.integration

COLUMNS = "event_id string, symbol string, trade_ts bigint, date string, hour string"
ROWS = [("e1", "AAPL", 1_795_186_800_000, "2026-11-20", "15"), ("e2", "AAPL", 1_795_186_830_000, "2026-11-20", "15"),
        ("e3", "MSFT", 1_795_186_860_000, "2026-11-20", "15")]


def index(cwd_env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "spark_jobs.silver_changes", *args], env=cwd_env, cwd=REPO,
                          capture_output=True, text=True, timeout=120)


def test_an_old_silver_gets_the_feed_and_compaction_indexes_nothing(spark, isolated, tmp_path):
    settings, env = isolated
    path = settings.lake_uri(TRADES.table("silver"))
    # Silver as a release before the change feed created it: no property, rows already there.
    (DeltaTable.createIfNotExists(spark).location(path).addColumns(spark.createDataFrame([], COLUMNS).schema)
     .partitionedBy("date", "hour").execute())
    spark.createDataFrame(ROWS[:2], COLUMNS).write.format("delta").mode("append").save(path)
    missing = index(env)
    assert (missing.returncode, missing.stdout) == (0, f"silver_changes: {path} versions 0..1: full rebuild "
                                                       "(first run: no index yet)\n"), missing.stderr

    # The stream starting on it turns the feed on, in one metadata commit, once.
    ensure_tables(spark, settings, TRADES, load_contract(TRADES.schema_name))
    table = DeltaTable.forPath(spark, path)
    properties = table.detail().first()["properties"]
    assert {key: properties.get(key) for key in SILVER_PROPERTIES} == SILVER_PROPERTIES
    version = table.history(1).first()["version"]
    ensure_tables(spark, settings, TRADES, load_contract(TRADES.schema_name))
    assert table.history(1).first()["version"] == version

    # The versions the stream wrote before it (its schema evolution among them) have no feed: the index says so and
    # marks everything changed, once.
    upgraded = index_changes(path, storage_options(settings))
    assert upgraded["full_rebuild"].startswith(f"change data feed unreadable for versions 2..{version}: ")
    assert "does not have change data enabled" in upgraded["full_rebuild"]

    # Appends after it are indexed row for row, per (symbol, minute).
    spark.createDataFrame(ROWS[2:], COLUMNS).write.format("delta").mode("append").save(path)
    summary = tmp_path / "changes.json"
    appended = index(env, "--json", str(summary))
    assert appended.returncode == 0, appended.stderr
    result = json.loads(summary.read_text())
    assert {k: result[k] for k in ("status", "buckets", "inserted_rows", "deleted_rows", "full_rebuild")} == {
        "status": "indexed", "buckets": 1, "inserted_rows": 1, "deleted_rows": 0, "full_rebuild": None}

    # Spark's compaction (what compact.py runs: OPTIMIZE, dataChange=false) changes no row: nothing indexed.
    table.optimize().where("date = '2026-11-20' and hour = '15'").executeCompaction()
    assert table.history(1).first()["operation"] == "OPTIMIZE"
    compacted = index_changes(path, storage_options(settings))
    assert (compacted["status"], compacted["from_version"]) == ("no_row_changes", result["silver_version"] + 1)


def test_the_command_line_names_what_it_cannot_do(isolated):
    settings, env = isolated
    no_table = index(env)
    assert no_table.returncode == 1 and no_table.stdout == ""
    assert no_table.stderr.startswith(f"silver_changes: cannot index {settings.lake_uri('silver/trades')}: ")
    bad = index({**env, "STOCKLAKE_KAFKA_PARTITIONS": "many"})
    assert bad.returncode == 2 and bad.stderr.startswith("silver_changes: configuration error: ")
    assert "AWS_SECRET_ACCESS_KEY" not in no_table.stderr + bad.stderr
    assert env["AWS_SECRET_ACCESS_KEY"] not in no_table.stderr + no_table.stdout
