"""Shared fixtures: one local SparkSession for the run, and an isolated namespace on the real local stack."""
from __future__ import annotations

import os
import shutil
import sys
import uuid
from pathlib import Path

import pytest

from conf.settings import load_settings
from tests import durations

# pyspark 4.2's Spark Connect package (imported by Great Expectations) takes a __main__ without __spec__ or __file__
# for its own doctest runner and exits the process when Connect's extras are missing. pytest-xdist's workers run
# with exactly such a __main__; give it the file name a normal run has.
if getattr(sys.modules["__main__"], "__spec__", None) is None and not hasattr(sys.modules["__main__"], "__file__"):
    sys.modules["__main__"].__file__ = sys.argv[0] or "pytest"

# Every JVM the tests start (spark-submit, Airflow's tasks, the cluster's executors) compiles with C1 only: such a
# JVM lives for seconds to a minute on small data, where C2's compile work never pays back. Measured on the 2-core
# machine: a spark-submit stream run of 3,000 records 57 -> 36 CPU-seconds. One compiler thread (CICompilerCount=1)
# compiles less of what a short JVM queues: the same stream run 47.7 -> 44.5 CPU-seconds (AMD EPYC, mean of 3).
# Production JVMs (make demo, bench, Airflow) keep conf/spark as it is.
TEST_JVM_OPTIONS = "-XX:TieredStopAtLevel=1 -XX:CICompilerCount=1"
# The warm session (the `spark` fixture) is the exception: it lives through the whole run, one per worker, and does
# half of the run's CPU work; C1-only was cheaper for its first minutes (the shared lake's tests 164 -> 136
# CPU-seconds) but HotSpot's default tiered C1 + C2 pays back over the run: a fresh clone's pytest 21 min 0 s ->
# 18 min 15 s, the files that run in the session 16-26% less CPU, the spark-submit ones unchanged.
WARM_SESSION_JVM_OPTIONS = "-XX:+TieredCompilation"
TEST_CONF_SUFFIX = "-tests"


def use_test_spark_conf() -> None:
    """Point SPARK_CONF_DIR at a copy of the stack's (jars, project JVM options) that adds TEST_JVM_OPTIONS, for
    this process and every process it starts (pytest-xdist's workers included)."""
    source = os.environ.get("SPARK_CONF_DIR")
    if not source or source.endswith(TEST_CONF_SUFFIX) or not Path(source, "spark-defaults.conf").is_file():
        return
    dest = Path(source + TEST_CONF_SUFFIX)
    staging = Path(f"{dest}.{os.getpid()}")
    shutil.copytree(source, staging, dirs_exist_ok=True)
    with (staging / "spark-defaults.conf").open("a") as defaults:
        defaults.write(f"\n# tests/conftest.py: C1-only JIT for the tests' short-lived JVMs\n"
                       f"spark.driver.extraJavaOptions {TEST_JVM_OPTIONS}\n"
                       f"spark.executor.extraJavaOptions {TEST_JVM_OPTIONS}\n")
    shutil.rmtree(dest, ignore_errors=True)
    staging.rename(dest)
    os.environ["SPARK_CONF_DIR"] = str(dest)


# Delta rebuilds a table's state from its log in this many tasks each time a new version is read, and every task
# generates code for the wide AddFile encoder: a test's tables hold a few dozen files, for which one task is enough.
# In a JFR profile of the warm session, generating those encoders' code was a quarter of its CPU; with one task,
# test_backfill.py + test_maintenance_jobs.py take 3.9 instead of 4.9 CPU-minutes (mean of 2, interleaved).
# Production keeps spark.delta_snapshot_partitions from conf/pipeline.yaml.
TEST_SETTINGS = {"STOCKLAKE_SPARK_DELTA_SNAPSHOT_PARTITIONS": "1"}


def use_test_settings() -> None:
    """Settings overrides for every process the tests start (unless the developer's environment sets them)."""
    for name, value in TEST_SETTINGS.items():
        os.environ.setdefault(name, value)


def pytest_configure(config) -> None:
    if not hasattr(config, "workerinput"):  # workers inherit the controller's environment
        use_test_spark_conf()
        use_test_settings()
    durations.pytest_configure(config)


# pytest-xdist (make test: -n, --dist loadgroup): tests that use one of these shared fixtures form a load group,
# which runs on one worker, so the fixture is built once per run.
LOAD_GROUPS = {"lake": "lake", "gold_warehouse": "lake", "secured_stream": "secured", "airflow_home": "airflow",
               "fault_stack": "faults"}
# The long chains start first, longest first (make test, 2 cores; .lake/test-reports/durations.txt of any run shows
# where the time goes), so that none of them starts last and keeps the run waiting; the rest follows in file order.
START_FIRST = ("tests/integration/test_faults.py", "tests/integration/test_airflow_dags.py",
               "tests/integration/test_airflow_alerts.py", "tests/integration/test_dashboard_browser.py",
               "tests/integration/test_spark_cluster.py", "tests/integration/test_secrets_not_logged.py",
               "tests/integration/test_kafka_sasl.py")


def module_of(item) -> str:
    """The test's file, as its node id names it (tests/.../test_x.py)."""
    return item.nodeid.split("::", 1)[0]


def load_group(item) -> str | None:
    """The load group of a test's session fixtures (LOAD_GROUPS), if it uses one."""
    groups = {LOAD_GROUPS[name] for name in getattr(item, "fixturenames", ()) if name in LOAD_GROUPS}
    assert len(groups) <= 1, f"{item.nodeid} uses fixtures of two load groups: {sorted(groups)}"
    return groups.pop() if groups else None


def uses_module_fixture(item) -> bool:
    """Whether the test uses a fixture built once per module or class (pytest builds it again on every worker that
    runs one of the module's tests)."""
    definitions = getattr(getattr(item, "_fixtureinfo", None), "name2fixturedefs", {})
    return any(defs and defs[-1].scope in ("module", "class") for defs in definitions.values())


def load_groups(items) -> dict[str, str]:
    """node id -> load group: a session fixture's group (LOAD_GROUPS); and a module whose tests share a module
    fixture runs on one worker too, in the group of its tests' session fixture if they have one, else its own."""
    groups = {item.nodeid: load_group(item) for item in items}
    by_module: dict[str, list] = {}
    for item in items:
        by_module.setdefault(module_of(item), []).append(item)
    for module, module_items in by_module.items():
        if not any(uses_module_fixture(item) for item in module_items):
            continue
        session_groups = {groups[item.nodeid] for item in module_items} - {None}
        assert len(session_groups) <= 1, f"{module} spans the load groups {sorted(session_groups)}"
        group = next(iter(session_groups), module)
        for item in module_items:
            groups[item.nodeid] = group
    return {nodeid: group for nodeid, group in groups.items() if group}


# tryfirst: pytest-xdist's worker reads the xdist_group markers in its own pytest_collection_modifyitems (it adds
# "@group" to the node id, which is what --dist loadgroup schedules by); it is registered after this conftest, so
# pluggy would call it first, before the markers exist, and every worker would build every shared fixture itself.
@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items) -> None:
    groups = load_groups(items)
    for item in items:
        if item.nodeid in groups:
            item.add_marker(pytest.mark.xdist_group(groups[item.nodeid]))
    rank = {path: index for index, path in enumerate(START_FIRST)}
    items.sort(key=lambda item: rank.get(module_of(item), len(rank)))  # stable: file order kept


@pytest.fixture(scope="session")
def spark():
    """A local SparkSession with Delta and S3A on the local MinIO, as the jobs build it; the S3A keys only when AWS_*
    are set (integration tests), so the unit tests' pure transforms and local tables need no credentials."""
    from spark_jobs.lib.session import build_spark

    session = build_spark("stocklake-tests", load_settings(), {
        "spark.master": "local[2]",
        "spark.ui.enabled": "false",
        "spark.sql.shuffle.partitions": "2",
        "spark.driver.extraJavaOptions": WARM_SESSION_JVM_OPTIONS,  # replaces TEST_JVM_OPTIONS' C1-only
    }, require_credentials=False)
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


@pytest.fixture(scope="session")
def run_id() -> str:
    return uuid.uuid4().hex[:8]


def namespace_env(run_id: str, name: str) -> dict[str, str]:
    """Setting overrides that give a test its own topics, bucket and so its own tables and checkpoints."""
    prefix = f"test-{run_id}-{name}"
    return {
        "STOCKLAKE_KAFKA_TRADES_TOPIC": f"{prefix}.trades",
        "STOCKLAKE_KAFKA_QUOTES_TOPIC": f"{prefix}.quotes",
        "STOCKLAKE_KAFKA_DLQ_TOPIC": f"{prefix}.dlq",
        "STOCKLAKE_KAFKA_HEARTBEATS_TOPIC": f"{prefix}.heartbeats",
        "STOCKLAKE_LAKE_BUCKET": prefix[:63],
    }


@pytest.fixture
def isolated(run_id, request, monkeypatch):
    """Fresh topics and bucket on the running Kafka and MinIO for one test; settings point at them."""
    return isolate(run_id, request, monkeypatch)


def isolate(run_id, request, monkeypatch, stack: dict[str, str] | None = None):
    """The test's own topics and bucket, created on the stack `stack` points at (settings overrides; the main one
    when None), set in the environment for the test: (settings, environment)."""
    from tests.integration.stack import create_namespace

    env = {**(stack or {}), **namespace_env(run_id, request.node.name.replace("_", "-")[:20].strip("-").lower())}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    settings = load_settings()
    create_namespace(settings)
    return settings, {**os.environ, **env}
