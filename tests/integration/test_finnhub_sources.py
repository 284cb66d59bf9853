"""Finnhub sources end to end: the local Finnhub stand-ins -> `python -m producer` -> real Kafka -> the streaming
job -> Silver on real MinIO, with Finnhub's repeated deliveries collapsed and nothing lost across a reconnect."""
from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from conf.contracts.events import make_trade_event
from spark_jobs.report import account
from spark_jobs.lib.transforms import QUOTES, TRADES
from tests.integration.stack import REPO, free_port, run_producer, run_stream_in_session, wait_for
from tests.standins.finnhub_rest_server import FinnhubRestStandIn
from tests.standins.finnhub_ws_server import FinnhubWsStandIn, Session, trade_item

pytestmark = pytest.mark.integration

SAMPLE = REPO / "producer" / "samples" / "finnhub-ws-sample.jsonl"
SAMPLE_DISTINCT_TRADES = 1200
API_KEY = "integration-key-7d41c09b"  # pragma: allowlist secret
T0 = 1_795_185_600_000  # 2026-11-20T14:40:00Z, after the sample's trades


def scrape(port: int) -> dict[str, float]:
    """The producer's Prometheus samples, as {'name{labels}': value}."""
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()
    except OSError:
        return {}
    return {m.group(1): float(m.group(2)) for m in re.finditer(r"^(\S+) (\S+)$", text, re.M)}


def run_until(env: dict[str, str], args: list[str], tmp: Path, done, what: str) -> tuple[dict, str]:
    """Start the producer with a metrics endpoint, wait for done(samples), SIGTERM it; (summary, stderr)."""
    port = free_port()
    summary_file = tmp / f"{args[1]}-summary.json"
    stderr_file = tmp / f"{args[1]}-stderr.log"
    with stderr_file.open("w") as stderr:
        proc = subprocess.Popen([sys.executable, "-m", "producer", *args, "--metrics-port", str(port),
                                 "--summary-json", str(summary_file)], env=env, cwd=REPO,
                                stdout=subprocess.DEVNULL, stderr=stderr)
        try:
            wait_for(lambda: done(scrape(port)) or proc.poll() is not None, what, timeout=120, interval=0.2)
            assert proc.poll() is None, stderr_file.read_text()[-3000:]
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=120) == 0, stderr_file.read_text()[-3000:]
        finally:
            if proc.poll() is None:
                proc.kill()
    return json.loads(summary_file.read_text()), stderr_file.read_text()


def published(samples: dict[str, float], topic: str) -> float:
    return samples.get(f'stocklake_producer_messages_published_total{{topic="{topic}"}}', 0.0)


def trade_id(item: dict) -> str:
    return make_trade_event("finnhub", item["s"], item["t"], item["p"], item["v"], item["c"] or [])["event_id"]


def test_finnhub_trades_quotes_and_a_replay_reach_silver_exactly_once(spark, isolated, tmp_path):
    settings, env = isolated
    env = {**env, "FINNHUB_API_KEY": API_KEY, "STOCKLAKE_MARKET_HOURS_SESSION": "always",
           "STOCKLAKE_FINNHUB_RECONNECT_INITIAL_SECONDS": "0.1", "STOCKLAKE_FINNHUB_RECONNECT_MAX_SECONDS": "1"}
    trades_topic, quotes_topic, dlq_topic = (settings.kafka.trades_topic, settings.kafka.quotes_topic,
                                             settings.kafka.dlq_topic)

    # 1. WebSocket: 300 trades, a third of them delivered twice, a dropped connection midway, one broken item.
    first = [trade_item("AAPL", 189.0 + i / 100, T0 + i, 100 + i) for i in range(150)]
    second = [trade_item("MSFT", 415.0 + i / 100, T0 + 500 + i, 10, ["1", "12"]) for i in range(150)]
    broken = {"s": "MSFT", "t": T0 + 999, "v": 5}  # no price

    def send_then_drop(session: Session) -> None:
        session.wait_subscribed(2)
        session.send_trades(first[:100])
        session.send_trades(first[:50])  # Finnhub delivers the same trades again
        session.ping()
        session.send_trades(first[100:])
        session.drop()

    def resume(session: Session) -> None:
        session.wait_subscribed(2)
        session.send_trades(second + [broken])
        session.send_trades(second[:50])
        session.idle_until_closed()

    with FinnhubWsStandIn(API_KEY, [send_then_drop, resume]) as ws:
        ws_env = {**env, "STOCKLAKE_FINNHUB_WS_URL": ws.url}
        ws_summary, ws_stderr = run_until(
            ws_env, ["--source", "finnhub-ws", "--symbols", "AAPL", "MSFT"], tmp_path,
            lambda s: published(s, trades_topic) >= 400 and published(s, dlq_topic) >= 1, "400 trades in Kafka")
    assert [s.subscriptions for s in ws.sessions] == [["AAPL", "MSFT"], ["AAPL", "MSFT"]]
    assert ws.rejected == []
    assert (ws_summary["trades_published"], ws_summary["distinct_trade_event_ids"], ws_summary["sent_dlq"],
            ws_summary["delivered"], ws_summary["reconnects"]) == (400, 300, 1, 401, 1)
    assert ws_summary["dlq_by_reason"] == {"price:required": 1}
    assert API_KEY not in ws_stderr and "reconnecting" in ws_stderr

    # 2. REST quotes: two polls of the same quote (one id), an all-zero quote, and a 429 along the way.
    quote = {"c": 190.5, "d": 1.5, "dp": 0.7937, "h": 191.0, "l": 188.2, "o": 189.0, "pc": 189.0,
             "t": T0 // 1000}
    with FinnhubRestStandIn(API_KEY) as rest:
        rest.script("AAPL", [(200, quote), (429, {"error": "API limit reached"}), (200, quote)])
        rest.script("ZZZZ", [(200, {"c": 0, "d": None, "dp": None, "h": 0, "l": 0, "o": 0, "pc": 0, "t": 0})])
        rest_env = {**env, "STOCKLAKE_FINNHUB_REST_URL": rest.url,
                    "STOCKLAKE_FINNHUB_QUOTE_POLL_INTERVAL_SECONDS": "0.2",
                    "STOCKLAKE_FINNHUB_RATE_LIMITED_INITIAL_SECONDS": "0.1",
                    "STOCKLAKE_FINNHUB_QUOTE_MAX_AGE_SECONDS": "31536000"}
        rest_summary, rest_stderr = run_until(
            rest_env, ["--source", "finnhub-rest", "--symbols", "AAPL", "ZZZZ"], tmp_path,
            lambda s: published(s, quotes_topic) >= 2 and published(s, dlq_topic) >= 2, "2 quotes in Kafka")
    assert rest_summary["rate_limited"] >= 1 and rest_summary["distinct_quote_event_ids"] == 1
    assert rest_summary["dlq_by_reason"]["quote:all_zero"] >= 1
    assert API_KEY not in rest_stderr

    # 3. Replay the shipped sample through the same path.
    replay_summary = run_producer(env, ["--source", "replay", "--file", str(SAMPLE), "--no-pacing"], tmp_path)
    assert (replay_summary["distinct_trade_event_ids"], replay_summary["sent_dlq"]) == (SAMPLE_DISTINCT_TRADES, 0)

    # 4. The stream: Silver holds each distinct trade and quote once.
    run_stream_in_session(spark, env, tmp_path / "stream.log", entities=("trades", "quotes"))
    silver_trades = spark.read.format("delta").load(settings.lake_uri("silver/trades"))
    ids = [row["event_id"] for row in silver_trades.select("event_id").collect()]
    assert len(ids) == len(set(ids)) == 300 + SAMPLE_DISTINCT_TRADES
    assert {trade_id(item) for item in first + second} <= set(ids)
    trades_report = account(spark, settings, TRADES)
    assert (trades_report["bronze_rows"], trades_report["duplicates_removed"], trades_report["late_rows"],
            trades_report["quarantined_rows"], trades_report["balanced"]) == (
        400 + replay_summary["trades_published"], 100 + replay_summary["trades_published"]
        - SAMPLE_DISTINCT_TRADES, 0, 0, True)

    silver_quotes = spark.read.format("delta").load(settings.lake_uri("silver/quotes")).collect()
    assert len(silver_quotes) == 1
    row = silver_quotes[0]
    assert (row["symbol"], row["current"], row["change"], row["percent_change"], row["high"], row["low"],
            row["open"], row["previous_close"], row["quote_ts"], row["source"]) == (
        "AAPL", 190.5, 1.5, 0.7937, 191.0, 188.2, 189.0, 189.0, T0 // 1000 * 1000, "finnhub")
    quotes_report = account(spark, settings, QUOTES)
    assert quotes_report["balanced"] and quotes_report["bronze_rows"] == rest_summary["quotes_published"]
