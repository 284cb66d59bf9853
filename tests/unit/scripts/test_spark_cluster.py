"""scripts/spark_cluster.py: its command lines, the daemons' environment, the master's JSON, and the CLI's errors
(the cluster itself runs in tests/integration/test_spark_cluster.py)."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from conf.settings import ConfigError
from scripts import spark_cluster as sc

REPO = Path(__file__).resolve().parents[3]
SERVICES = {"spark_master_port": 17077, "spark_master_webui_port": 18080, "spark_worker_webui_port": 18081,
            "spark_worker_cores": 2, "spark_worker_memory": "3g"}
MASTER_STATE = {
    "url": "spark://127.0.0.1:17077", "status": "ALIVE", "aliveworkers": 1, "cores": 2, "coresused": 2,
    "memory": 3072, "memoryused": 1024,
    "workers": [
        {"id": "worker-old", "host": "127.0.0.1", "webuiaddress": "http://127.0.0.1:18081", "state": "DEAD",
         "cores": 2, "coresused": 0, "memory": 3072, "memoryused": 0},
        {"id": "worker-1", "host": "127.0.0.1", "webuiaddress": "http://127.0.0.1:18081", "state": "ALIVE",
         "cores": 2, "coresused": 2, "memory": 3072, "memoryused": 1024},
        {"id": "worker-other", "host": "127.0.0.1", "webuiaddress": "http://127.0.0.1:28081", "state": "ALIVE",
         "cores": 1, "coresused": 0, "memory": 1024, "memoryused": 0},
    ],
    "activeapps": [{"id": "app-2", "name": "stocklake-stream", "state": "RUNNING", "duration": 1500}],
    "completedapps": [{"id": "app-1", "name": "stocklake-compact", "state": "FINISHED", "duration": 61234}],
}


def test_command_lines_bind_loopback_and_name_the_master():
    spark_class = Path("/spark/bin/spark-class")
    assert sc.master_command(spark_class, 17077, 18080) == [
        "/spark/bin/spark-class", "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1", "--port", "17077",
        "--webui-port", "18080"]
    assert sc.worker_command(spark_class, sc.master_url(27077), 18081, 2, "3g", Path("/rt/spark-cluster/work")) == [
        "/spark/bin/spark-class", "org.apache.spark.deploy.worker.Worker", "--host", "127.0.0.1", "--webui-port",
        "18081", "--cores", "2", "--memory", "3g", "--work-dir", "/rt/spark-cluster/work", "spark://127.0.0.1:27077"]


def test_daemon_options_put_the_marker_first_and_forbid_port_hopping():
    assert sc.daemon_options("-Dstocklake.spark.daemon=/rt/worker", ("spark.worker.cleanup.enabled", "true"),
                             ("spark.worker.cleanup.appDataTtl", 7200)) == (
        "-Dstocklake.spark.daemon=/rt/worker -Dspark.port.maxRetries=0 -Dspark.worker.cleanup.enabled=true "
        "-Dspark.worker.cleanup.appDataTtl=7200")


def test_daemon_environment_drops_credentials_and_the_clones_import_path():
    environ = {"PATH": "/usr/bin", "HOME": "/root", "JAVA_HOME": "/jdk", "PYSPARK_PYTHON": "/venv/bin/python",
               "STOCKLAKE_SERVICES_SPARK_MASTER_PORT": "27077", "AWS_ACCESS_KEY_ID": "lake-1",
               "AWS_SECRET_ACCESS_KEY": "s3cr3t", "AWS_SESSION_TOKEN": "t",  # pragma: allowlist secret
               "KAFKA_SASL_PASSWORD": "p", "FINNHUB_TOKEN": "f",  # pragma: allowlist secret
               "SNOWFLAKE_PRIVATE_KEY_PASSPHRASE": "pp", "SOME_API_KEY": "k",  # pragma: allowlist secret
               "PYTHONPATH": "/work/main", "SPARK_CONF_DIR": "/work/main/.lake/spark-conf",
               "SPARK_HOME": "/opt/other-spark", "SPARK_LOCAL_IP": "10.0.0.5"}
    assert sc.daemon_environment(environ, Path("/venv/pyspark"), Path("/rt/spark-cluster/conf")) == {
        "PATH": "/usr/bin", "HOME": "/root", "JAVA_HOME": "/jdk", "PYSPARK_PYTHON": "/venv/bin/python",
        "STOCKLAKE_SERVICES_SPARK_MASTER_PORT": "27077", "SPARK_HOME": "/venv/pyspark",
        "SPARK_CONF_DIR": "/rt/spark-cluster/conf", "SPARK_LOCAL_IP": "127.0.0.1", "SPARK_DAEMON_MEMORY": "512m"}


def test_alive_worker_is_ours_only_when_alive_at_our_web_ui_port():
    assert sc.alive_worker(MASTER_STATE, 18081)["id"] == "worker-1"
    assert sc.alive_worker(MASTER_STATE, 28081)["id"] == "worker-other"
    assert sc.alive_worker(MASTER_STATE, 38081) is None
    assert sc.alive_worker({"workers": [MASTER_STATE["workers"][0]]}, 18081) is None  # DEAD
    assert sc.alive_worker({}, 18081) is None


def test_describe_master_lists_workers_and_applications():
    assert sc.describe_master(MASTER_STATE) == [
        "master spark://127.0.0.1:17077: ALIVE, 1 worker(s) alive, cores 2/2 used, memory 1024/3072 MiB used",
        "  worker worker-old: DEAD, cores 0/2, memory 0/3072 MiB, UI http://127.0.0.1:18081",
        "  worker worker-1: ALIVE, cores 2/2, memory 1024/3072 MiB, UI http://127.0.0.1:18081",
        "  worker worker-other: ALIVE, cores 0/1, memory 0/1024 MiB, UI http://127.0.0.1:28081",
        "  running app app-2 'stocklake-stream': RUNNING, 1.5s",
        "  completed app app-1 'stocklake-compact': FINISHED, 61.2s",
    ]


def test_check_settings_accepts_the_defaults():
    sc.check_settings(SERVICES)


@pytest.mark.parametrize(("key", "value", "message"), [
    ("spark_master_port", 0, "services.spark_master_port: must be a TCP port (1-65535), got 0"),
    ("spark_worker_webui_port", 70000, "services.spark_worker_webui_port: must be a TCP port (1-65535), got 70000"),
    ("spark_master_webui_port", 17077, "must differ, got [17077, 17077, 18081]"),
    ("spark_worker_cores", 0, "services.spark_worker_cores: must be at least 1, got 0"),
    ("spark_worker_memory", "3", "services.spark_worker_memory: must be a size like 3g or 1500m, got '3'"),
    ("spark_worker_memory", "0g", "services.spark_worker_memory: must be a size like 3g or 1500m, got '0g'"),
    ("spark_worker_memory", "3g\n", "services.spark_worker_memory: must be a size like 3g or 1500m, got '3g\\n'"),
])
def test_check_settings_rejects_bad_values_naming_the_setting(key, value, message):
    with pytest.raises(ConfigError) as error:
        sc.check_settings({**SERVICES, key: value})
    assert message in str(error.value)


# ---------------------------------------------------------------------------------------------- the CLI

def cli(tmp_path: Path, *args: str, **settings: int) -> subprocess.CompletedProcess:
    env = {**os.environ, "STOCKLAKE_HOME": str(tmp_path),
           **{f"STOCKLAKE_SERVICES_{key.upper()}": str(value) for key, value in settings.items()}}
    return subprocess.run([sys.executable, str(REPO / "scripts" / "spark_cluster.py"), *args], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=60)


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def test_cli_usage_and_url(tmp_path):
    assert cli(tmp_path).returncode == 2
    assert cli(tmp_path, "start").returncode == 2
    url = cli(tmp_path, "url", spark_master_port=27077)
    assert (url.returncode, url.stdout) == (0, "spark://127.0.0.1:27077\n")
    bad = cli(tmp_path, "url", spark_worker_cores=0)
    assert (bad.returncode, bad.stderr) == (1, "spark-cluster: error: services.spark_worker_cores: must be at least "
                                               "1, got 0\n")


def test_cli_down_and_status_when_nothing_runs(tmp_path):
    master, webui, worker = free_ports(3)
    ports = {"spark_master_port": master, "spark_master_webui_port": webui, "spark_worker_webui_port": worker}
    down = cli(tmp_path, "down", **ports)
    assert (down.returncode, down.stdout) == (0, "services: spark-worker not running\n"
                                                 "services: spark-master not running\n")
    status = cli(tmp_path, "status", **ports)
    assert (status.returncode, status.stdout) == (1, f"services: spark-master: stopped at 127.0.0.1:{master}\n"
                                                     f"services: spark-worker: stopped at 127.0.0.1:{worker}\n")


@pytest.mark.parametrize("busy", ["spark_master_port", "spark_master_webui_port"])
def test_cli_up_refuses_a_port_in_use_before_starting_anything(tmp_path, busy):
    master, webui, worker = free_ports(3)
    ports = {"spark_master_port": master, "spark_master_webui_port": webui, "spark_worker_webui_port": worker}
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", ports[busy]))
        squatter.listen()
        result = cli(tmp_path, "up", **ports)
    assert result.returncode == 1
    what = "port" if busy == "spark_master_port" else "web UI port"
    assert f"spark-master: {what} {ports[busy]} on 127.0.0.1 is in use by another process" in result.stderr
    assert result.stderr.startswith("spark-cluster: error: ")
    assert not (tmp_path / "spark-cluster" / "master.pid").exists()
