"""The Slack failure alert and success notice (airflow/plugins/stocklake_airflow/alerts.py), run by the real Airflow
in its own environment against a local stand-in for a Slack incoming webhook: the exact message a failed task sends,
one warning and nothing sent without a connection, a refusing or failing webhook logged and never raised, and the
webhook token never in any log; the exact Gold summary a notice posts (dashboard/gold_summary.py run in the job
environment on a small Gold file), and nothing posted when alerts.success_notices is false. The notice posted by
the real gold_dbt DAG after a real build: tests/integration/test_airflow_dags.py."""
from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from urllib.parse import quote

import pytest

from tests.integration.airflow_harness import TEST_PORT, airflow, airflow_env, airflow_python
from tests.integration.airflow_harness import airflow_home  # noqa: F401 (the session fixture)
from tests.standins.slack_webhook_server import SlackWebhookStandIn
from tests.unit.dashboard.test_queries import write_gold
from tests.unit.dashboard.test_gold_summary import CANDLE_MODELS, GOLD, TEXT as GOLD_TEXT

pytestmark = pytest.mark.integration

PROBE_DAG = '''
from datetime import datetime

from airflow.sdk import dag, task

from stocklake_airflow.alerts import slack_failure_alert


@dag(dag_id="alert_probe", schedule=None, start_date=datetime(2026, 1, 1), catchup=False,
     default_args={"retries": 0, "on_failure_callback": slack_failure_alert})
def alert_probe():
    @task
    def explode():
        raise RuntimeError("disk <full> & more\\nsecond line of the error")

    explode()


alert_probe()
'''

# Calls the callback directly (as Airflow does, with a failed task's context) once per scenario: argv[1] is the log
# file, argv[2] a JSON list of [name, AIRFLOW_CONN_SLACK_ALERTS or null]. The alerts module's records (the Slack
# client's included) go to the file as "LEVEL logger: message", unredacted by Airflow's masker.
CALLBACK_SCRIPT = '''
import json, logging, os, sys
from types import SimpleNamespace

import airflow  # puts the plugins folder on sys.path, as in every Airflow process

from stocklake_airflow.alerts import slack_failure_alert

handler = logging.FileHandler(sys.argv[1])
handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
for name in ("stocklake_airflow", "probe"):
    logging.getLogger(name).addHandler(handler)
logging.getLogger("probe").setLevel(logging.INFO)
ti = SimpleNamespace(dag_id="probe_dag", task_id="probe_task", run_id="manual__probe", try_number=2,
                     log_url="http://127.0.0.1:8080/dags/probe_dag/runs/manual__probe/tasks/probe_task?try_number=2")
for name, connection in json.loads(sys.argv[2]):
    os.environ.pop("AIRFLOW_CONN_SLACK_ALERTS", None)
    if connection is not None:
        os.environ["AIRFLOW_CONN_SLACK_ALERTS"] = connection
    logging.getLogger("probe").info("scenario %s", name)
    result = slack_failure_alert({"ti": ti, "run_id": ti.run_id, "exception": OSError("no space left\\nmore")})
    print("RETURNED", name, result, flush=True)
'''
PROBE_TEXT = ("Airflow task failed: dag probe_dag, run manual__probe, task probe_task, try 2\n"
              "Error: OSError: no space left\n"
              "Log: http://127.0.0.1:8080/dags/probe_dag/runs/manual__probe/tasks/probe_task?try_number=2")
ALERTS = "stocklake_airflow.alerts"


def webhook_connection(host: str | None, password: str) -> str:
    """AIRFLOW_CONN_SLACK_ALERTS as the Slack provider reads it: type slackwebhook, token (or full URL) as password,
    host replacing hooks.slack.com/services."""
    connection = {"conn_type": "slackwebhook", "password": password}
    if host is not None:
        connection["host"] = host
    return json.dumps(connection)


def run_callback(airflow_home: Path, tmp_path: Path, scenarios: list[tuple[str, str | None]]):
    log_file = tmp_path / "alerts.log"
    result = airflow_python(CALLBACK_SCRIPT, [str(log_file), json.dumps(scenarios)], airflow_env(airflow_home),
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return result, log_file.read_text().splitlines()


def returned(result) -> list[str]:
    """The script's lines saying the callback returned (Airflow's own log lines share its stdout)."""
    return [line for line in result.stdout.splitlines() if line.startswith("RETURNED ")]


def by_scenario(lines: list[str]) -> dict[str, list[str]]:
    groups: dict[str, list[str]] = {}
    current = None
    for line in lines:
        if line.startswith("INFO probe: scenario "):
            current = groups.setdefault(line.removeprefix("INFO probe: scenario "), [])
        else:
            assert current is not None, line
            current.append(line)
    return groups


def test_a_failed_task_posts_its_alert_to_slack(airflow_home, tmp_path):
    dags = tmp_path / "dags"
    dags.mkdir()
    (dags / "alert_probe.py").write_text(PROBE_DAG)
    with SlackWebhookStandIn() as slack:
        env = airflow_env(airflow_home, {"AIRFLOW__CORE__DAGS_FOLDER": str(dags),
                                         "AIRFLOW_CONN_SLACK_ALERTS": webhook_connection(slack.base_url, slack.token)})
        result = airflow(["dags", "test", "alert_probe", "2026-01-02"], env, timeout=600)
        requests = slack.requests
    output = result.stdout + result.stderr
    assert result.returncode == 1, output[-3000:]  # the run failed ...
    assert "RuntimeError: disk <full> & more" in output  # ... with the task's own error, not the callback's
    with sqlite3.connect(airflow_home / "airflow.db") as db:
        run_ids = [row[0] for row in db.execute("SELECT run_id FROM dag_run WHERE dag_id = 'alert_probe'")]
    assert len(run_ids) == 1
    run_id = run_ids[0]
    # Slack's reserved characters escaped; the error's first line only; the log URL of the API server's port.
    expected = (f"Airflow task failed: dag alert_probe, run {run_id}, task explode, try 1\n"
                "Error: RuntimeError: disk &lt;full&gt; &amp; more\n"
                f"Log: http://127.0.0.1:{TEST_PORT}/dags/alert_probe/runs/{quote(run_id)}/tasks/explode?try_number=1")
    assert [(r.method, r.path, r.authorized, r.status, r.body) for r in requests] == [
        ("POST", "/services/<token>", True, 200, {"text": expected})]
    assert requests[0].content_type.startswith("application/json")
    assert "slack alert sent (connection slack_alerts)" in output
    task_logs = "".join(p.read_text(errors="replace") for p in (airflow_home / "logs").rglob("*") if p.is_file())
    assert slack.token not in output + task_logs


def test_without_a_slack_connection_the_alert_is_one_warning_and_nothing_is_sent(airflow_home, tmp_path):
    with SlackWebhookStandIn() as slack:
        result, lines = run_callback(airflow_home, tmp_path, [("none", None)])
    assert by_scenario(lines) == {"none": [
        "WARNING stocklake_airflow.alerts: no slack_alerts connection: alert not sent: "
        "Airflow task failed: dag probe_dag, run manual__probe, task probe_task, try 2"]}
    assert returned(result) == ["RETURNED none None"]
    assert slack.requests == []


def test_a_failing_webhook_is_logged_never_raised_and_its_token_never_logged(airflow_home, tmp_path):
    with SlackWebhookStandIn() as slack:
        slack.fail_with(500, "internal_error")  # a Slack outage (authorized requests only)
        closed = SlackWebhookStandIn(token=slack.token)
        with closed:
            refused_host = closed.base_url  # a port nobody listens on once this block ends
        scenarios = [
            ("outage", webhook_connection(None, slack.webhook_url)),  # the full webhook URL as the password
            ("revoked", webhook_connection(slack.base_url, "T0STANDIN/B0STANDIN/revoked0token0secret")),
            ("refused", webhook_connection(refused_host, slack.token)),
        ]
        result, lines = run_callback(airflow_home, tmp_path, scenarios)
        requests = slack.requests
    groups = by_scenario(lines)
    alerts_lines = {name: [line for line in group if line.split(" ", 2)[1] == f"{ALERTS}:"]
                    for name, group in groups.items()}
    assert alerts_lines == {
        "outage": [f"ERROR {ALERTS}: slack alert not sent (connection slack_alerts): AirflowException: "
                   "Response body: 'internal_error', Status Code: 500. "
                   "See: https://api.slack.com/messaging/webhooks#handling_errors"],
        "revoked": [f"ERROR {ALERTS}: slack alert not sent (connection slack_alerts): AirflowException: "
                    "Response body: 'invalid_token', Status Code: 403. "
                    "See: https://api.slack.com/messaging/webhooks#handling_errors"],
        "refused": [f"ERROR {ALERTS}: slack alert not sent (connection slack_alerts): URLError: "
                    "<urlopen error [Errno 111] Connection refused>"],
    }
    # The Slack client's own lines: errors only (its retry notice at info level carries the full URL).
    assert {line.split(" ", 1)[0] for group in groups.values() for line in group} == {"ERROR"}
    assert returned(result) == ["RETURNED outage None", "RETURNED revoked None", "RETURNED refused None"]
    assert [(r.authorized, r.status, r.body) for r in requests] == [
        (True, 500, {"text": PROBE_TEXT}), (False, 403, {"text": PROBE_TEXT})]
    logged = "\n".join(lines) + result.stdout + result.stderr
    for secret in (slack.token, "revoked0token0secret", "standin0webhook0secret"):
        assert secret not in logged


# -- success notices ---------------------------------------------------------------------------------------------------

# A build task, then the notice as gold_dbt wires it (with a fixed `now`, so the age in the text is exact).


# Calls post_job_notice directly (as the notice task does) once per scenario: argv[1] is the log file, argv[2] a JSON
# list of [name, AIRFLOW_CONN_SLACK_ALERTS or null, STOCKLAKE_ALERTS_SUCCESS_NOTICES, DBT_DUCKDB_PATH]; the job and
# the setting are read by subprocesses of the job environment, which inherit these variables.
NOTICE_SCRIPT = '''
import json, logging, os, sys

import airflow  # puts the plugins folder on sys.path, as in every Airflow process

from stocklake_airflow.alerts import post_job_notice

handler = logging.FileHandler(sys.argv[1])
handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
for name in ("stocklake_airflow", "probe"):
    logging.getLogger(name).addHandler(handler)
    logging.getLogger(name).setLevel(logging.INFO)
for name, connection, notices, warehouse in json.loads(sys.argv[2]):
    os.environ.pop("AIRFLOW_CONN_SLACK_ALERTS", None)
    if connection is not None:
        os.environ["AIRFLOW_CONN_SLACK_ALERTS"] = connection
    os.environ["STOCKLAKE_ALERTS_SUCCESS_NOTICES"] = notices
    os.environ["DBT_DUCKDB_PATH"] = warehouse
    logging.getLogger("probe").info("scenario %s", name)
    try:
        result = post_job_notice("dashboard.gold_summary", ["--now", "2026-11-20T21:03:00Z"])
    except Exception as err:
        print("RAISED", name, type(err).__name__, err, flush=True)
    else:
        print("RETURNED", name, result, flush=True)
'''


def outcomes(result) -> list[str]:
    return [line for line in result.stdout.splitlines() if line.startswith(("RETURNED ", "RAISED "))]


def test_a_notice_is_off_by_setting_never_fails_on_slack_and_fails_when_gold_cannot_be_read(airflow_home, tmp_path):
    warehouse = str(write_gold(tmp_path / "gold.duckdb", GOLD, CANDLE_MODELS))
    missing = tmp_path / "missing.duckdb"
    with SlackWebhookStandIn() as slack:
        closed = SlackWebhookStandIn(token=slack.token)
        with closed:
            refused_host = closed.base_url  # a port nobody listens on once this block ends
        connection = webhook_connection(slack.base_url, slack.token)
        scenarios = [
            ("off", connection, "false", warehouse),
            ("refused", webhook_connection(refused_host, slack.token), "true", warehouse),
            ("unconnected", None, "true", warehouse),
            ("missing", connection, "true", str(missing)),
            ("bad-setting", connection, "sometimes", warehouse),
        ]
        log_file = tmp_path / "notice.log"
        result = airflow_python(NOTICE_SCRIPT, [str(log_file), json.dumps(scenarios)], airflow_env(airflow_home),
                                timeout=300)
        requests = slack.requests
    assert result.returncode == 0, result.stderr[-3000:]
    groups = by_scenario(log_file.read_text().splitlines())
    alerts_lines = {name: [line for line in group if line.split(" ", 2)[1] == f"{ALERTS}:"]
                    for name, group in groups.items()}
    assert alerts_lines == {
        "off": [f"INFO {ALERTS}: success notice off (alerts.success_notices is false): nothing posted"],
        "refused": [f"INFO {ALERTS}: success notice: {GOLD_TEXT}",
                    f"ERROR {ALERTS}: slack alert not sent (connection slack_alerts): URLError: "
                    "<urlopen error [Errno 111] Connection refused>"],
        "unconnected": [f"INFO {ALERTS}: success notice: {GOLD_TEXT}",
                        f"WARNING {ALERTS}: no slack_alerts connection: alert not sent: {GOLD_TEXT}"],
        "missing": [],
        "bad-setting": [],
    }
    assert outcomes(result) == [
        "RETURNED off False",
        "RETURNED refused False",
        "RETURNED unconnected False",
        f"RAISED missing RuntimeError dashboard.gold_summary exited with 1: gold_summary: cannot read Gold "
        f"(DuckDB {missing}): no Gold warehouse at {missing}",
        "RAISED bad-setting RuntimeError conf.settings exited with 2: settings: configuration error: "
        "alerts.success_notices: expected true/false, got 'sometimes' (from environment "
        "STOCKLAKE_ALERTS_SUCCESS_NOTICES)",
    ]
    # Nothing reached the webhook: off, refused, no connection, and no summary to send.
    assert requests == []
