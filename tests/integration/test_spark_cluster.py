"""The streaming job and compaction submitted to a real Spark standalone cluster (scripts/spark_cluster.py).

The cluster runs on free ports with its own runtime folder; its daemons get neither the lake's credentials nor
this clone's PYTHONPATH (spark_cluster.daemon_environment), so a job that passes here ships what its executors
need, as it must on a cluster of other machines. Every task of both applications must have run on the worker's
executor (their event logs say where each task ran), with the same exactly-once results as in local mode
(test_pipeline.py), and the secret key must show up in no log, event log or daemon state.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import urllib.request
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.integration.stack import (REPO, SPARK_SUBMIT, distinct_free_ports, expected_records, producer_args,
                                     run_producer, run_stream_available_now)

pytestmark = pytest.mark.integration

CLUSTER_SCRIPT = REPO / "scripts" / "spark_cluster.py"
WORKER_CORES = 2
SILVER_HOUR = ("2026-01-05", "14")      # the simulator's clock starts at 14:30
NOW = "2026-01-05T15:20:00Z"            # hour 14 closed at 15:15 (maintenance.closed_hour_grace_minutes)


@dataclass(frozen=True)
class Cluster:
    url: str
    webui_port: int
    worker_webui_port: int
    home: Path                          # <runtime>/spark-cluster: logs, pids, the worker's work folder


def cluster_script(env: dict[str, str], command: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(CLUSTER_SCRIPT), command], env=env, cwd=REPO, capture_output=True,
                          text=True, timeout=300)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    runtime = tmp_path_factory.mktemp("spark-cluster-runtime")
    master_port, webui_port, worker_webui_port = distinct_free_ports(3)
    env = {**os.environ, "STOCKLAKE_HOME": str(runtime),
           "STOCKLAKE_SERVICES_SPARK_MASTER_PORT": str(master_port),
           "STOCKLAKE_SERVICES_SPARK_MASTER_WEBUI_PORT": str(webui_port),
           "STOCKLAKE_SERVICES_SPARK_WORKER_WEBUI_PORT": str(worker_webui_port),
           "STOCKLAKE_SERVICES_SPARK_WORKER_CORES": str(WORKER_CORES),
           "STOCKLAKE_SERVICES_SPARK_WORKER_MEMORY": "2g"}
    try:
        started = cluster_script(env, "up")
        assert started.returncode == 0, started.stdout + started.stderr
        yield Cluster(f"spark://127.0.0.1:{master_port}", webui_port, worker_webui_port, runtime / "spark-cluster")
    finally:
        stopped = cluster_script(env, "down")
        # Each application's folder holds a copy of every jar the job shipped (~550 MB); the logs stay.
        shutil.rmtree(runtime / "spark-cluster" / "work", ignore_errors=True)
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    assert cluster_script(env, "status").returncode == 1  # both daemons gone


def web_json(port: int) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/", timeout=10) as response:  # noqa: S310 - our UI
        return json.load(response)


# Physical plan nodes that start Python workers on the executors (UDFs, pandas/arrow functions, RDD lambdas).
PYTHON_PLAN_NODE = re.compile(r"\b\w*(?:EvalPython|InPandas|InArrow|PythonUDF|PythonUDTF)\w*\b")


def event_log_apps(folder: Path) -> dict[str, dict]:
    """Per application in the event logs (uncompressed, not rolled): its name, executors and where tasks ran."""
    apps = {}
    for path in sorted(folder.iterdir()):
        if path.name.startswith("."):
            continue  # the local file system's checksum files
        app = {"name": None, "executors": {}, "task_executors": Counter(), "plans": 0, "python_plan_nodes": set()}
        for line in path.read_text().splitlines():
            event = json.loads(line)
            kind = event["Event"]
            if kind == "SparkListenerApplicationStart":
                app["name"], app_id = event["App Name"], event["App ID"]
            elif kind == "SparkListenerExecutorAdded":
                info = event["Executor Info"]
                app["executors"][event["Executor ID"]] = (info["Host"], info["Total Cores"])
            elif kind == "SparkListenerTaskEnd":
                app["task_executors"][event["Task Info"]["Executor ID"]] += 1
            elif kind.endswith(("SparkListenerSQLExecutionStart", "SparkListenerSQLAdaptiveExecutionUpdate")):
                app["plans"] += 1
                app["python_plan_nodes"] |= set(PYTHON_PLAN_NODE.findall(event["physicalPlanDescription"]))
        apps[app_id] = app
    return apps


def event_log_args(folder: Path) -> list[str]:
    return ["--conf", "spark.eventLog.enabled=true", "--conf", f"spark.eventLog.dir={folder.as_uri()}",
            "--conf", "spark.eventLog.compress=false", "--conf", "spark.eventLog.rolling.enabled=false"]


def table(spark, settings, layer: str):
    return spark.read.format("delta").load(settings.lake_uri(f"{layer}/trades"))


def silver_rows(spark, settings) -> Counter:
    """Every Silver row, as canonical JSON (rows hold arrays, which are not hashable)."""
    return Counter(json.dumps(row.asDict(recursive=True), sort_keys=True, default=str)
                   for row in table(spark, settings, "silver").collect())


def silver_hour_files(spark, settings) -> set[str]:
    date, hour = SILVER_HOUR
    return set(table(spark, settings, "silver").where(f"date = '{date}' AND hour = '{hour}'").inputFiles())


def test_stream_and_compaction_on_the_cluster_land_every_record_exactly_once(spark, isolated, cluster, tmp_path):
    settings, env = isolated
    events = tmp_path / "event-logs"
    events.mkdir()

    # Duplicates, out-of-order and malformed records (sent raw to the topic), as in local mode.
    args = producer_args(3000, seed=17, start_time="2026-01-05T14:30:00", duplicate_ratio=0.05,
                         out_of_order_ratio=0.05, malformed_ratio=0.02)
    summary = run_producer(env, args, tmp_path)
    records = expected_records(env, args)
    assert summary["sent_trades_topic"] == summary["delivered"] == 3000
    stream_log = tmp_path / "stream.log"
    run_stream_available_now(env, stream_log, master=cluster.url, submit_args=event_log_args(events))

    bronze = table(spark, settings, "bronze")
    assert bronze.count() == 3000
    assert bronze.select("partition", "offset").distinct().count() == 3000
    ids = [row["event_id"] for row in table(spark, settings, "silver").select("event_id").collect()]
    assert len(ids) == len(set(ids)), "an event landed in Silver twice"
    assert set(ids) == {r.event_id for r in records if r.kind != "malformed"}
    quarantined = Counter({row["reason"]: row["count"]
                           for row in table(spark, settings, "quarantine").groupBy("reason").count().collect()})
    assert quarantined == Counter(r.expected_reason for r in records if r.kind == "malformed")
    assert Counter(r.kind for r in records)["duplicate"] == 3000 - len(ids) - sum(quarantined.values())

    # Compaction of Silver's closed hour, on the cluster too: same rows, fewer files.
    rows_before, files_before = silver_rows(spark, settings), silver_hour_files(spark, settings)
    assert len(files_before) >= 2
    report_path, compact_log = tmp_path / "compact.json", tmp_path / "compact.log"
    with compact_log.open("wb") as out:
        compacted = subprocess.run([SPARK_SUBMIT, "--master", cluster.url, "--conf", "spark.ui.enabled=false",
                                    *event_log_args(events), str(REPO / "spark_jobs" / "compact.py"),
                                    "--entity", "trades", "--layer", "silver", "--now", NOW,
                                    "--json", str(report_path)],
                                   env=env, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, timeout=600)
    assert compacted.returncode == 0, compact_log.read_text(errors="replace")[-5000:]
    [silver] = json.loads(report_path.read_text())["tables"]
    assert silver["status"] == "compacted"
    assert [(p["date"], p["hour"], p["status"]) for p in silver["partitions"]] == [(*SILVER_HOUR, "compacted")]
    assert (silver["files_before"], silver["files_after"]) == (len(files_before), 1)
    assert silver_rows(spark, settings) == rows_before
    assert len(rows_before) == len(ids)
    files_after = silver_hour_files(spark, settings)
    assert len(files_after) == 1 and not files_after & files_before

    # Both ran as applications of the cluster, every task on the worker's executor, none in the driver.
    master = web_json(cluster.webui_port)
    completed = {app["id"]: app for app in master["completedapps"]}
    apps = event_log_apps(events)
    assert sorted(app["name"] for app in apps.values()) == ["stocklake-compact", "stocklake-stream"]
    for app_id, app in apps.items():
        assert completed[app_id]["name"] == app["name"]
        assert completed[app_id]["state"] == "FINISHED"
        assert completed[app_id]["cores"] == WORKER_CORES
        # One executor, the worker's (local mode would have only the driver's, id "driver"), and every task on it.
        assert app["executors"] == {"0": ("127.0.0.1", WORKER_CORES)}, app["name"]
        assert set(app["task_executors"]) == {"0"}, f"{app['name']}: tasks ran outside the worker's executor"
        # No Python on the executors: on machines that never saw this clone they could not import spark_jobs.
        assert app["plans"] > 0 and app["python_plan_nodes"] == set(), f"{app['name']}: Python evaluation in a plan"

    # The executors got the credentials from the job, not from their worker, and nothing wrote them down.
    worker_pid = int((cluster.home / "worker.pid").read_text())
    worker_environment = Path(f"/proc/{worker_pid}/environ").read_bytes().split(b"\0")
    secret = os.environ["AWS_SECRET_ACCESS_KEY"]
    assert not [entry for entry in worker_environment if entry.startswith((b"AWS_", b"PYTHONPATH="))]
    logs = [stream_log, compact_log, *events.iterdir(), *(cluster.home / "logs").iterdir(),
            *(cluster.home / "work").glob("app-*/*/std*")]
    assert len([log for log in logs if log.name.startswith("std")]) == 4  # stdout + stderr of two executors
    assert [log for log in logs if secret in log.read_text(errors="replace")] == []
    assert secret not in json.dumps(master) + json.dumps(web_json(cluster.worker_webui_port))
