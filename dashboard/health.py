"""The pipeline's health over time, read from Prometheus's HTTP API (query_range), without Streamlit.

Prometheus (conf/prometheus, `make monitoring-up`) scrapes the stream's and the producer's endpoints and the
Pushgateway the watchdog pushes to; the panels below are the series an operator watches beside the alert rules
(conf/prometheus/rules), each line one query, producer DLQ reason or the like.
"""
from __future__ import annotations

import json
import math
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from datetime import datetime, timedelta

import pandas as pd

from conf.settings import Settings

# How far back the page looks (label -> minutes) and how many points a line holds at most.
WINDOWS = {"15 minutes": 15, "1 hour": 60, "6 hours": 360, "24 hours": 1440}
POINTS = 240
TIMEOUT_SECONDS = 10


@dataclass(frozen=True)
class Panel:
    key: str      # stable: the page's container key (st-key-health-<key> in the browser)
    title: str
    unit: str
    query: str    # PromQL: one series per value of `label`
    label: str
    note: str     # where the figure comes from, shown under the chart


PANELS = (
    Panel("throughput", "Throughput", "rows/s", "sum by (query) (rate(stocklake_stream_rows_in_total[1m]))",
          "query", "Rows each streaming query read from Kafka, per second over the last minute (the stream)."),
    Panel("lag", "Lag behind Kafka", "records", "max by (query) (stocklake_watchdog_lag_records)", "query",
          "Records in the topic that the query's checkpoint has not reached (the watchdog, each time it runs)."),
    Panel("latency", "Latency: age of the oldest unread record", "s",
          "max by (query) (stocklake_watchdog_lag_seconds)", "query",
          "How long the oldest record the query has not read has waited in Kafka (the watchdog)."),
    Panel("batch-duration", "Micro-batch duration", "s",
          "max by (query) (stocklake_stream_batch_duration_seconds)", "query",
          "Wall-clock time of each query's last micro-batch (the stream)."),
    Panel("quarantine", "Quarantined share of rows", "%",
          '100 * sum by (query) (rate(stocklake_stream_rows_quarantined_total{query=~"silver_.*"}[5m]))'
          ' / sum by (query) (rate(stocklake_stream_rows_in_total{query=~"silver_.*"}[5m]))', "query",
          "Rows that broke the contract, over 5 minutes, as the Silver queries count them (no line while idle)."),
    Panel("dlq", "Producer messages sent to the DLQ", "messages/s",
          "sum by (reason) (rate(stocklake_producer_dlq_messages_total[5m]))", "reason",
          "Messages the producer could not publish as events, by reason, per second over 5 minutes."),
)


class PrometheusUnavailable(RuntimeError):
    """Prometheus could not be reached or refused a query; the message says which and why."""


def prometheus_url(settings: Settings) -> str:
    """monitoring.prometheus_url, or the local Prometheus `make monitoring-up` starts."""
    from scripts.services import Prometheus

    return (settings.monitoring.prometheus_url or f"http://{Prometheus(settings).address()}").rstrip("/")


def step_seconds(window_minutes: int) -> int:
    """The resolution that gives a line at most POINTS points, never finer than Prometheus's 5 s scrapes."""
    return max(5, math.ceil(window_minutes * 60 / POINTS))


def query_range(base_url: str, query: str, start: datetime, end: datetime, step: int) -> list[dict]:
    """Prometheus's matrix result: [{"metric": {label: value}, "values": [[unix seconds, "value"], ...]}, ...]."""
    params = urllib.parse.urlencode({"query": query, "start": start.timestamp(), "end": end.timestamp(),
                                     "step": step})
    url = f"{base_url}/api/v1/query_range?{params}"
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_SECONDS) as response:  # noqa: S310 (a configured URL)
            body = json.load(response)
    except urllib.error.HTTPError as error:  # a refused query answers 400/422 with Prometheus's own reason
        try:
            reason = json.load(error).get("error", error.reason)
        except ValueError:
            reason = error.reason
        raise PrometheusUnavailable(f"Prometheus at {base_url} refused a query: {reason}") from None
    except (OSError, ValueError) as error:
        raise PrometheusUnavailable(f"Prometheus at {base_url} is unreachable: {error}") from None
    if body.get("status") != "success":
        raise PrometheusUnavailable(f"Prometheus at {base_url} answered {body.get('error', body)}")
    return body["data"]["result"]


def as_frame(result: list[dict], label: str) -> pd.DataFrame:
    """Long form, one row per point: time (UTC, naive), series (the label's value), value (NaN/Inf dropped)."""
    rows = [(pd.Timestamp(float(t), unit="s"), series["metric"].get(label, "(none)"), float(v))
            for series in result for t, v in series["values"]]
    frame = pd.DataFrame(rows, columns=["time", "series", "value"]).astype({"value": "float64"})
    finite = frame["value"].abs() < math.inf  # NaN compares false too
    return frame[finite].sort_values(["series", "time"], ignore_index=True)


def load_health(base_url: str, end: datetime, window_minutes: int) -> dict[str, pd.DataFrame]:
    """{panel key: its points} for the window ending at `end`."""
    start, step = end - timedelta(minutes=window_minutes), step_seconds(window_minutes)
    return {panel.key: as_frame(query_range(base_url, panel.query, start, end, step), panel.label)
            for panel in PANELS}
