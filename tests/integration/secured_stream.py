"""One stream job run as production runs it, shared by the tests that are about the job's process: spark-submit of
stream.py, long-running (processing-time trigger), reading Kafka through the broker's SASL/SCRAM listener, writing
to MinIO as the least-privilege lake user, serving Prometheus metrics, logging at INFO into files with Spark's
configuration and event log, and stopped with SIGTERM once its metrics count every record.

    test_stream_metrics.py       the endpoint and the metrics table count every record, the stop is clean
    test_kafka_sasl.py           the Kafka source authenticated with SCRAM; exact books; no password printed
    test_minio_lake_user.py      the pipeline ran as the lake user; it reads back what it wrote
    test_secrets_not_logged.py   no secret (the fake ones, the lake user's and root's S3 secrets) in any output

One spark-submit instead of four: each test file asserts its own concern on the same run. The secrets searched
for, and the helpers that search, live here too.

Use: `from tests.integration.secured_stream import secured_stream  # noqa: F401` in the test module.
"""
from __future__ import annotations

import base64
import json
import os
import secrets
import signal
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, quote_plus

import pytest
from prometheus_client.parser import text_string_to_metric_families

from conf.settings import Settings, load_settings
from tests.conftest import namespace_env
from tests.integration.stack import (REPO, TRADES_ONLY, create_namespace, expected_records, free_port, stream_command,
                                     wait_for)

PY = sys.executable
START = "2026-01-05T15:00:00Z"  # the simulator's clock: the trades land in the closed hour 2026-01-05/15
EVENTS = 1000


def _fake(prefix: str, alphabet: str = "abcdefghijklmnopqrstuvwxyz0123456789") -> str:
    return prefix + "".join(secrets.choice(alphabet) for _ in range(24))


# Finnhub's keys are lower-case letters and digits (it goes into the WebSocket URL as is); the others carry the
# characters that URL encoding and base64 change. KAFKA_SASL_PASSWORD is the SCRAM password the run really uses.
FAKE_SECRETS = {
    "FINNHUB_API_KEY": _fake("fhk"),
    "KAFKA_SASL_PASSWORD": _fake("kafka-pw/+=&", "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789/+=&%"),
    "SNOWFLAKE_PASSWORD": _fake("sf-pw'\"/+=", "abcdefghijklmnopqrstuvwxyz0123456789/+=$"),
    "SNOWFLAKE_PRIVATE_KEY_PASSPHRASE": _fake("sf-pass/+", "abcdefghijklmnopqrstuvwxyz0123456789/+="),
}
SLACK_TOKEN = _fake("slk")
SLACK_CONN = json.dumps({"conn_type": "slackwebhook",
                         "password": f"https://hooks.slack.com/services/T0FAKE00/B0FAKE00/{SLACK_TOKEN}"})
# The lake user's secret: the S3 secret the secured run writes with, searched for like the others.
LAKE_USER_SECRET = secrets.token_urlsafe(30)


def secret_values() -> dict[str, str]:
    """Name -> value of every secret searched for (the real S3 secrets included)."""
    values = {**FAKE_SECRETS, "AIRFLOW_CONN_SLACK_ALERTS (webhook token)": SLACK_TOKEN,
              "AWS_SECRET_ACCESS_KEY (lake user)": LAKE_USER_SECRET}
    real = os.environ.get("AWS_SECRET_ACCESS_KEY")
    assert real, "AWS_SECRET_ACCESS_KEY must be set (source .lake/env.sh): the test searches for it"
    values["AWS_SECRET_ACCESS_KEY"] = real
    return values


def base64_cores(value: bytes) -> list[bytes]:
    """Substrings present in any base64 text of data that holds value, one per alignment (offset mod 3)."""
    cores = []
    for shift in range(3):
        encoded = base64.b64encode(b"\0" * shift + value)
        first = -(-shift // 3) * 4             # the first 4-character group that encodes value's bytes only
        last = (shift + len(value)) // 3 * 4   # the end of the last whole group
        core = encoded[first:last]
        cores += [core, core.replace(b"+", b"-").replace(b"/", b"_")]
    return [core for core in cores if len(core) >= 12]


def forms(value: str) -> dict[str, bytes]:
    raw = value.encode()
    found = {"as is": raw, "URL-encoded": quote(value, safe="").encode(), "URL-encoded (+)": quote_plus(value).encode()}
    for i, core in enumerate(base64_cores(raw)):
        found[f"base64 #{i}"] = core
    return found


def leaks(captured: dict[str, bytes], extra: dict[str, str] | None = None) -> list[str]:
    """'<where>: <secret> (<form>)' for every secret found in the captured texts; the value itself is not shown."""
    found = []
    for name, value in {**secret_values(), **(extra or {})}.items():
        for form, needle in forms(value).items():
            for where, data in captured.items():
                if needle in data:
                    found.append(f"{where}: {name} ({form})")
    return found


def assert_no_secret(captured: dict[str, bytes], extra: dict[str, str] | None = None) -> None:
    assert captured, "nothing was captured"
    problems = leaks(captured, extra)
    assert not problems, "secrets in the output:\n" + "\n".join(problems)


def files_under(folder: Path) -> dict[str, bytes]:
    return {str(path): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


class Runner:
    """Runs commands with the secrets' environment and keeps everything they print, by a name per run."""

    def __init__(self, env: dict[str, str], folder: Path):
        self.env = env
        self.folder = folder
        self.captured: dict[str, bytes] = {}

    def run(self, name: str, command: list[str], env: dict[str, str] | None = None,
            timeout: float = 300) -> subprocess.CompletedProcess:
        result = subprocess.run(command, env=env or self.env, cwd=REPO, capture_output=True, timeout=timeout)
        self.captured[f"{name} stdout"] = result.stdout
        self.captured[f"{name} stderr"] = result.stderr
        return result

    def keep_files(self, folder: Path) -> None:
        self.captured.update(files_under(folder))


def secrets_environ(base: dict[str, str]) -> dict[str, str]:
    return {**base, **FAKE_SECRETS, "AIRFLOW_CONN_SLACK_ALERTS": SLACK_CONN, "KAFKA_SASL_USERNAME": "stocklake",
            "SNOWFLAKE_ACCOUNT": "acme-prod", "SNOWFLAKE_USER": "stocklake_deployer",
            "SNOWFLAKE_WAREHOUSE": "transform_wh",
            "SNOWFLAKE_STORAGE_AWS_ROLE_ARN": "arn:aws:iam::123456789012:role/stocklake-snowflake"}


def spark_conf_dir(folder: Path) -> Path:
    """SPARK_CONF_DIR for a job: the stack's (the jars), logging at INFO also into a file, logConf and the event
    log on. The jobs drop to WARN once their session is up; the start-up, where the configuration is logged,
    stays at INFO."""
    source = Path(os.environ["SPARK_CONF_DIR"])
    conf = folder / "spark-conf"
    (folder / "logs").mkdir(parents=True)
    (folder / "events").mkdir()
    conf.mkdir()
    defaults = (source / "spark-defaults.conf").read_text()
    conf.joinpath("spark-defaults.conf").write_text(
        defaults + f"\nspark.logConf true\nspark.eventLog.enabled true\nspark.eventLog.dir file://{folder}/events\n"
        "spark.eventLog.compress false\n")  # compressed, a secret in it would not be found
    log4j = (source / "log4j2.properties").read_text().replace("rootLogger.level = warn", "rootLogger.level = info")
    log4j += (f"\nrootLogger.appenderRef.file.ref = file\nappender.file.type = File\nappender.file.name = file\n"
              f"appender.file.fileName = {folder}/logs/spark.log\nappender.file.layout.type = PatternLayout\n"
              f"appender.file.layout.pattern = %d %p %c: %m%n%ex\n")
    conf.joinpath("log4j2.properties").write_text(log4j)
    return conf


def sasl_env(settings: Settings, env: dict[str, str], user: str, password: str) -> dict[str, str]:
    """env with the Kafka settings of the local broker's SASL_PLAINTEXT listener (SCRAM-SHA-512)."""
    host = settings.kafka.bootstrap_servers.split(":")[0]
    return {**env, "STOCKLAKE_KAFKA_BOOTSTRAP_SERVERS": f"{host}:{settings.services.kafka_sasl_port}",
            "STOCKLAKE_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "STOCKLAKE_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
            "KAFKA_SASL_USERNAME": user, "KAFKA_SASL_PASSWORD": password}


def scrape(port: int) -> dict[tuple[str, str], float]:
    """(sample name, query) -> value of the stream's counters; empty while the endpoint is not up yet."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:  # noqa: S310
            text = response.read().decode()
    except (urllib.error.URLError, ConnectionError):
        return {}
    return {(sample.name, sample.labels["query"]): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples
            if "query" in sample.labels and not sample.name.endswith("_created")}


@dataclass(frozen=True)
class SecuredStream:
    settings: Settings           # the namespace's (plain listener, root credentials: for the tests' own reads)
    env: dict[str, str]          # what the producer and the stream ran with: SASL, the lake user, the fake secrets
    plain_env: dict[str, str]    # the namespace with the fake secrets set, on the plain listener and root's S3 keys
    runner: Runner               # everything the producer and the stream printed, by name
    folder: Path                 # the stream's log, Spark log file and event log
    sasl_user: str
    lake_access_key: str
    producer_args: list[str]
    summary: dict                # the producer's summary
    records: tuple = field(repr=False)
    metrics_port: int = 0
    metrics: dict = field(default_factory=dict)  # the last scrape before the stop
    returncode: int = -1

    @property
    def log(self) -> Path:
        return self.folder / "stream.log"


def run_until_counted(env: dict[str, str], folder: Path, port: int, expected: dict) -> tuple[int, dict]:
    """Run the stream until its endpoint shows `expected`, then SIGTERM it; (exit code, the last scrape)."""
    log = folder / "stream.log"
    with log.open("wb") as out:
        job = subprocess.Popen(stream_command("processing-time", TRADES_ONLY, extra_args=["--metrics-port", str(port)]),
                               env=env, cwd=REPO, stdout=out, stderr=subprocess.STDOUT,
                               start_new_session=True)
    seen: dict = {}
    try:
        wait_for(lambda: seen.update(scrape(port)) or {key: seen.get(key) for key in expected} == expected
                 or job.poll() is not None, "the endpoint to count every record", timeout=300)
        assert job.poll() is None, log.read_text(errors="replace")[-5000:]
    finally:
        if job.poll() is None:
            os.killpg(job.pid, signal.SIGTERM)  # a clean stop: the last metrics flush happens on the way out
        job.wait(timeout=120)
    return job.returncode, seen


@pytest.fixture(scope="session")
def secured_stream(run_id, tmp_path_factory) -> SecuredStream:
    from scripts.minio_lake_user import ensure_lake_user, remove_lake_user
    from scripts.services import ensure_scram_user

    folder = tmp_path_factory.mktemp("secured")
    base = {**os.environ, **namespace_env(run_id, "secured")}
    settings = load_settings(base)
    create_namespace(settings)
    user, access_key = f"lake-{secrets.token_hex(4)}", f"lake-{uuid.uuid4().hex[:12]}"
    ensure_scram_user(settings.kafka.bootstrap_servers, user, FAKE_SECRETS["KAFKA_SASL_PASSWORD"])
    root = os.environ["AWS_ACCESS_KEY_ID"], os.environ["AWS_SECRET_ACCESS_KEY"]
    ensure_lake_user(settings, access_key, LAKE_USER_SECRET, *root)
    plain_env = secrets_environ(base)
    env = {**sasl_env(settings, plain_env, user, FAKE_SECRETS["KAFKA_SASL_PASSWORD"]),
           "AWS_ACCESS_KEY_ID": access_key, "AWS_SECRET_ACCESS_KEY": LAKE_USER_SECRET,
           "STOCKLAKE_STREAM_METRICS_FLUSH_SECONDS": "2", "STOCKLAKE_STREAM_TRIGGER_INTERVAL": "1 second"}
    runner = Runner(env, folder)
    try:
        args = ["--source", "simulator", "--rate", "1000", "--count", str(EVENTS), "--no-pacing", "--seed", "5",
                "--start-time", START, "--duplicate-ratio", "0.05", "--malformed-ratio", "0.05",
                "--malformed-target", "topic"]
        summary_file = folder / "producer-summary.json"
        result = runner.run("producer simulator", [PY, "-m", "producer", *args, "--summary-json", str(summary_file)])
        assert result.returncode == 0, result.stderr[-3000:]
        runner.captured[str(summary_file)] = summary_file.read_bytes()
        summary = json.loads(summary_file.read_text())

        port = free_port()
        quarantined = sum(summary["expected_quarantine_by_reason"].values())
        expected = {("stocklake_stream_rows_in_total", "bronze_trades"): EVENTS,
                    ("stocklake_stream_rows_in_total", "silver_trades"): EVENTS,
                    ("stocklake_stream_rows_quarantined_total", "silver_trades"): quarantined}
        stream_env = {**env, "SPARK_CONF_DIR": str(spark_conf_dir(folder))}
        code, metrics = run_until_counted(stream_env, folder, port, expected)
        runner.keep_files(folder)
        yield SecuredStream(settings, env, plain_env, runner, folder, user, access_key, args, summary,
                            tuple(expected_records(env, args)), port, metrics, code)
    finally:
        remove_lake_user(settings, access_key, *root)
