"""Secrets come only from the environment and never reach a log: every component runs with known secrets set, and
everything it prints or writes is searched for them.

The secrets: a fake value in every secret variable the components read (FINNHUB_API_KEY, KAFKA_SASL_PASSWORD,
SNOWFLAKE_PASSWORD, SNOWFLAKE_PRIVATE_KEY_PASSPHRASE, the Slack webhook in AIRFLOW_CONN_SLACK_ALERTS), and the
real AWS_SECRET_ACCESS_KEY of the local stack (.lake/credentials.env, exported to the tests), which the jobs need
to reach MinIO. Each is searched for as is, URL-encoded and base64-encoded (at any alignment).

What runs, each as its real command, and what is searched:
- the producer: the simulator into a namespace topic, --help, and error paths (bad option, unreachable broker,
  SASL refused); the finnhub-ws and finnhub-rest sources against the local Finnhub stand-ins (also with a key the
  stand-ins refuse): stdout, stderr, the --record file and the summary JSON;
- the stream job (spark-submit, one available-now run on the namespace topic) and compact: stdout and stderr, and
  the Spark files they write with a log4j configuration at INFO into a file, spark.logConf (Spark logs its whole
  configuration) and the event log (Spark's record of every property, as the history server shows it);
- the watchdog on the checkpoints the stream wrote, and every object in the namespace's bucket (Delta logs,
  checkpoints, the metrics table); the data-quality suite is left out: Great Expectations alone takes ~35 s here;
- scripts/snowflake_setup.py render (its dry run), and its configuration error paths;
- the start-up error paths of conf/preflight.py (wrong S3 secret, unreachable broker, SASL refused).
"""
from __future__ import annotations

import base64
import json
import os
import re
import secrets
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote, quote_plus

import pytest

from conf.settings import load_settings
from tests.conftest import namespace_env
from tests.integration.stack import REPO, SPARK_SUBMIT, create_namespace, s3_client
from tests.standins.finnhub_rest_server import FinnhubRestStandIn
from tests.standins.finnhub_ws_server import FinnhubWsStandIn, Session, trade_item

pytestmark = pytest.mark.integration

PY = sys.executable
START = "2026-01-05T15:00:00Z"  # the simulator's clock: the trades land in the closed hour 2026-01-05/15
NOW_AFTER = "2026-01-05T18:00:00Z"
EVENTS = 300


def _fake(prefix: str, alphabet: str = "abcdefghijklmnopqrstuvwxyz0123456789") -> str:
    return prefix + "".join(secrets.choice(alphabet) for _ in range(24))


# Finnhub's keys are lower-case letters and digits (it goes into the WebSocket URL as is); the others carry the
# characters that URL encoding and base64 change.
FAKE_SECRETS = {
    "FINNHUB_API_KEY": _fake("fhk"),
    "KAFKA_SASL_PASSWORD": _fake("kafka-pw/+=&", "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789/+=&%"),
    "SNOWFLAKE_PASSWORD": _fake("sf-pw'\"/+=", "abcdefghijklmnopqrstuvwxyz0123456789/+=$"),
    "SNOWFLAKE_PRIVATE_KEY_PASSPHRASE": _fake("sf-pass/+", "abcdefghijklmnopqrstuvwxyz0123456789/+="),
}
SLACK_TOKEN = _fake("slk")
SLACK_CONN = json.dumps({"conn_type": "slackwebhook",
                         "password": f"https://hooks.slack.com/services/T0FAKE00/B0FAKE00/{SLACK_TOKEN}"})


def secret_values() -> dict[str, str]:
    """Name -> value of every secret searched for (the real S3 secret included)."""
    values = {**FAKE_SECRETS, "AIRFLOW_CONN_SLACK_ALERTS (webhook token)": SLACK_TOKEN}
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


@pytest.fixture(scope="module")
def lake(run_id, tmp_path_factory):
    """A namespace with the secrets' environment; the producer's simulator run and one stream run on it."""
    folder = tmp_path_factory.mktemp("secrets")
    base = {**os.environ, **namespace_env(run_id, "secrets")}
    settings = load_settings(base)
    create_namespace(settings)
    runner = Runner(secrets_environ(base), folder)
    summary = folder / "producer-summary.json"
    result = runner.run("producer simulator", [
        PY, "-m", "producer", "--source", "simulator", "--rate", "1000", "--count", str(EVENTS), "--no-pacing",
        "--seed", "5", "--start-time", START, "--malformed-ratio", "0.05", "--malformed-target", "topic",
        "--summary-json", str(summary)])
    assert result.returncode == 0, result.stderr[-3000:]
    runner.captured[str(summary)] = summary.read_bytes()
    return settings, runner, folder


@pytest.fixture(scope="module")
def streamed(lake):
    """The stream job, once, on what the producer sent: spark-submit with INFO logs, logConf and the event log."""
    settings, runner, folder = lake
    stream_dir = folder / "stream"
    stream_env = {**runner.env, "SPARK_CONF_DIR": str(spark_conf_dir(stream_dir))}
    result = runner.run("stream", [
        SPARK_SUBMIT, "--master", "local[2]", "--driver-memory", "1g", "--conf", "spark.ui.enabled=false",
        str(REPO / "spark_jobs" / "stream.py"), "--trigger", "available-now", "--entity", "trades"], stream_env)
    assert result.returncode == 0, result.stderr[-5000:]
    return stream_dir


@pytest.mark.timeout(120)
def test_the_producer_prints_no_secret(lake):
    settings, runner, folder = lake
    result = runner.run("producer --help", [PY, "-m", "producer", "--help"])
    assert result.returncode == 0
    result = runner.run("producer bad option", [PY, "-m", "producer", "--source", "simulator", "--rate", "-1"])
    assert result.returncode == 2
    result = runner.run("producer unreachable broker", [
        PY, "-m", "producer", "--source", "simulator", "--rate", "10", "--count", "5"],
        {**runner.env, "STOCKLAKE_KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1"})
    assert result.returncode == 2
    result = runner.run("producer SASL refused", [
        PY, "-m", "producer", "--source", "simulator", "--rate", "10", "--count", "5"],
        {**runner.env, "STOCKLAKE_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT"})
    assert result.returncode == 2 and b"kafka.security_protocol" in result.stderr
    captured = {k: v for k, v in runner.captured.items() if "producer" in k}
    assert_no_secret(captured)


@pytest.mark.timeout(120)
def test_the_finnhub_sources_print_no_key(lake, tmp_path):
    settings, runner, _ = lake
    key = FAKE_SECRETS["FINNHUB_API_KEY"]
    env = {**runner.env, "STOCKLAKE_MARKET_HOURS_SESSION": "always",
           "STOCKLAKE_FINNHUB_RECONNECT_INITIAL_SECONDS": "0.1", "STOCKLAKE_FINNHUB_RECONNECT_MAX_SECONDS": "0.5",
           "STOCKLAKE_FINNHUB_QUOTE_POLL_INTERVAL_SECONDS": "0.3", "STOCKLAKE_FINNHUB_RATE_LIMITED_INITIAL_SECONDS": "0.1"}
    now_ms = time.time_ns() // 1_000_000
    trades = [trade_item("AAPL", 190.0 + i / 100, now_ms - 5000 + i, 10 + i) for i in range(20)]

    def send_then_drop(session: Session) -> None:
        session.wait_subscribed(1)
        session.send_trades(trades[:10])
        session.drop()  # the reconnect logs where it connects: with the key masked

    def send_then_idle(session: Session) -> None:
        session.wait_subscribed(1)
        session.send_trades(trades[10:])
        session.ping()
        session.idle_until_closed()

    record = tmp_path / "record.jsonl"
    summary = tmp_path / "ws-summary.json"
    with FinnhubWsStandIn(key, [send_then_drop, send_then_idle]) as ws:
        result = runner.run("finnhub-ws", [PY, "-m", "producer", "--source", "finnhub-ws", "--symbols", "AAPL",
                                           "--duration", "4", "--record", str(record), "--summary-json",
                                           str(summary)], {**env, "STOCKLAKE_FINNHUB_WS_URL": ws.url})
        assert result.returncode == 0, result.stderr[-3000:]
        assert json.loads(summary.read_text())["trades_published"] == 20
    with FinnhubWsStandIn("another-key", [send_then_idle]) as ws:
        result = runner.run("finnhub-ws key refused", [PY, "-m", "producer", "--source", "finnhub-ws", "--symbols",
                                                       "AAPL", "--duration", "10"],
                            {**env, "STOCKLAKE_FINNHUB_WS_URL": ws.url})
        assert result.returncode == 2, result.stderr[-3000:]

    quote = {"c": 190.5, "d": 1.5, "dp": 0.79, "h": 191.0, "l": 188.2, "o": 189.0, "pc": 189.0, "t": now_ms // 1000}
    with FinnhubRestStandIn(key) as rest:
        rest.script("AAPL", [(200, quote), (429, {"error": "API limit reached"}), (500, {"error": "boom"})])
        result = runner.run("finnhub-rest", [PY, "-m", "producer", "--source", "finnhub-rest", "--symbols", "AAPL",
                                             "--duration", "3"], {**env, "STOCKLAKE_FINNHUB_REST_URL": rest.url})
        assert result.returncode == 0, result.stderr[-3000:]
        assert rest.quote_requests("AAPL"), "the poller never called the stand-in"
    with FinnhubRestStandIn("another-key") as rest:
        result = runner.run("finnhub-rest key refused", [PY, "-m", "producer", "--source", "finnhub-rest",
                                                         "--symbols", "AAPL", "--duration", "10"],
                            {**env, "STOCKLAKE_FINNHUB_REST_URL": rest.url})
        assert result.returncode == 2, result.stderr[-3000:]
    runner.keep_files(tmp_path)
    assert_no_secret({k: v for k, v in runner.captured.items() if "finnhub" in k or k.startswith(str(tmp_path))})


@pytest.mark.timeout(400)  # the first test that needs the stream: its run is part of this one
def test_the_stream_job_logs_no_secret(lake, streamed):
    settings, runner, folder = lake
    spark_files = files_under(streamed)
    assert any("/events/" in name for name in spark_files), "no event log was written"
    assert any(name.endswith("spark.log") for name in spark_files), "no log file was written"
    # The event log holds the configuration Spark ran with: S3A's secret key is in it, masked.
    assert b"fs.s3a.secret.key" in b"".join(v for k, v in spark_files.items() if "/events/" in k)
    assert_no_secret({**spark_files, "stream stdout": runner.captured["stream stdout"],
                      "stream stderr": runner.captured["stream stderr"]})


@pytest.mark.timeout(300)
def test_batch_jobs_and_the_lake_hold_no_secret(lake, streamed, tmp_path):
    settings, runner, _ = lake
    compact_env = {**runner.env, "SPARK_CONF_DIR": str(spark_conf_dir(tmp_path / "compact"))}
    result = runner.run("compact", [PY, str(REPO / "spark_jobs" / "compact.py"), "--entity", "trades", "--now",
                                    NOW_AFTER, "--json", str(tmp_path / "compact.json")], compact_env)
    assert result.returncode == 0, result.stderr[-5000:]
    result = runner.run("watchdog", [PY, "-m", "spark_jobs.watchdog", "--entity", "trades", "--json",
                                     str(tmp_path / "watchdog.json")])
    assert result.returncode in (0, 1), result.stderr[-3000:]  # healthy or not: what it prints is the point
    captured = {k: runner.captured[k] for k in runner.captured
                if k.split()[0] in ("compact", "watchdog")}
    captured.update(files_under(tmp_path))

    s3 = s3_client(settings)
    objects = 0
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=settings.lake.bucket):
        for item in page.get("Contents", []):
            body = s3.get_object(Bucket=settings.lake.bucket, Key=item["Key"])["Body"].read()
            captured[f"s3://{settings.lake.bucket}/{item['Key']}"] = body
            objects += 1
    assert objects > 10  # Bronze, Silver, quarantine, checkpoints, the metrics table
    assert_no_secret(captured)


@pytest.mark.timeout(60)
def test_snowflake_setup_prints_no_secret(lake, tmp_path):
    settings, runner, _ = lake
    script = str(REPO / "scripts" / "snowflake_setup.py")
    result = runner.run("snowflake render", [PY, script, "render"])
    assert result.returncode == 0 and b"CREATE" in result.stdout, result.stderr[-3000:]
    # Configuration errors around the secrets: the passphrase without a key, both password and key, a bad key.
    result = runner.run("snowflake passphrase without key", [PY, script, "apply"])
    assert result.returncode == 2 and b"SNOWFLAKE_PRIVATE_KEY_PASSPHRASE" in result.stderr
    not_a_key = tmp_path / "key.p8"
    not_a_key.write_text("-----BEGIN ENCRYPTED PRIVATE KEY-----\nbm90IGEga2V5\n-----END ENCRYPTED PRIVATE KEY-----\n")
    result = runner.run("snowflake both", [PY, script, "apply"],
                        {**runner.env, "SNOWFLAKE_PRIVATE_KEY_PATH": str(not_a_key)})
    assert result.returncode == 2
    result = runner.run("snowflake bad key", [PY, script, "refresh"],
                        {**runner.env, "SNOWFLAKE_PASSWORD": "", "SNOWFLAKE_PRIVATE_KEY_PATH": str(not_a_key)})
    assert result.returncode == 2 and b"SNOWFLAKE_PRIVATE_KEY_PATH" in result.stderr
    assert_no_secret({k: v for k, v in runner.captured.items() if k.startswith("snowflake")})


@pytest.mark.timeout(90)
def test_failed_start_ups_print_no_secret(lake):
    settings, runner, _ = lake
    stream = [PY, str(REPO / "spark_jobs" / "stream.py"), "--trigger", "available-now", "--entity", "trades"]
    compact = [PY, str(REPO / "spark_jobs" / "compact.py")]
    wrong_secret = "wrong-" + FAKE_SECRETS["KAFKA_SASL_PASSWORD"]  # a fake S3 secret; searched for below  # pragma: allowlist secret
    cases = {
        "stream wrong S3 secret": (stream, {"AWS_SECRET_ACCESS_KEY": wrong_secret}),
        "stream unreachable broker": (stream, {"STOCKLAKE_KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1"}),
        "stream SASL refused": (stream, {"STOCKLAKE_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT"}),
        "compact wrong S3 secret": (compact, {"AWS_SECRET_ACCESS_KEY": wrong_secret}),
    }
    captured = {}
    for name, (command, change) in cases.items():
        result = runner.run(name, command, {**runner.env, **change})
        assert result.returncode == 2, (name, result.stderr[-3000:])
        assert re.search(rb"configuration error: \S", result.stderr), (name, result.stderr[-3000:])
        captured[f"{name} stderr"], captured[f"{name} stdout"] = result.stderr, result.stdout
    assert_no_secret(captured, {"AWS_SECRET_ACCESS_KEY (wrong)": wrong_secret})


def test_the_search_finds_every_form():
    """The search itself: a secret is found as is, URL-encoded and base64-encoded at any offset."""
    value = FAKE_SECRETS["KAFKA_SASL_PASSWORD"]
    for prefix in (b"", b"u", b"us", b"user:"):
        assert leaks({"basic auth": b"Authorization: Basic " + base64.b64encode(prefix + value.encode())})
        assert leaks({"urlsafe": base64.urlsafe_b64encode(prefix + value.encode())})
    assert leaks({"url": b"https://x/?p=" + quote(value, safe="").encode()})
    assert leaks({"form": quote_plus(value).encode()})
    assert leaks({"raw": b"..." + value.encode() + b"..."})
    assert not leaks({"masked": b"password=*** token=[redacted]"})
