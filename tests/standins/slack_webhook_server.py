"""A faithful local stand-in for a Slack incoming webhook (https://hooks.slack.com/services/T…/B…/…), for tests:
the machines cannot reach Slack, and a mocked client would not exercise the real HTTP client (slack_sdk's
WebhookClient, through Airflow's SlackWebhookHook).

Behaviour copied from the real service (https://api.slack.com/messaging/webhooks#handling_errors):
- POST /services/<token path> with a JSON body holding `text` (or `blocks` / `attachments`) -> 200, body `ok`
  (text/html, as Slack answers);
- a token path that is not the webhook's -> 403 `invalid_token`;
- a body that is not a JSON object -> 400 `invalid_payload`; an object with no text, blocks or attachments ->
  400 `no_text`;
- any other method than POST -> 405 (Slack answers `invalid_method`-style errors for GET; a test needs only "not
  accepted").

For tests: `fail_with(status, body)` makes every accepted request answer that instead (a Slack outage: 500, or a
revoked webhook: 403 `invalid_token`), `recover()` undoes it; a record of every request (the path with the token
replaced by MASKED, so a test can compare it without handling the secret; whether the token matched; the parsed
JSON body; the status answered). Runs on 127.0.0.1, port 0, in a thread; use it as a context manager.
"""
from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import Any

from tests.standins.http_server import ThreadedHttpStandIn

SERVICES_PREFIX = "/services/"
MASKED = "<token>"


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str                 # as sent, with the token path replaced by MASKED
    authorized: bool          # the token path was the webhook's
    body: Any                 # the parsed JSON body (None when it was not JSON)
    raw_body: bytes
    content_type: str | None
    status: int               # what was answered


class SlackWebhookStandIn(ThreadedHttpStandIn):
    """Local stand-in for one Slack incoming webhook; `base_url` is the connection's host, `token` its password."""

    def __init__(self, token: str = "T0STANDIN/B0STANDIN/standin0webhook0secret"):
        self.token = token.strip("/")
        self._lock = threading.Lock()
        self._requests: list[RecordedRequest] = []
        self._failure: tuple[int, str] | None = None

    @property
    def base_url(self) -> str:
        """What replaces https://hooks.slack.com/services (the connection's host)."""
        return f"http://127.0.0.1:{self.port}{SERVICES_PREFIX.rstrip('/')}"

    @property
    def webhook_url(self) -> str:
        """The full webhook URL (secret, like Slack's)."""
        return f"{self.base_url}/{self.token}"

    # -- scripting ----------------------------------------------------------------------------------------

    def fail_with(self, status: int, body: str) -> None:
        """Answer every authorized, well-formed request with (status, body) until recover()."""
        with self._lock:
            self._failure = (status, body)

    def recover(self) -> None:
        with self._lock:
            self._failure = None

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    def messages(self) -> list[str]:
        """The `text` of every message Slack would have posted (200 answers)."""
        return [r.body["text"] for r in self.requests if r.status == 200 and "text" in r.body]

    # -- serving (called from handler threads) ------------------------------------------------------------

    def _answer_for(self, authorized: bool, body: Any) -> tuple[int, str]:
        if not authorized:
            return 403, "invalid_token"
        if not isinstance(body, dict):
            return 400, "invalid_payload"
        if not any(body.get(key) for key in ("text", "blocks", "attachments")):
            return 400, "no_text"
        with self._lock:
            failure = self._failure
        return failure or (200, "ok")

    def _record(self, request: RecordedRequest) -> None:
        with self._lock:
            self._requests.append(request)


class _Handler(BaseHTTPRequestHandler):
    standin: SlackWebhookStandIn  # set on the per-server subclass
    server_version = "slack-webhook-standin"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the base class's name)
        pass  # keep test output clean (request lines carry the token)

    def _masked_path(self) -> tuple[str, bool]:
        path = self.path.split("?", 1)[0]
        if path.startswith(SERVICES_PREFIX):
            token = path[len(SERVICES_PREFIX):].strip("/")
            return SERVICES_PREFIX + MASKED, token == self.standin.token
        return path, False

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            body = None
        path, authorized = self._masked_path()
        status, answer = self.standin._answer_for(authorized, body)
        self.standin._record(RecordedRequest("POST", path, authorized, body, raw, self.headers.get("Content-Type"),
                                             status))
        self._send(status, answer)

    def do_GET(self) -> None:  # noqa: N802
        path, authorized = self._masked_path()
        self.standin._record(RecordedRequest("GET", path, authorized, None, b"", None, 405))
        self._send(405, "invalid_method")

    def _send(self, status: int, answer: str) -> None:
        payload = answer.encode("utf-8")
        try:
            self.send_response(status)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up first


SlackWebhookStandIn.handler_class = _Handler
SlackWebhookStandIn.thread_name = "slack-webhook-standin"
