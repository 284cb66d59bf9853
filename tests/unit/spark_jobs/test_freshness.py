"""spark_jobs/freshness.py: Silver's freshness judged against the exchange's hours (no alarm while the market is
closed, an alarm when trades stop in the session), and the newest trade read from a Delta log's statistics."""
from __future__ import annotations

from datetime import datetime, timezone

import pyarrow as pa
import pytest
from deltalake import write_deltalake

from producer.market_calendar import MarketHours
from spark_jobs.freshness import assess, main, newest_trade_time

NYSE = MarketHours("XNYS", "regular")
MAX_AGE = 900


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=timezone.utc)


@pytest.mark.parametrize("now, newest, why", [
    # Friday night, the weekend, Thanksgiving, after the half day's 13:00 close (18:00 UTC): nothing expected.
    ("2026-11-20T23:30:00", "2026-11-20T20:59:59",
     "market closed, no trade expected (XNYS regular: closed (weekend) until 2026-11-23 09:30"),
    ("2026-11-22T15:00:00", "2026-11-20T20:59:59", "market closed, no trade expected (XNYS regular: closed (weekend)"),
    ("2026-11-26T15:00:00", "2026-11-25T20:59:59",
     "market closed, no trade expected (XNYS regular: closed (Thanksgiving) until 2026-11-27 09:30"),
    ("2026-11-27T18:30:00", "2026-11-27T17:59:59", "market closed, no trade expected (XNYS regular: closed (weekend)"),
    # In the session with a trade a minute old; and five minutes after the open with yesterday's newest trade.
    ("2026-11-23T16:00:00", "2026-11-23T15:59:00", "market open, newest trade 2026-11-23 15:59:00 UTC, 60 s old"),
    ("2026-11-23T14:35:00", "2026-11-20T20:59:59", "market opened 300 s ago, newest trade 2026-11-20 20:59:59 UTC"),
])
def test_no_alarm_while_closed_or_while_trades_arrive(now, newest, why):
    fresh, reason = assess(utc(newest), utc(now), NYSE, MAX_AGE)
    assert fresh and reason.startswith(why), reason


def test_an_alarm_when_trades_stop_during_the_session():
    fresh, reason = assess(utc("2026-11-23T15:00:00"), utc("2026-11-23T15:15:01"), NYSE, MAX_AGE)
    assert not fresh and reason == (
        "market open since 2026-11-23 14:30 UTC and newest trade 2026-11-23 15:00:00 UTC, 901 s old "
        "(> watchdog.max_silver_trade_age_seconds 900)")
    # At the limit it is still fresh; on a half day the session is 13:00 New York's, not 16:00's.
    assert assess(utc("2026-11-23T15:00:00"), utc("2026-11-23T15:15:00"), NYSE, MAX_AGE)[0]
    assert not assess(utc("2026-11-27T17:00:00"), utc("2026-11-27T17:59:00"), NYSE, MAX_AGE)[0]
    # An empty Silver once the session is older than the limit; a 24/7 market is always open.
    assert assess(None, utc("2026-11-23T15:00:00"), NYSE, MAX_AGE) == (
        False, "market open since 2026-11-23 14:30 UTC and no trade in Silver "
               "(> watchdog.max_silver_trade_age_seconds 900)")
    assert not assess(utc("2026-11-21T10:00:00"), utc("2026-11-22T10:00:00"), MarketHours("XNYS", "always"),
                      MAX_AGE)[0]


def test_the_newest_trade_comes_from_the_delta_log(tmp_path):
    table = str(tmp_path / "trades")
    empty = pa.table({"trade_ts": pa.array([], pa.int64()), "date": pa.array([], pa.string())})
    write_deltalake(table, empty, partition_by=["date"])
    assert newest_trade_time(table) is None
    newest = utc("2026-11-20T15:01:00.500")
    for day, times in (("2026-11-20", ["2026-11-20T15:00:00", "2026-11-20T15:01:00.500"]),
                       ("2026-11-19", ["2026-11-19T20:00:00"])):
        stamps = [int(utc(time).timestamp() * 1000) for time in times]
        write_deltalake(table, pa.table({"trade_ts": stamps, "date": [day] * len(stamps)}), mode="append",
                        partition_by=["date"])
    # The newest of every file's max, whichever partition and commit it is in.
    assert newest_trade_time(table) == newest


def test_bad_arguments_and_settings_exit_2(monkeypatch, capsys):
    assert main(["--now", "yesterday"]) == 2
    monkeypatch.setenv("STOCKLAKE_MARKET_HOURS_CALENDAR", "NOPE")
    assert main([]) == 2
    assert capsys.readouterr().err.splitlines()[-1].startswith(
        "freshness: configuration error: market_hours.calendar: unknown exchange calendar 'NOPE'")
