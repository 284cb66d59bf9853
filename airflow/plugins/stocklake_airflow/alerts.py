"""Failure alerts, and success notices, to Slack through an incoming webhook held in an Airflow connection (never
in DAG code).

    default_args = {"on_failure_callback": slack_failure_alert}      # tasks (or a DAG's on_failure_callback)
    post_slack("watchdog: no batch for 10 minutes")                  # any other message
    build >> success_notice("gold_summary_notice", "dashboard.gold_summary", timeout=timedelta(minutes=5))

A success notice is a task: unless the pipeline setting alerts.success_notices is false (read when it runs), it runs
a job of the pipeline (`python -m <module>` in the job environment) that prints one JSON line, and posts that line's
`text`. The job holds the logic (what to count, how to word it); this module only carries its text to Slack.

The connection (default id `slack_alerts`, type `slackwebhook`) comes from wherever Airflow reads connections,
e.g. the environment: AIRFLOW_CONN_SLACK_ALERTS='{"conn_type": "slackwebhook", "password":
"https://hooks.slack.com/services/T…/B…/…"}' (or the token path T…/B…/… as the password: the host defaults to
hooks.slack.com/services). Without it an alert is skipped with one warning line. Sending never raises: a failing
alert must not replace the task's own failure; it is logged instead. The webhook URL and token are never logged:
the client library logs the full URL when it retries, so it gets a logger that only passes warnings and errors,
and every message logged here has the token removed.
"""
from __future__ import annotations

import json
import logging
from datetime import timedelta
from typing import Any, Mapping, Sequence

from stocklake_airflow.environment import JOB_PYTHON, first_line, job_setting, run_job

log = logging.getLogger(__name__)

DEFAULT_CONN_ID = "slack_alerts"
HTTP_TIMEOUT_SECONDS = 10
MAX_ERROR_CHARS = 300
REDACTED = "***"
# The pipeline setting (conf/pipeline.yaml) that turns success notices off.
SUCCESS_NOTICES_SETTING = "alerts.success_notices"


class _RedactSecrets(logging.Filter):
    """Replaces known secrets in records of the Slack client's logger."""

    def __init__(self) -> None:
        super().__init__()
        self.secrets: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = _redact(message, self.secrets)
        if redacted != message:
            record.msg, record.args = redacted, None
        return True


_client_redaction = _RedactSecrets()
# slack_sdk logs the webhook URL at debug, and at info when it retries; warnings and errors carry no URL.
_client_log = logging.getLogger(f"{__name__}.slack_client")
_client_log.setLevel(logging.WARNING)
_client_log.addFilter(_client_redaction)


def _redact(text: str, secrets: set[str]) -> str:
    for secret in sorted(secrets, key=len, reverse=True):
        text = text.replace(secret, REDACTED)
    return text


def _slack_escape(text: str) -> str:
    # Slack's message formatting reserves these three characters; everything else is sent as is.
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _airflow_redact(text: str) -> str:
    """Airflow's secrets masker on the message (connection passwords etc. seen by this process), when loaded."""
    try:
        from airflow.sdk.log import redact
    except ImportError:  # pragma: no cover - other Airflow layouts
        return text
    redacted = redact(text)
    return redacted if isinstance(redacted, str) else text


def _attr(obj: object, name: str) -> Any:
    """obj.name, or None when it is missing or cannot be computed (a computed property of a partial context)."""
    try:
        return getattr(obj, name, None)
    except Exception:  # noqa: BLE001 - the alert goes out with what is known
        return None


def failure_text(context: Mapping[str, Any]) -> str:
    """The alert for a failed task, or a failed DAG run (a DAG callback's context has a `reason`): dag, task, run,
    try, the error's first line, the log URL."""
    ti = context.get("ti") or context.get("task_instance")
    dag_run = context.get("dag_run")
    dag = context.get("dag")
    dag_id = getattr(ti, "dag_id", None) or getattr(dag, "dag_id", None) or getattr(dag_run, "dag_id", None) or "?"
    run_id = context.get("run_id") or getattr(ti, "run_id", None) or getattr(dag_run, "run_id", None) or "?"
    task_id = getattr(ti, "task_id", None)
    task = f"task {task_id}, try {_attr(ti, 'try_number') or '?'}" if task_id is not None else None
    if "reason" in context:
        lines = [f"Airflow DAG run failed: dag {dag_id}, run {run_id}" + (f", last task {task}" if task else "")]
    else:
        lines = [f"Airflow task failed: dag {dag_id}, run {run_id}" + (f", {task}" if task else "")]
    error = context.get("exception")
    if isinstance(error, BaseException):
        message = first_line(error)
        lines.append(f"Error: {type(error).__name__}: {message}" if message else f"Error: {type(error).__name__}")
    elif error:
        lines.append(f"Error: {first_line(error)}")
    if context.get("reason"):
        lines.append(f"Reason: {first_line(context['reason'])}")
    log_url = _attr(ti, "log_url") if task_id is not None else None
    if log_url:
        lines.append(f"Log: {log_url}")
    return _slack_escape(_airflow_redact("\n".join(lines)))


def post_slack(text: str, conn_id: str = DEFAULT_CONN_ID) -> bool:
    """Post text to the incoming webhook of connection conn_id; True when Slack accepted it. Never raises."""
    secrets: set[str] = set()
    try:
        # Imported here: DAG files import this module, and parsing them should not load the Slack client.
        from airflow.providers.slack.hooks.slack_webhook import SlackWebhookHook
        from airflow.sdk import BaseHook
        from airflow.sdk.exceptions import AirflowNotFoundException

        try:
            connection = BaseHook.get_connection(conn_id)
        except AirflowNotFoundException:
            log.warning("no %s connection: alert not sent: %s", conn_id, first_line(text))
            return False
        token = (connection.password or "").strip()
        secrets = {token} if token else set()
        _client_redaction.secrets |= secrets
        hook = SlackWebhookHook(slack_webhook_conn_id=conn_id, timeout=HTTP_TIMEOUT_SECONDS, logger=_client_log)
        hook.send_text(text)
    except Exception as err:  # noqa: BLE001 - an alert must never fail its caller
        log.error("slack alert not sent (connection %s): %s: %s", conn_id, type(err).__name__,
                  _redact(first_line(err), secrets))
        return False
    log.info("slack alert sent (connection %s)", conn_id)
    return True


def slack_failure_alert(context: Mapping[str, Any]) -> None:
    """on_failure_callback for tasks and DAGs: post failure_text(context) to the `slack_alerts` connection."""
    try:
        post_slack(failure_text(context))
    except Exception as err:  # noqa: BLE001 - the task's own failure is what must surface, not ours
        log.error("slack alert failed: %s: %s", type(err).__name__, first_line(err))


def success_notices_enabled(setting: str = SUCCESS_NOTICES_SETTING) -> bool:
    """The boolean pipeline setting `setting` (conf/pipeline.yaml plus overrides), read through the job environment."""
    value = job_setting(setting)
    if value not in ("true", "false"):
        raise RuntimeError(f"{setting}: expected true or false, got {value!r}")
    return value == "true"


def post_job_notice(module: str, args: Sequence[str] = (), *, enabled_by: str = SUCCESS_NOTICES_SETTING,
                    conn_id: str = DEFAULT_CONN_ID, timeout: float = 300) -> bool:
    """Unless the setting enabled_by is false: run `python -m module *args` in the job environment and post the
    `text` of the JSON line it prints last. True when Slack accepted it. A job that fails (or prints no text)
    raises, so the task fails and alerts; Slack being unreachable never does (post_slack logs it)."""
    if not success_notices_enabled(enabled_by):
        log.info("success notice off (%s is false): nothing posted", enabled_by)
        return False
    output = run_job([JOB_PYTHON, "-m", module, *args], timeout)
    lines = [line for line in output.splitlines() if line.strip()]
    try:
        text = json.loads(lines[-1])["text"]
    except (IndexError, ValueError, KeyError, TypeError):
        raise RuntimeError(f"{module} printed no JSON line with a text: {first_line(output) or 'nothing'}") \
            from None
    if not isinstance(text, str) or not text.strip():
        raise RuntimeError(f"{module} printed an empty text")
    log.info("success notice: %s", text)
    return post_slack(_slack_escape(text), conn_id)


def success_notice(task_id: str, module: str, args: Sequence[str] = (), *, timeout: timedelta,
                   enabled_by: str = SUCCESS_NOTICES_SETTING, **kwargs: Any) -> Any:
    """A task running post_job_notice(module, args): put it downstream of what it reports on, so it runs only after
    that succeeded."""
    from airflow.providers.standard.operators.python import PythonOperator

    return PythonOperator(
        task_id=task_id,
        python_callable=post_job_notice,
        op_kwargs={"module": module, "args": list(args), "enabled_by": enabled_by,
                   "timeout": timeout.total_seconds()},
        execution_timeout=timeout,
        **kwargs,
    )
