"""`python -m producer` with the finnhub and replay sources: options, secrets, summary, exit codes (no Kafka:
an in-memory publisher; the Finnhub stand-in plays Finnhub)."""
from __future__ import annotations

import json
import logging
import os
import socket
from pathlib import Path

import pytest

from producer.cli import main
from tests.standins.finnhub_ws_server import FinnhubWsStandIn, Session, trade_item
from tests.standins.memory_publisher import MemoryPublisher

SAMPLE = Path(__file__).resolve().parents[3] / "producer" / "samples" / "finnhub-ws-sample.jsonl"
API_KEY = "cli-test-key-5f2a9e"  # pragma: allowlist secret


@pytest.fixture
def env(monkeypatch):
    for name in [n for n in os.environ if n.startswith("STOCKLAKE_") or n == "FINNHUB_API_KEY"]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("STOCKLAKE_MARKET_HOURS_SESSION", "always")
    return monkeypatch


def test_replay_of_the_shipped_sample(env, capsys, tmp_path):
    publisher = MemoryPublisher()
    out = tmp_path / "summary.json"
    code = main(["--source", "replay", "--file", str(SAMPLE), "--no-pacing", "--summary-json", str(out)],
                publisher_factory=lambda settings: publisher)
    assert code == 0
    summary = json.loads(out.read_text())
    # The sample: 253 messages, 4 pings, 1,200 distinct trades of which 62 are delivered a second time.
    assert (summary["messages_received"], summary["pings"], summary["trades_published"],
            summary["distinct_trade_event_ids"], summary["sent_dlq"]) == (253, 4, 1262, 1200, 0)
    assert summary["stopped_by"] == "end_of_source" and publisher.flushes == 1
    assert {json.loads(value)["source"] for _, _, value in publisher.messages} == {"finnhub"}
    stdout = capsys.readouterr().out
    assert "trades published: 1262 (distinct event ids: 1200)" in stdout


def test_replay_start_time_moves_the_trades(env):
    publisher = MemoryPublisher()
    assert main(["--source", "replay", "--file", str(SAMPLE), "--no-pacing", "--start-time",
                 "2026-11-21T15:00:00Z"], publisher_factory=lambda settings: publisher) == 0
    first = min(json.loads(value)["trade_ts"] for _, _, value in publisher.messages)
    assert first == 1_795_273_200_000  # 2026-11-21T15:00:00Z


@pytest.mark.parametrize("source", ["finnhub-ws", "finnhub-rest"])
def test_a_missing_key_is_one_line_and_exit_2(env, capsys, source):
    assert main(["--source", source], publisher_factory=lambda settings: MemoryPublisher()) == 2
    err = capsys.readouterr().err
    assert err == ("python -m producer: error: FINNHUB_API_KEY is not set: export your Finnhub API key "
                   "(https://finnhub.io/dashboard) to use the finnhub sources\n")


def test_an_unknown_exchange_calendar_is_a_configuration_error(env, capsys):
    env.setenv("FINNHUB_API_KEY", API_KEY)
    env.setenv("STOCKLAKE_MARKET_HOURS_CALENDAR", "XMARS")
    assert main(["--source", "finnhub-rest"], publisher_factory=lambda settings: MemoryPublisher()) == 2
    err = capsys.readouterr().err
    assert err.startswith("python -m producer: error: configuration: market_hours: ") and "XMARS" in err
    assert err.count("\n") == 1


def test_a_rejected_key_is_one_line_exit_2_and_never_printed(env, capsys, caplog):
    caplog.set_level(logging.DEBUG)
    with FinnhubWsStandIn("another-key", [lambda session: None]) as server:
        env.setenv("STOCKLAKE_FINNHUB_WS_URL", server.url)
        env.setenv("FINNHUB_API_KEY", API_KEY)
        assert main(["--source", "finnhub-ws", "--symbols", "AAPL"],
                    publisher_factory=lambda settings: MemoryPublisher()) == 2
        url = server.url
    captured = capsys.readouterr()
    assert captured.err.splitlines()[-1] == (f"python -m producer: error: Finnhub rejected the API key "
                                            f"(HTTP 401 from {url}): check FINNHUB_API_KEY")
    assert API_KEY not in captured.err + captured.out
    assert not [r for r in caplog.records if API_KEY in r.getMessage() and not r.name.startswith("tests.")]


def test_live_run_records_what_arrives_and_stops_at_duration(env, capsys, tmp_path):
    trades = [trade_item("AAPL", 190.0 + i, 1_795_185_000_000 + i, 10) for i in range(6)]

    def behaviour(session: Session) -> None:
        session.wait_subscribed(2)
        session.send_trades(trades[:3])
        session.send_trades(trades[:3])
        session.ping()
        session.send_trades(trades[3:])
        session.idle_until_closed()

    publisher = MemoryPublisher()
    record = tmp_path / "rec.jsonl"
    with FinnhubWsStandIn(API_KEY, [behaviour]) as server:
        env.setenv("STOCKLAKE_FINNHUB_WS_URL", server.url)
        env.setenv("FINNHUB_API_KEY", API_KEY)
        code = main(["--source", "finnhub-ws", "--symbols", "AAPL,MSFT", "--duration", "2", "--record", str(record)],
                    publisher_factory=lambda settings: publisher)
    assert code == 0
    assert len(publisher.messages) == 9 and len({v for _, _, v in publisher.messages}) == 6
    assert len(record.read_text().splitlines()) == 4
    stdout = capsys.readouterr().out
    assert "trades published: 9 (distinct event ids: 6)" in stdout
    assert "recorded: 4 messages" in stdout and "stopped by duration" in stdout


def test_a_busy_metrics_port_is_a_clear_error(env, capsys):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        code = main(["--source", "replay", "--file", str(SAMPLE), "--metrics-port", str(port)],
                    publisher_factory=lambda settings: MemoryPublisher())
    assert code == 2
    assert f"python -m producer: error: cannot serve metrics on 127.0.0.1:{port}: " in capsys.readouterr().err
