"""The dashboard's "Pipeline health" page: throughput, lag, latency, quarantine and DLQ rates over time, from
Prometheus (dashboard/health.py reads, dashboard/views.py draws). dashboard/app.py serves it at /health."""
from __future__ import annotations

from datetime import datetime, timezone

import streamlit as st

from conf.settings import Settings, load_settings
from dashboard import health, views

# Stable key: tests and users find the window picker by it (CSS class st-key-<key>).
WINDOW_KEY = "health_window"


def _panels(settings: Settings, window: str) -> None:
    url = health.prometheus_url(settings)
    now = datetime.now(timezone.utc)
    try:
        points = health.load_health(url, now, health.WINDOWS[window])
    except health.PrometheusUnavailable as error:
        st.warning(f"{error}. Start it with `make monitoring-up` (or set monitoring.prometheus_url); the page "
                   f"reads it again every {settings.dashboard.refresh_seconds} s.", icon=":material/cloud_off:")
        return
    for start in range(0, len(health.PANELS), 2):
        for column, panel in zip(st.columns(2), health.PANELS[start:start + 2]):
            with column, st.container(key=f"health-{panel.key}"):
                st.plotly_chart(views.health_figure(points[panel.key], panel.title, panel.unit, window),
                                config={"displaylogo": False})
                st.caption(panel.note)
    st.caption(f"Read from Prometheus at {url} at {now:%H:%M:%S} UTC; refreshes every "
               f"{settings.dashboard.refresh_seconds} s. The alert rules on the same series: conf/prometheus/rules.")


def main() -> None:
    st.title("stocklake · pipeline health")
    try:
        settings = load_settings()
    except ValueError as error:
        st.error(f"Configuration error: {error}")
        st.stop()
    window = st.selectbox("Window", list(health.WINDOWS), index=1, key=WINDOW_KEY)
    st.fragment(run_every=settings.dashboard.refresh_seconds)(_panels)(settings, window)


main()
