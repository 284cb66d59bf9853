"""Bad configuration fails at start-up, in seconds, with one line naming the setting and no stack trace.

Each entry point (the producer CLI, the stream job, two batch jobs) runs as the real command with one bad
setting: an unknown STOCKLAKE_* variable, an unknown key in a STOCKLAKE_CONFIG file, a wrong type, an unreachable
broker or object store, missing or wrong S3 credentials, a topic or bucket that does not exist. The Spark jobs run
as `python spark_jobs/<job>.py` (as Airflow's bash tasks may); their checks (conf/preflight.py) come before the
SparkSession, so no JVM starts here. Speed is held by the per-test timeout, well under the clients' own retries
(the producer's delivery timeout is 2 minutes; Spark's Kafka source retries forever).

Everything runs in a namespace of its own (topics and bucket), so a check that stops guarding would write there,
never into the default lake.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from conf.settings import load_settings
from tests.conftest import namespace_env
from tests.integration.stack import REPO, create_namespace

pytestmark = pytest.mark.integration

# Entry point -> (command, the prefix of its one error line).
ENTRY_POINTS = {
    "producer": ([sys.executable, "-m", "producer", "--source", "simulator", "--rate", "100", "--count", "10",
                  "--no-pacing"], "python -m producer: error: configuration: "),
    "stream": ([sys.executable, str(REPO / "spark_jobs" / "stream.py"), "--trigger", "available-now",
                "--entity", "trades"], "stream: configuration error: "),
    "compact": ([sys.executable, str(REPO / "spark_jobs" / "compact.py")], "compact: configuration error: "),
    "reconcile": ([sys.executable, str(REPO / "spark_jobs" / "reconcile.py")], "reconcile: configuration error: "),
}
KAFKA_USERS = {"producer", "stream"}
LAKE_USERS = {"stream", "compact", "reconcile"}
ALL = set(ENTRY_POINTS)

UNSET = None  # a value in a case's environment: remove the variable
# Case -> (environment changes, what the line must start with after the prefix, the entry points it applies to).
# "{config}" stands for an override file the test writes.
CASES = {
    "unknown_env_var": ({"STOCKLAKE_KAFKA_PARTITON": "3"}, "STOCKLAKE_KAFKA_PARTITON: unknown setting", ALL),
    "unknown_yaml_key": ({"STOCKLAKE_CONFIG": "{config}"}, "lake.buckt: unknown setting", ALL),
    "wrong_type": ({"STOCKLAKE_KAFKA_PARTITIONS": "abc"}, "kafka.partitions: expected a whole number", ALL),
    "broker_unreachable": ({"STOCKLAKE_KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1"},
                           "kafka.bootstrap_servers: broker 127.0.0.1:1 unreachable", KAFKA_USERS),
    "topic_missing": ({"STOCKLAKE_KAFKA_TRADES_TOPIC": "no-such-topic-for-bad-config"},
                      "kafka.trades_topic: topic 'no-such-topic-for-bad-config' does not exist", KAFKA_USERS),
    "s3_unreachable": ({"STOCKLAKE_LAKE_S3_ENDPOINT": "http://127.0.0.1:1"},
                       "lake.s3_endpoint: object store http://127.0.0.1:1 unreachable", LAKE_USERS),
    "bucket_missing": ({"STOCKLAKE_LAKE_BUCKET": "no-such-bucket-for-bad-config"},
                       "lake.bucket: bucket 'no-such-bucket-for-bad-config' does not exist", LAKE_USERS),
    "credentials_missing": ({"AWS_ACCESS_KEY_ID": UNSET, "AWS_SECRET_ACCESS_KEY": UNSET},
                            "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY: not set", LAKE_USERS),
    "secret_wrong": ({"AWS_SECRET_ACCESS_KEY": "not-the-secret-0000"},  # pragma: allowlist secret
                     "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY: the object store", LAKE_USERS),
}
MATRIX = [pytest.param(entry, case, id=f"{entry}-{case}")
          for case, (_, _, applies) in CASES.items() for entry in ENTRY_POINTS if entry in applies]


@pytest.fixture(scope="module")
def namespace_environ(run_id, tmp_path_factory) -> dict[str, str]:
    """The environment of every run: a namespace of our own (topics and bucket), and the override file."""
    env = {**os.environ, **namespace_env(run_id, "bad-config")}
    create_namespace(load_settings(env))
    config = tmp_path_factory.mktemp("bad-config") / "override.yaml"
    config.write_text("lake:\n  buckt: typo-of-bucket\n")
    env["BAD_CONFIG_FILE"] = str(config)
    return env


def case_environ(base: dict[str, str], case: str) -> dict[str, str]:
    env = dict(base)
    for name, value in CASES[case][0].items():
        if value is UNSET:
            env.pop(name, None)
        else:
            env[name] = value.replace("{config}", base["BAD_CONFIG_FILE"])
    return env


def meaningful_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.strip()]


@pytest.mark.timeout(45)
@pytest.mark.parametrize("entry, case", MATRIX)
def test_bad_setting_fails_at_start_up_with_one_line(namespace_environ, entry, case, record_property):
    command, prefix = ENTRY_POINTS[entry]
    result = subprocess.run(command, env=case_environ(namespace_environ, case), cwd=REPO, capture_output=True,
                            text=True)
    lines = meaningful_lines(result.stderr)
    record_property("error_line", lines[-1] if lines else "")
    assert result.returncode == 2, (result.returncode, result.stderr[-3000:])
    assert "Traceback" not in result.stderr and "Exception" not in result.stderr, result.stderr[-3000:]
    assert len(lines) == 1, result.stderr  # the one line, nothing around it
    assert lines[0].startswith(prefix + CASES[case][1]), lines[0]
    assert result.stdout == ""


@pytest.mark.timeout(60)
def test_the_producer_needs_no_object_store(namespace_environ, tmp_path: Path):
    """Lake settings are not the producer's: without S3 credentials and with no endpoint it still publishes."""
    env = case_environ(namespace_environ, "credentials_missing")
    env["STOCKLAKE_LAKE_S3_ENDPOINT"] = "http://127.0.0.1:1"
    command, _ = ENTRY_POINTS["producer"]
    result = subprocess.run(command, env=env, cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "delivered: 10" in result.stdout


# Every job file spark-submit or Airflow starts, started as a file from another folder without the checkout on
# PYTHONPATH (as spark-submit on a cluster starts it): its imports resolve and its options parse. Their work is
# tested through their main in the tests' SparkSession; this is what running them as files adds.
JOB_FILES = ["stream.py", "compact.py", "vacuum.py", "retention.py", "reconcile.py", "reprocess.py", "backfill.py",
             "report.py", "data_quality.py", "watchdog.py"]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("job", JOB_FILES)
def test_every_job_file_starts_from_anywhere(job, tmp_path):
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    result = subprocess.run([sys.executable, str(REPO / "spark_jobs" / job), "--help"], env=env, cwd=tmp_path,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.startswith("usage: "), result.stdout[:500]
    assert result.stderr == ""
