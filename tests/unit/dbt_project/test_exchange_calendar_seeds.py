"""scripts/make_exchange_calendar.py: Gold's calendar seeds are what exchange_calendars says, and agree with
each other (a trading day is a weekday without a holiday, and has exactly one session)."""
from __future__ import annotations

import csv
import importlib.util
from datetime import date, datetime, timedelta
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
SEEDS = REPO / "dbt_project" / "seeds"


def load_script():
    spec = importlib.util.spec_from_file_location("make_exchange_calendar", REPO / "scripts" / "make_exchange_calendar.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as seed:
        return list(csv.DictReader(seed))


@pytest.fixture(scope="module")
def sessions() -> dict[str, dict[str, str]]:
    return {row["session_date"]: row for row in rows(SEEDS / "exchange_sessions.csv")}


def test_the_committed_seeds_are_what_the_script_writes_today(tmp_path):
    load_script().main(tmp_path)
    for name in ("exchange_holidays.csv", "exchange_sessions.csv"):
        assert (tmp_path / name).read_text() == (SEEDS / name).read_text(), \
            f"{name} is stale: run python scripts/make_exchange_calendar.py"


def test_every_weekday_is_either_a_holiday_or_a_session(sessions):
    holidays = {row["holiday_date"] for row in rows(SEEDS / "exchange_holidays.csv")}
    day, weekdays = date(2020, 1, 1), set()
    while day <= date(2035, 12, 31):
        if day.isoweekday() <= 5:
            weekdays.add(day.isoformat())
        day += timedelta(days=1)
    assert not holidays & set(sessions)
    assert holidays | set(sessions) == weekdays
    assert len(sessions) == 4018 and len(holidays) == 156


def test_sessions_follow_daylight_saving_and_half_days_close_at_one(sessions):
    def times(day: str) -> tuple[str, str, str]:
        row = sessions[day]
        return row["open_utc"][11:16], row["close_utc"][11:16], row["is_half_day"]

    assert times("2026-03-06") == ("14:30", "21:00", "false")  # EST
    assert times("2026-03-09") == ("13:30", "20:00", "false")  # EDT from 2026-03-08
    assert times("2026-11-27") == ("14:30", "18:00", "true")  # the day after Thanksgiving: 13:00 New York
    assert times("2026-12-24") == ("14:30", "18:00", "true")
    assert "2026-11-26" not in sessions and "2026-12-25" not in sessions
    half_days = [day for day, row in sessions.items() if row["is_half_day"] == "true"]
    assert len(half_days) == 33
    # Every half day is 09:30-13:00 New York, whatever the season (2025-07-03: EDT, 17:00 UTC); every other
    # session 6 h 30 min.
    assert {length(sessions[day]) for day in half_days} == {timedelta(hours=3, minutes=30)}
    assert {length(row) for day, row in sessions.items() if day not in half_days} == {timedelta(hours=6, minutes=30)}
    assert times("2025-07-03") == ("13:30", "17:00", "true")


def length(session: dict[str, str]) -> timedelta:
    return datetime.fromisoformat(session["close_utc"]) - datetime.fromisoformat(session["open_utc"])
