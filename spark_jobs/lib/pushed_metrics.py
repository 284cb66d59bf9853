"""Gauges the periodic checks push to the Prometheus Pushgateway, where Prometheus scrapes them for the alert rules
of conf/prometheus: the stream watchdog (spark_jobs/watchdog.py, job "stocklake_watchdog") and the Silver freshness
check (spark_jobs/freshness.py, job "stocklake_freshness"). Each run replaces its job's whole group, so a query or
sender that is gone stops being reported. monitoring.pushgateway_url "" pushes nothing.

Labels carry query, entity and sender names only, never a message or a secret.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Iterable

WATCHDOG_JOB = "stocklake_watchdog"
FRESHNESS_JOB = "stocklake_freshness"
PUSH_TIMEOUT_SECONDS = 10

log = logging.getLogger("stocklake.pushed_metrics")


@dataclass(frozen=True)
class Sample:
    name: str
    help: str
    value: float
    labels: dict[str, str] = field(default_factory=dict)


def watchdog_samples(reports: Iterable[dict], verdicts: Iterable, now_seconds: float) -> list[Sample]:
    """The watchdog's results as gauges: per query its health, lag (records, and seconds of the oldest unread
    record) and batch age where known; per heartbeat sender its health and, unless it stopped cleanly, its age;
    and when this run happened (WatchdogNotRunning watches that)."""
    samples = [Sample("stocklake_watchdog_last_run_timestamp_seconds", "When the watchdog last ran (Unix time)",
                      now_seconds)]
    for report in reports:
        query = {"query": report["query"]}
        samples.append(Sample("stocklake_watchdog_query_healthy", "1 when the query's checks pass",
                              float(report["healthy"]), query))
        for key, name, doc in (("lag", "lag_records", "Kafka records the query has not read"),
                               ("lag_seconds", "lag_seconds", "Age of the oldest record the query has not read"),
                               ("batch_age_seconds", "batch_age_seconds", "Seconds since the query's last batch")):
            if report.get(key) is not None:
                samples.append(Sample(f"stocklake_watchdog_{name}", doc, float(report[key]), query))
    for verdict in verdicts:
        sender = {"sender": verdict.sender}
        samples.append(Sample("stocklake_watchdog_heartbeat_healthy", "1 when the sender's heartbeat is fresh",
                              float(verdict.healthy), sender))
        if verdict.age_seconds is not None and verdict.state != "stopped":
            samples.append(Sample("stocklake_watchdog_heartbeat_age_seconds", "Age of the sender's newest heartbeat",
                                  float(verdict.age_seconds), sender))
    return samples


def freshness_samples(entity: str, fresh: bool, newest_age_seconds: float | None, market_open: bool,
                      now_seconds: float) -> list[Sample]:
    """The freshness check's verdict on Silver `entity`, and whether the market is open by its calendar (the alert
    rules never guess market hours themselves)."""
    labels = {"entity": entity}
    samples = [Sample("stocklake_freshness_last_run_timestamp_seconds", "When the freshness check last ran",
                      now_seconds),
               Sample("stocklake_market_open", "1 while the market is open (market_hours, its calendar)",
                      float(market_open)),
               Sample("stocklake_silver_fresh", "1 unless Silver is stale while the market is open", float(fresh),
                      labels)]
    if newest_age_seconds is not None:
        samples.append(Sample("stocklake_silver_newest_event_age_seconds", "Age of Silver's newest event",
                              newest_age_seconds, labels))
    return samples


def push(url: str, job: str, samples: list[Sample]) -> str | None:
    """Push the samples as job `job`'s group (replacing what it held); None when pushed or not configured, else
    why not (one line, without the URL, which may hold credentials), also logged as a `metrics_not_pushed`
    warning: the check's own verdict stands either way."""
    if not url:
        return None
    from prometheus_client import CollectorRegistry, Gauge, push_to_gateway

    registry = CollectorRegistry()
    gauges: dict[str, Gauge] = {}
    for sample in samples:
        if sample.name not in gauges:
            gauges[sample.name] = Gauge(sample.name, sample.help, sorted(sample.labels), registry=registry)
        gauge = gauges[sample.name]
        (gauge.labels(**sample.labels) if sample.labels else gauge).set(sample.value)
    try:
        push_to_gateway(url, job=job, registry=registry, timeout=PUSH_TIMEOUT_SECONDS)
    except OSError as exc:  # URLError and HTTPError are OSErrors
        why = getattr(exc, "reason", None) or exc
        reason = f"cannot push to the Pushgateway (monitoring.pushgateway_url): {type(exc).__name__}: {why}"
        log.warning(json.dumps({"event": "metrics_not_pushed", "job": job, "reason": reason}))
        return reason
    return None
