"""spark_jobs/lib/pushed_metrics.py: the watchdog's results as gauges, and a push that never fails its job."""
from __future__ import annotations

import json
import socket

from conf.heartbeat import Verdict
from spark_jobs.lib.pushed_metrics import WATCHDOG_JOB, Sample, freshness_samples, push, watchdog_samples


def report(query: str, healthy: bool, lag=None, lag_seconds=None, batch_age_seconds=None) -> dict:
    return {"query": query, "healthy": healthy, "lag": lag, "lag_seconds": lag_seconds,
            "batch_age_seconds": batch_age_seconds}


def values(samples: list[Sample]) -> dict[tuple, float]:
    return {(s.name, *s.labels.values()): s.value for s in samples}


def test_watchdog_samples_per_query_and_sender():
    reports = [report("bronze_trades", True, lag=37, lag_seconds=12.5, batch_age_seconds=4.0),
               report("silver_trades", False)]  # no checkpoint: health only
    verdicts = [Verdict("stream", True, "fresh", 3.25, [], None),
                Verdict("producer:simulator", True, "stopped", 900.0, [], None),  # stopped cleanly: no age
                Verdict("producer:finnhub-ws", False, "missing", None, ["no heartbeat"], None)]
    assert values(watchdog_samples(reports, verdicts, now_seconds=1_700_000_000.0)) == {
        ("stocklake_watchdog_last_run_timestamp_seconds",): 1_700_000_000.0,
        ("stocklake_watchdog_query_healthy", "bronze_trades"): 1.0,
        ("stocklake_watchdog_lag_records", "bronze_trades"): 37.0,
        ("stocklake_watchdog_lag_seconds", "bronze_trades"): 12.5,
        ("stocklake_watchdog_batch_age_seconds", "bronze_trades"): 4.0,
        ("stocklake_watchdog_query_healthy", "silver_trades"): 0.0,
        ("stocklake_watchdog_heartbeat_healthy", "stream"): 1.0,
        ("stocklake_watchdog_heartbeat_age_seconds", "stream"): 3.25,
        ("stocklake_watchdog_heartbeat_healthy", "producer:simulator"): 1.0,
        ("stocklake_watchdog_heartbeat_healthy", "producer:finnhub-ws"): 0.0,
    }


def test_no_url_pushes_nothing():
    assert push("", WATCHDOG_JOB, [Sample("stocklake_x", "x", 1.0)]) is None


def test_an_unreachable_gateway_is_a_reason_without_the_url(caplog):
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://user:hunter2-secret@127.0.0.1:{port}"  # pragma: allowlist secret
    reason = push(url, WATCHDOG_JOB, [Sample("stocklake_x", "x", 1.0, {"query": "q"})])
    assert reason is not None and reason.startswith("cannot push to the Pushgateway (monitoring.pushgateway_url): ")
    assert "hunter2" not in reason and str(port) not in reason
    # Logged once, as the one warning the jobs leave when a push fails.
    (record,) = [r for r in caplog.records if r.name == "stocklake.pushed_metrics"]
    assert (record.levelname, json.loads(record.getMessage())) == (
        "WARNING", {"event": "metrics_not_pushed", "job": WATCHDOG_JOB, "reason": reason})


def test_freshness_samples_carry_the_verdict_and_the_market():
    assert values(freshness_samples("trades", False, 1200.0, True, now_seconds=1_700_000_000.0)) == {
        ("stocklake_freshness_last_run_timestamp_seconds",): 1_700_000_000.0,
        ("stocklake_market_open",): 1.0,
        ("stocklake_silver_fresh", "trades"): 0.0,
        ("stocklake_silver_newest_event_age_seconds", "trades"): 1200.0,
    }
    # An empty Silver has no newest event: no age, the verdict still there.
    assert values(freshness_samples("trades", True, None, False, now_seconds=1.0)) == {
        ("stocklake_freshness_last_run_timestamp_seconds",): 1.0, ("stocklake_market_open",): 0.0,
        ("stocklake_silver_fresh", "trades"): 1.0}
