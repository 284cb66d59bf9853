"""The real Prometheus (Debian's package, started by scripts/services.py on conf/prometheus) scrapes the running
stream's metrics endpoint; the stream stops, and StreamDown becomes firing in Prometheus's own alerts API; the
stream starts again from its checkpoint, and the alert resolves. Meanwhile the watchdog and the freshness check
push their gauges through the Pushgateway, and Prometheus holds what they saw.

At the end the dashboard's health page (/health), in headless Chromium, draws what this Prometheus holds.

The test's own Prometheus and Pushgateway (their own ports and runtime folder) watch the test's own stream."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.parse
import urllib.request

import pytest
from selenium.webdriver.support.ui import WebDriverWait

from conf.settings import load_settings
from dashboard.health import PANELS
from scripts.dashboard_screenshot import chromium, page_current, plotly_traces, serve
from scripts.services import Prometheus, Pushgateway
from tests.integration.stack import REPO, distinct_free_ports, producer_args, run_producer, start_stream, wait_for

pytestmark = pytest.mark.integration

EVENTS = 300
WAITING = 50
SATURDAY = "2026-11-21T15:00:00Z"  # the market is closed, whatever day the test runs
# StreamDown holds `for: 1m` before it fires; promtool's unit tests (conf/prometheus/tests) prove that hold. This
# test's own Prometheus, which proves the wiring (a real scrape of the real stream, the alert in Prometheus's API),
# holds it 10 s instead: the minute was a minute of one pytest worker doing nothing.
STREAM_DOWN_HOLD = ("        for: 1m\n", "        for: 10s\n")
FIRING_TIMEOUT_S = 90


class ShortHoldPrometheus(Prometheus):
    """The repo's Prometheus with StreamDown's hold shortened in its copy of the rules (and nothing else changed)."""

    def render(self) -> None:
        super().render()
        (rules,) = (self.dir / "rules").glob("*.yml")
        text = rules.read_text()
        alert = text.index("- alert: StreamDown")
        hold = text.index(STREAM_DOWN_HOLD[0], alert)
        assert hold < text.index("- alert:", alert + 1), "StreamDown's `for: 1m` moved: update STREAM_DOWN_HOLD"
        rules.write_text(text[:hold] + STREAM_DOWN_HOLD[1] + text[hold + len(STREAM_DOWN_HOLD[0]):])


def api(prometheus: Prometheus, path: str, **params: str) -> dict:
    url = f"http://{prometheus.address()}/api/v1/{path}?{urllib.parse.urlencode(params)}"
    with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 (the test's local Prometheus)
        body = json.load(response)
    assert body["status"] == "success", body
    return body["data"]


def scraped(prometheus: Prometheus, query: str) -> float | None:
    """The value Prometheus holds for an instant query of one series (None: no such series)."""
    result = api(prometheus, "query", query=query)["result"]
    return float(result[0]["value"][1]) if result else None


def stream_down_state(prometheus: Prometheus) -> str | None:
    """StreamDown's state in Prometheus's alerts API: pending, firing, or None when it is not active."""
    states = [alert["state"] for alert in api(prometheus, "alerts")["alerts"]
              if alert["labels"]["alertname"] == "StreamDown"]
    return states[0] if states else None


def health_page_traces(driver) -> dict[str, list[dict]] | None:
    """{panel key: the traces its chart drew} once every panel of the health page is drawn and current."""
    if not page_current(driver):
        return None
    traces = {panel.key: plotly_traces(driver, f"health-{panel.key}") for panel in PANELS}
    return traces if all(shown is not None for shown in traces.values()) else None


def stop(job) -> None:
    os.killpg(job.pid, signal.SIGTERM)  # as an operator stops it: between batches
    job.wait(timeout=120)


def test_stream_down_fires_when_the_stream_stops_and_resolves_after_a_restart(isolated, tmp_path):
    _, env = isolated
    stream_port, prometheus_port, pushgateway_port = distinct_free_ports(3)
    env = {**env, "STOCKLAKE_STREAM_METRICS_PORT": str(stream_port),
           "STOCKLAKE_MONITORING_PROMETHEUS_PORT": str(prometheus_port),
           "STOCKLAKE_MONITORING_PUSHGATEWAY_PORT": str(pushgateway_port)}
    settings = load_settings(env)
    monitoring = [Pushgateway(settings, home=tmp_path), ShortHoldPrometheus(settings, home=tmp_path)]
    prometheus = monitoring[1]
    log = tmp_path / "stream.log"
    job = None
    try:
        for service in monitoring:
            service.up()
        assert json.loads((tmp_path / "prometheus" / "targets" / "stream.json").read_text()) == [
            {"targets": [f"127.0.0.1:{stream_port}"]}]
        run_producer(env, producer_args(EVENTS, seed=23, start_time="2026-11-20T15:00:00Z"), tmp_path)

        job = start_stream(env, log)
        # Scraped from the running job: its own count of the records it took in.
        wait_for(lambda: scraped(prometheus, 'stocklake_stream_rows_in_total{query="silver_trades"}') == EVENTS,
                 "Prometheus to scrape the stream's count of every record", timeout=240, interval=2)
        assert scraped(prometheus, 'up{job="stocklake_stream"}') == 1
        assert stream_down_state(prometheus) is None

        stop(job)
        # Records arrive while it is down; the watchdog and the freshness check push what they see.
        run_producer(env, producer_args(WAITING, seed=24, start_time="2026-11-20T16:00:00Z"), tmp_path)
        pushing = {**env, "STOCKLAKE_MONITORING_PUSHGATEWAY_URL": f"http://{monitoring[0].address()}"}
        for job_args in (["spark_jobs.watchdog", "--entity", "trades"],
                         ["spark_jobs.freshness", "--now", SATURDAY]):
            checked = subprocess.run([sys.executable, "-m", *job_args], env=pushing, cwd=REPO, capture_output=True,
                                     text=True, timeout=300)
            # The watchdog: 1 (no producer heartbeat on this namespace); the freshness check: 0 (closed market).
            assert checked.returncode in (0, 1) and "metrics_not_pushed" not in checked.stderr, (
                f"{job_args[0]} exited {checked.returncode}\n{checked.stdout}\n{checked.stderr}")
        pushed = {'stocklake_watchdog_lag_records{query="silver_trades"}': WAITING,
                  'stocklake_watchdog_query_healthy{query="silver_trades"}': 1,
                  'stocklake_silver_fresh{entity="trades"}': 1,  # a Saturday: closed
                  "stocklake_market_open": 0}
        wait_for(lambda: {query: scraped(prometheus, query) for query in pushed} == pushed,
                 f"the pushed gauges in Prometheus: {pushed}", timeout=60, interval=2)
        assert scraped(prometheus, 'stocklake_watchdog_lag_seconds{query="silver_trades"}') > 0

        wait_for(lambda: stream_down_state(prometheus) == "firing", "StreamDown to fire after the stream stopped",
                 timeout=FIRING_TIMEOUT_S, interval=2)
        assert scraped(prometheus, 'up{job="stocklake_stream"}') == 0

        job = start_stream(env, log)  # from its checkpoint
        wait_for(lambda: stream_down_state(prometheus) is None, "StreamDown to resolve after the restart",
                 timeout=240, interval=2)
        assert scraped(prometheus, 'up{job="stocklake_stream"}') == 1
        # The restarted job takes exactly the records that waited: nothing twice.
        wait_for(lambda: scraped(prometheus, 'stocklake_stream_rows_in_total{query="silver_trades"}') == WAITING,
                 "the restarted stream to take the records that waited", timeout=240, interval=2)

        # The dashboard's health page, as an operator opens it, draws the same series.
        page_env = {**env, "STOCKLAKE_MONITORING_PROMETHEUS_URL": f"http://{prometheus.address()}"}
        with serve(page_env, tmp_path / "dashboard.log") as url, chromium(1600, 1800) as driver:
            driver.get(f"{url}/health")
            traces = WebDriverWait(driver, 90, poll_frequency=0.5).until(health_page_traces, "the health page")
        lines = {key: {trace["name"]: trace["y"] for trace in shown} for key, shown in traces.items()}
        assert set(lines["throughput"]) == set(lines["batch-duration"]) == {"bronze_trades", "silver_trades"}
        assert lines["lag"]["silver_trades"][-1] == WAITING  # the watchdog's push, as Prometheus holds it
        assert lines["latency"]["silver_trades"][-1] > 0
        assert set(lines["quarantine"]) == {"silver_trades"}
        assert lines["dlq"] == {}  # this producer serves no metrics: nothing scraped, an empty chart
    finally:
        if job is not None and job.poll() is None:
            stop(job)
        for service in reversed(monitoring):
            service.down()
