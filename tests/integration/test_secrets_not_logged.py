"""Secrets come only from the environment and never reach a log: every component runs with known secrets set, and
everything it prints or writes is searched for them.

The secrets: a fake value in every secret variable the components read (FINNHUB_API_KEY, KAFKA_SASL_PASSWORD,
SNOWFLAKE_PASSWORD, SNOWFLAKE_PRIVATE_KEY_PASSPHRASE, the Slack webhook in AIRFLOW_CONN_SLACK_ALERTS), the real
AWS_SECRET_ACCESS_KEY of the local stack (.lake/credentials.env, exported to the tests), and the secret of the lake
user the secured run writes as. The Kafka password is the SCRAM password the secured run really authenticates with
(tests/integration/secured_stream.py). Each is searched for as is, URL-encoded and base64-encoded (any alignment).

What runs, each as its real command, and what is searched:
- the producer: the secured run's simulator (through SASL), --help, and error paths (bad option, unreachable
  broker, SASL refused); the finnhub-ws and finnhub-rest sources against the local Finnhub stand-ins (also with a
  key the stand-ins refuse): stdout, stderr, the --record file and the summary JSON;
- the stream job (the secured run: spark-submit through SASL, as the lake user, until SIGTERM) and compact: their
  output, and the Spark files they write with a log4j configuration at INFO into a file, spark.logConf (Spark logs
  its whole configuration) and the event log (Spark's record of every property, as the history server shows it);
- the watchdog on the checkpoints the stream wrote, and every object in the namespace's bucket (Delta logs,
  checkpoints, the metrics table); the data-quality suite is left out: Great Expectations alone takes ~35 s here;
- scripts/snowflake_setup.py render (its dry run), and its configuration error paths;
- the start-up error paths of conf/preflight.py (wrong S3 secret, unreachable broker, SASL refused).
"""
from __future__ import annotations

import base64
import json
import re
import sys
import time
from urllib.parse import quote, quote_plus

import pytest

from tests.integration.secured_stream import (FAKE_SECRETS, Runner, assert_no_secret, files_under, leaks,
                                              spark_conf_dir)
from tests.integration.stack import REPO, s3_client
from tests.standins.finnhub_rest_server import FinnhubRestStandIn
from tests.standins.finnhub_ws_server import FinnhubWsStandIn, Session, trade_item

pytestmark = pytest.mark.integration

PY = sys.executable
NOW_AFTER = "2026-01-05T18:00:00Z"
# The tests' time limits bound their own commands (func_only): the shared secured run, built by whichever test of the
# group comes first, bounds its own steps.


@pytest.fixture(scope="module")
def plain(secured_stream, tmp_path_factory):
    """The secured run's namespace, settings and a runner with the fake secrets set, on the plain listener."""
    folder = tmp_path_factory.mktemp("secrets")
    return secured_stream.settings, Runner(secured_stream.plain_env, folder), folder


@pytest.mark.timeout(120, func_only=True)
def test_the_producer_prints_no_secret(secured_stream, plain):
    settings, runner, folder = plain
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
    # And the secured run's producer, which authenticated with the SCRAM password.
    captured = {k: v for k, v in {**runner.captured, **secured_stream.runner.captured}.items() if "producer" in k}
    assert any("producer simulator" in k for k in captured)
    assert_no_secret(captured)


@pytest.mark.timeout(120, func_only=True)
def test_the_finnhub_sources_print_no_key(plain, tmp_path):
    settings, runner, _ = plain
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


@pytest.mark.timeout(60, func_only=True)
def test_the_stream_job_logs_no_secret(secured_stream):
    spark_files = files_under(secured_stream.folder)
    assert any("/events/" in name for name in spark_files), "no event log was written"
    assert any(name.endswith("spark.log") for name in spark_files), "no log file was written"
    assert any(name.endswith("stream.log") for name in spark_files), "no output was kept"
    # The event log holds the configuration Spark ran with: S3A's secret key is in it, masked; the Kafka source's
    # options hold the JAAS line with the SCRAM password, redacted.
    events = b"".join(v for k, v in spark_files.items() if "/events/" in k)
    assert b"fs.s3a.secret.key" in events
    assert_no_secret(spark_files)


@pytest.mark.timeout(300, func_only=True)
def test_batch_jobs_and_the_lake_hold_no_secret(secured_stream, tmp_path):
    settings = secured_stream.settings
    # As the secured stream ran: the lake user's S3 keys, Kafka through SASL.
    runner = Runner(secured_stream.env, tmp_path)
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


@pytest.mark.timeout(60, func_only=True)
def test_snowflake_setup_prints_no_secret(plain, tmp_path):
    settings, runner, _ = plain
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


@pytest.mark.timeout(90, func_only=True)
def test_failed_start_ups_print_no_secret(plain):
    settings, runner, _ = plain
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
