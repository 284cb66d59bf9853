"""spark_jobs/watchdog.py: the health rule at its boundaries, Spark's offset log, the lag arithmetic, and how the
heartbeats' verdicts enter the report and the exit code."""
from __future__ import annotations

import json
import os
from datetime import datetime, timedelta, timezone

import pytest

from conf.heartbeat import Heartbeat, build_heartbeat, encode_heartbeat, parse_heartbeat
from spark_jobs import watchdog
from spark_jobs.lib.checkpoints import newest_batch, parse_offset_log
from spark_jobs.watchdog import assess, consumer_lag, main

MAX_AGE, MAX_LAG = 300, 100_000
STALLED = "stalled: 1 records waiting and no batch for 301.0 s (> watchdog.max_batch_age_seconds 300)"

# Files as Spark 4.0 wrote them to MinIO (checkpoint of silver_trades; conf shortened).
OFFSETS_FILE = (
    'v1\n'
    '{"batchWatermarkMs":1795296512723,"batchTimestampMs":1795297132414,"conf":{"spark.sql.streaming.stateStore.'
    'providerClass":"org.apache.spark.sql.execution.streaming.state.RocksDBStateStoreProvider",'
    '"spark.sql.shuffle.partitions":"4"}}\n'
    '{"market.trades.v1":{"0":883,"1":2576,"2":0,"3":903,"4":583,"5":0}}')
INITIAL_OFFSETS_FILE = '\x00v1\n{"market.trades.v1":{"0":0,"1":0,"2":0,"3":0,"4":0,"5":0}}'


@pytest.mark.parametrize("age, lag, healthy, reasons", [
    # Caught up: healthy however long ago the last batch was (an idle market).
    (10_000_000, 0, True, []),
    # Records waiting: healthy while batches are recent, the limit itself included.
    (0, 1, True, []),
    (300, 1, True, []),
    (300.5, 1, False, ["stalled: 1 records waiting and no batch for 300.5 s (> watchdog.max_batch_age_seconds 300)"]),
    (301, 1, False, [STALLED]),
    # Too far behind, even with a batch just committed; the limit itself is fine.
    (0, 100_000, True, []),
    (0, 100_001, False, ["consumer lag 100,001 records > watchdog.max_consumer_lag 100,000"]),
    (301, 100_001, False, ["consumer lag 100,001 records > watchdog.max_consumer_lag 100,000",
                           "stalled: 100,001 records waiting and no batch for 301.0 s "
                           "(> watchdog.max_batch_age_seconds 300)"]),
])
def test_assess_at_the_boundaries(age, lag, healthy, reasons):
    assert assess(age, lag, MAX_AGE, MAX_LAG) == (healthy, reasons)


def test_offset_log_files_are_parsed_per_topic_and_partition():
    assert parse_offset_log(OFFSETS_FILE) == {"market.trades.v1": {0: 883, 1: 2576, 2: 0, 3: 903, 4: 583, 5: 0}}
    assert parse_offset_log(INITIAL_OFFSETS_FILE) == {"market.trades.v1": {p: 0 for p in range(6)}}
    # A source without offsets in that batch is written as "-".
    assert parse_offset_log('v1\n{"batchWatermarkMs":0}\n-\n{"t":{"0":5}}') == {"t": {0: 5}}
    with pytest.raises(ValueError, match="not a Spark offset log"):
        parse_offset_log('{"market.trades.v1":{"0":1}}')


def test_lag_is_end_minus_checkpointed_per_partition():
    checkpointed = {0: 883, 1: 2576, 2: 0}
    assert consumer_lag(checkpointed, {0: 0, 1: 0, 2: 0}, {0: 883, 1: 2576, 2: 0}) == (0, {0: 0, 1: 0, 2: 0}, [])
    assert consumer_lag(checkpointed, {0: 0, 1: 0, 2: 0}, {0: 900, 1: 2576, 2: 3}) == (20, {0: 17, 1: 0, 2: 3}, [])
    # A partition added after the checkpoint was written is read from its earliest offset.
    assert consumer_lag(checkpointed, {0: 0, 1: 0, 2: 0, 3: 40}, {0: 883, 1: 2576, 2: 0, 3: 50}) == (
        10, {0: 0, 1: 0, 2: 0, 3: 10}, [])


def test_a_checkpoint_past_the_topic_is_a_problem_not_a_negative_lag():
    lag, by_partition, problems = consumer_lag({0: 500, 1: 7}, {0: 0, 1: 0}, {0: 20, 1: 9})
    assert (lag, by_partition) == (2, {1: 2})
    assert problems == ["partition 0: checkpoint offset 500 is past the topic's end offset 20 "
                        "(topic recreated or truncated?)"]
    assert consumer_lag({0: 1, 4: 9}, {0: 0}, {0: 1})[2] == ["partitions [4] are in the checkpoint but not in the topic"]


def test_newest_batch_ignores_sparks_temporary_files():
    objects = {"metadata": 0, "commits/0": 0, "commits/1": 0, "commits/10": 0, "commits/.11.9f2c.tmp": 0,
               "offsets/11": 0, "offsets/10": 0, "sources/0/0": 0}
    assert newest_batch(objects, "commits") == 10
    assert newest_batch(objects, "offsets") == 11
    assert newest_batch({"metadata": 0}, "commits") is None


@pytest.mark.parametrize("argv, message", [
    (["--now", "soon"], "argument --now: not an ISO 8601 time: 'soon'"),
    (["--entity", "orders"], "argument --entity: invalid choice: 'orders'"),
])
def test_bad_arguments_exit_2(argv, message, capsys):
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_bad_configuration_exits_2_naming_the_setting(monkeypatch, capsys):
    monkeypatch.setenv("STOCKLAKE_WATCHDOG_MAX_BATCH_AGE_SECONDS", "-1")
    assert main([]) == 2
    assert capsys.readouterr().err == ("watchdog: configuration error: watchdog.max_batch_age_seconds: must be "
                                       "greater than 0, got -1\n")
    monkeypatch.delenv("STOCKLAKE_WATCHDOG_MAX_BATCH_AGE_SECONDS")
    monkeypatch.delenv("AWS_ACCESS_KEY_ID", raising=False)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "a-secret-key")
    assert main([]) == 2
    assert capsys.readouterr().err == ("watchdog: configuration error: AWS_ACCESS_KEY_ID: not set; S3 credentials come "
                                       "only from the environment (for the local stack: `source .lake/env.sh`)\n")


# ---- heartbeats in the report ---------------------------------------------------------------------------------------

NOW = datetime(2026, 1, 5, 15, 0, tzinfo=timezone.utc)


def heartbeat(sender: str, age_seconds: float, stopped: bool = False) -> Heartbeat:
    record = build_heartbeat(sender, host="h", pid=9, sent_at=NOW - timedelta(seconds=age_seconds),
                             last_event_time=None, last_batch_time=None, counts={"sent": 5}, stopped=stopped)
    return parse_heartbeat(encode_heartbeat(record)[1], sender)


@pytest.fixture
def healthy_queries(monkeypatch):
    """check_query answers healthy for every query; the heartbeats are what a test gives read_heartbeats."""
    for name in [n for n in os.environ if n.startswith("STOCKLAKE_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test-access-key")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test-secret-key")

    def check_query(settings, s3, admin, entity, query, now):
        return {"query": f"{query}_{entity.name}", "healthy": True, "batch_id": 3, "batch_age_seconds": 20.0,
                "lag": 0, "topic": settings.kafka[entity.topic_setting], "reasons": []}

    monkeypatch.setattr(watchdog, "check_query", check_query)

    def give(newest):
        def read(settings, timeout=None):
            if isinstance(newest, Exception):
                raise newest
            return newest
        monkeypatch.setattr(watchdog, "read_heartbeats", read)
    return give


def run_watchdog(tmp_path, capsys) -> tuple[int, list[str], dict]:
    out = tmp_path / "watchdog.json"
    code = main(["--entity", "trades", "--now", NOW.isoformat(), "--json", str(out)])
    return code, capsys.readouterr().out.splitlines(), json.loads(out.read_text())


def test_fresh_heartbeats_and_a_stopped_producer_are_healthy(healthy_queries, tmp_path, capsys):
    healthy_queries({"stream": heartbeat("stream", 120), "producer:simulator": heartbeat("producer:simulator", 9999,
                                                                                        stopped=True)})
    code, lines, result = run_watchdog(tmp_path, capsys)
    assert code == 0 and result["healthy"] is True
    assert lines[-1] == "stream_watchdog: 2/2 queries healthy, 2/2 heartbeats ok"
    assert [(h["sender"], h["healthy"], h["state"], h["age_seconds"]) for h in result["heartbeats"]] == [
        ("stream", True, "fresh", 120.0), ("producer:simulator", True, "stopped", 9999.0)]
    assert result["heartbeats"][0]["heartbeat"]["counts"] == {"sent": 5}
    assert "heartbeat producer:simulator: ok: stopped: final heartbeat 9,999 s ago from h (pid 9); last send none, " \
           "last event none" in lines


@pytest.mark.parametrize("newest, unhealthy, reasons", [
    ({"stream": heartbeat("stream", 121)}, ["heartbeat stream"],
     ["  heartbeat stream: stale: last heartbeat 121.0 s ago (> watchdog.max_heartbeat_age_seconds 120)"]),
    ({}, ["heartbeat stream"],
     ["  heartbeat stream: no heartbeat on market.heartbeats.v1: not running, or its heartbeat is off (0 s interval)"]),
    ({"stream": heartbeat("stream", 1), "producer:finnhub-ws": heartbeat("producer:finnhub-ws", 300)},
     ["heartbeat producer:finnhub-ws"],
     ["  heartbeat producer:finnhub-ws: stale: last heartbeat 300.0 s ago "
      "(> watchdog.max_heartbeat_age_seconds 120)"]),
    (watchdog.CheckFailed("heartbeat topic market.heartbeats.v1 does not exist (kafka.heartbeats_topic)"),
     ["heartbeat stream"],
     ["  heartbeat stream: cannot read the heartbeats: heartbeat topic market.heartbeats.v1 does not exist "
      "(kafka.heartbeats_topic)"]),
])
def test_a_missing_or_stale_heartbeat_fails_the_check_naming_the_sender(healthy_queries, tmp_path, capsys, newest,
                                                                         unhealthy, reasons):
    healthy_queries(newest)
    code, lines, result = run_watchdog(tmp_path, capsys)
    assert code == 1 and result["healthy"] is False
    total = 1 if not isinstance(newest, dict) else len(newest) or 1
    assert lines[-1] == (f"stream_watchdog: 2/2 queries healthy, {total - len(unhealthy)}/{total} heartbeats ok; "
                         f"UNHEALTHY: {', '.join(unhealthy)}")
    assert [line for line in lines if line.startswith("  heartbeat ")] == reasons


def test_a_bad_heartbeat_age_limit_exits_2(monkeypatch, capsys):
    monkeypatch.setenv("STOCKLAKE_WATCHDOG_MAX_HEARTBEAT_AGE_SECONDS", "-5")
    assert main([]) == 2
    assert capsys.readouterr().err == ("watchdog: configuration error: watchdog.max_heartbeat_age_seconds: must be "
                                       "greater than 0, got -5\n")
