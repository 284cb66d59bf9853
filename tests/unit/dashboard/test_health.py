"""dashboard/health.py and the health page (dashboard/health_page.py, Streamlit's AppTest) against a stand-in of
Prometheus's query_range API; the real Prometheus feeds the page in tests/integration/test_prometheus.py."""
from __future__ import annotations

import base64
import json
import urllib.parse
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from conf.settings import load_settings
from dashboard import health
from tests.standins.http_server import ThreadedHttpStandIn
from tests.unit.dashboard.test_app import app_env  # noqa: F401 (the fixture)

PAGE = str(Path(__file__).resolve().parents[3] / "dashboard" / "health_page.py")
NOW = datetime(2026, 12, 5, 15, 0, tzinfo=timezone.utc)


def matrix(label: str, series: dict[str, list[tuple[float, str]]]) -> list[dict]:
    return [{"metric": {label: name}, "values": [[t, v] for t, v in points]} for name, points in series.items()]


class PrometheusApiStandIn(ThreadedHttpStandIn):
    """Answers /api/v1/query_range with `results[query]` (an empty matrix for any other query), or with
    `refusal` (HTTP 400, Prometheus's error body) when set; records every request's parameters."""

    def __init__(self, results: dict[str, list[dict]] | None = None, refusal: str | None = None):
        self.results, self.refusal, self.requests = results or {}, refusal, []

    class handler_class(BaseHTTPRequestHandler):  # noqa: N801 (the stand-in's handler)
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            standin = self.standin
            url = urllib.parse.urlparse(self.path)
            params = dict(urllib.parse.parse_qsl(url.query))
            standin.requests.append((url.path, params))
            if standin.refusal:
                status, body = 400, {"status": "error", "errorType": "bad_data", "error": standin.refusal}
            else:
                status = 200
                body = {"status": "success", "data": {"resultType": "matrix",
                                                      "result": standin.results.get(params["query"], [])}}
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args) -> None:
            pass


def plotted(values) -> list:
    """A trace's values from a figure's JSON: plotly writes numeric arrays as base64 typed arrays."""
    if isinstance(values, dict) and "bdata" in values:
        return np.frombuffer(base64.b64decode(values["bdata"]), dtype=values["dtype"]).tolist()
    return values


THROUGHPUT = next(panel for panel in health.PANELS if panel.key == "throughput")


def test_each_panel_is_one_query_over_the_window_at_a_step_of_at_most_240_points():
    results = {THROUGHPUT.query: matrix("query", {
        "silver_trades": [(NOW.timestamp() - 30, "120.5"), (NOW.timestamp() - 15, "NaN"), (NOW.timestamp(), "99")],
        "bronze_trades": [(NOW.timestamp(), "+Inf")]})}
    with PrometheusApiStandIn(results) as prometheus:
        points = health.load_health(f"http://127.0.0.1:{prometheus.port}", NOW, 60)
    assert [params["query"] for _, params in prometheus.requests] == [panel.query for panel in health.PANELS]
    assert {path for path, _ in prometheus.requests} == {"/api/v1/query_range"}
    assert all((float(p["start"]), float(p["end"]), p["step"]) == (NOW.timestamp() - 3600, NOW.timestamp(), "15")
               for _, p in prometheus.requests)
    # NaN (no rows in) and Inf (a ratio over nothing) are gaps in a line, not points.
    expected = pd.DataFrame({"time": [pd.Timestamp("2026-12-05 14:59:30"), pd.Timestamp("2026-12-05 15:00:00")],
                             "series": ["silver_trades", "silver_trades"], "value": [120.5, 99.0]})
    pd.testing.assert_frame_equal(points["throughput"], expected)
    assert all(points[panel.key].empty for panel in health.PANELS if panel is not THROUGHPUT)


@pytest.mark.parametrize(("minutes", "step"), [(15, 5), (60, 15), (360, 90), (1440, 360)])
def test_the_step_keeps_a_line_within_240_points_and_never_finer_than_the_scrapes(minutes, step):
    assert health.step_seconds(minutes) == step


def test_a_refused_query_and_an_unreachable_prometheus_say_which_and_why():
    with PrometheusApiStandIn(refusal='1:1: parse error: unexpected "}"') as prometheus:
        url = f"http://127.0.0.1:{prometheus.port}"
        with pytest.raises(health.PrometheusUnavailable) as refused:
            health.load_health(url, NOW, 15)
    assert str(refused.value) == f'Prometheus at {url} refused a query: 1:1: parse error: unexpected "}}"'
    with pytest.raises(health.PrometheusUnavailable, match=f"^Prometheus at {url} is unreachable: "):
        health.load_health(url, NOW, 15)  # the stand-in has stopped: nothing listens there


def test_the_url_is_the_setting_or_the_local_prometheus():
    assert health.prometheus_url(load_settings({})) == "http://127.0.0.1:19090"
    assert health.prometheus_url(load_settings({"STOCKLAKE_MONITORING_PROMETHEUS_URL": "http://prometheus:9090/"})) \
        == "http://prometheus:9090"


def test_the_page_draws_every_panel_from_prometheus(app_env, monkeypatch):  # noqa: F811 (the fixture)
    now = datetime.now(timezone.utc).timestamp()
    results = {THROUGHPUT.query: matrix("query", {"silver_trades": [(now - 15, "120.5"), (now, "99")]})}
    with PrometheusApiStandIn(results) as prometheus:
        monkeypatch.setenv("STOCKLAKE_MONITORING_PROMETHEUS_URL", f"http://127.0.0.1:{prometheus.port}")
        app = AppTest.from_file(PAGE, default_timeout=60).run()
    assert not app.exception and not app.warning
    assert app.selectbox(key="health_window").value == "1 hour"
    charts = [json.loads(chart.proto.spec) for chart in app.get("plotly_chart")]
    assert [chart["layout"]["title"]["text"] for chart in charts] == [
        f"{panel.title} ({panel.unit})" for panel in health.PANELS]
    throughput = charts[0]["data"]
    assert [(trace["name"], plotted(trace["y"])) for trace in throughput] == [("silver_trades", [120.5, 99.0])]
    assert [caption.value for caption in app.caption][:len(health.PANELS)] == [panel.note for panel in health.PANELS]


def test_without_prometheus_the_page_says_how_to_start_it(app_env, monkeypatch):  # noqa: F811 (the fixture)
    with PrometheusApiStandIn() as prometheus:
        url = f"http://127.0.0.1:{prometheus.port}"
    monkeypatch.setenv("STOCKLAKE_MONITORING_PROMETHEUS_URL", url)  # nothing listens there any more
    app = AppTest.from_file(PAGE, default_timeout=60).run()
    assert not app.exception and not app.get("plotly_chart")
    (warning,) = app.warning
    assert warning.value.startswith(f"Prometheus at {url} is unreachable: ")
    assert "Start it with `make monitoring-up` (or set monitoring.prometheus_url)" in warning.value
