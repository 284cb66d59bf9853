"""producer/market_calendar.py: NYSE hours, holidays, half days and DST from exchange_calendars, at injected times.

Every holiday and half day below was checked against exchange_calendars 4.13.2 (XNYS) before being written down.
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import exchange_calendars as xc
import pandas as pd
import pytest
from zoneinfo import ZoneInfo

from conf.settings import load_settings
from producer.market_calendar import MarketHours

NY = ZoneInfo("America/New_York")
UTC = timezone.utc


def ny(*args: int) -> datetime:
    return datetime(*args, tzinfo=NY)


@pytest.fixture(scope="module")
def regular() -> MarketHours:
    return MarketHours()


@pytest.fixture(scope="module")
def extended() -> MarketHours:
    return MarketHours(session="extended")


@pytest.mark.parametrize("at, expected", [
    (ny(2026, 11, 30, 9, 29, 59), False),
    (ny(2026, 11, 30, 9, 30), True),
    (ny(2026, 11, 30, 15, 59, 59), True),
    (ny(2026, 11, 30, 16, 0), False),
    (ny(2026, 11, 28, 12, 0), False),  # Saturday
    (ny(2026, 11, 29, 12, 0), False),  # Sunday
    (ny(2026, 11, 26, 12, 0), False),  # Thanksgiving
    (ny(2026, 12, 25, 12, 0), False),  # Christmas
    (ny(2026, 7, 3, 12, 0), False),    # Independence Day observed (4 July 2026 is a Saturday)
    (ny(2025, 1, 9, 12, 0), False),    # ad hoc closure (national day of mourning), not a rule
    (ny(2026, 11, 27, 12, 59, 59), True),  # half day after Thanksgiving: closes 13:00
    (ny(2026, 11, 27, 13, 0), False),
])
def test_regular_session(regular, at, expected):
    assert regular.is_open(at) is expected
    # The same instant in another zone gives the same answer.
    assert regular.is_open(at.astimezone(UTC)) is expected


@pytest.mark.parametrize("at, expected", [
    (ny(2026, 11, 30, 3, 59, 59), False),
    (ny(2026, 11, 30, 4, 0), True),
    (ny(2026, 11, 30, 19, 59, 59), True),
    (ny(2026, 11, 30, 20, 0), False),
    (ny(2026, 11, 27, 16, 59, 59), True),  # half day: after-hours end 240 min after the 13:00 close
    (ny(2026, 11, 27, 17, 0), False),
    (ny(2026, 11, 26, 12, 0), False),
    (ny(2026, 11, 28, 12, 0), False),
])
def test_extended_session(extended, at, expected):
    assert extended.is_open(at) is expected


def test_dst_shifts_the_utc_open_by_an_hour(regular):
    # US clocks went forward on Sunday 2026-03-08.
    before = regular.next_open(ny(2026, 3, 6, 0, 0))
    after = regular.next_open(ny(2026, 3, 9, 0, 0))
    assert before == datetime(2026, 3, 6, 14, 30, tzinfo=UTC)
    assert after == datetime(2026, 3, 9, 13, 30, tzinfo=UTC)
    assert before.astimezone(NY).time() == after.astimezone(NY).time() == ny(2026, 1, 1, 9, 30).time()
    assert regular.is_open(datetime(2026, 3, 6, 14, 0, tzinfo=UTC)) is False
    assert regular.is_open(datetime(2026, 3, 9, 14, 0, tzinfo=UTC)) is True


@pytest.mark.parametrize("at, expected", [
    (ny(2026, 11, 25, 17, 0), ny(2026, 11, 27, 9, 30)),   # over Thanksgiving
    (ny(2026, 11, 27, 13, 0), ny(2026, 11, 30, 9, 30)),   # half-day close, then the weekend
    (ny(2026, 11, 28, 12, 0), ny(2026, 11, 30, 9, 30)),   # Saturday
    (ny(2026, 11, 30, 8, 0), ny(2026, 11, 30, 9, 30)),    # before the open the same day
    (ny(2026, 1, 16, 16, 0), ny(2026, 1, 20, 9, 30)),     # weekend, then Martin Luther King Jr. Day
])
def test_next_open_when_closed(regular, at, expected):
    result = regular.next_open(at)
    assert result == expected
    assert result.utcoffset() == timedelta(0)


def test_next_open_when_open_is_now(regular, extended):
    at = ny(2026, 11, 30, 11, 15, 30)
    assert regular.next_open(at) == at
    assert regular.next_open(at).tzinfo == UTC
    assert extended.next_open(ny(2026, 11, 25, 17, 0)) == ny(2026, 11, 25, 17, 0)
    assert extended.next_open(ny(2026, 11, 25, 20, 0)) == ny(2026, 11, 27, 4, 0)


def test_open_since_and_last_close(regular, extended):
    # Open: since the session's open; closed: since the last close (a half day's 13:00, across Thanksgiving).
    assert regular.open_since(ny(2026, 11, 30, 11, 15)) == ny(2026, 11, 30, 9, 30)
    assert regular.open_since(ny(2026, 11, 30, 16, 0)) is None and regular.last_close(ny(2026, 11, 30, 11, 0)) is None
    assert regular.last_close(ny(2026, 11, 28, 12, 0)) == ny(2026, 11, 27, 13, 0)
    assert regular.last_close(ny(2026, 11, 26, 12, 0)) == ny(2026, 11, 25, 16, 0)
    assert extended.open_since(ny(2026, 11, 30, 5, 0)) == ny(2026, 11, 30, 4, 0)
    assert extended.last_close(ny(2026, 11, 30, 21, 0)) == ny(2026, 11, 30, 20, 0)
    assert {regular.open_since(ny(2026, 11, 30, 11, 15)).utcoffset(),
            regular.last_close(ny(2026, 11, 28, 12, 0)).utcoffset()} == {timedelta(0)}
    # With the calendar ignored the market always was open.
    always = MarketHours(session="always")
    assert always.open_since(ny(2026, 11, 28, 3, 0)) == datetime(1970, 1, 1, tzinfo=UTC)
    assert always.last_close(ny(2026, 11, 28, 3, 0)) is None


def test_always_ignores_the_calendar():
    always = MarketHours(session="always")
    for at in (ny(2026, 12, 25, 3, 0), ny(2026, 11, 28, 23, 59), ny(1900, 1, 1, 0, 0), ny(2200, 1, 1, 0, 0)):
        assert always.is_open(at) is True
        assert always.next_open(at) == at
    assert always.describe(ny(2026, 12, 25, 3, 0)) == "XNYS always: open (calendar ignored)"


@pytest.mark.parametrize("at, text", [
    (ny(2026, 11, 27, 10, 0), "XNYS regular: open until 2026-11-27 13:00 America/New_York (half day)"),
    (ny(2026, 11, 30, 10, 0), "XNYS regular: open until 2026-11-30 16:00 America/New_York"),
    (ny(2026, 11, 25, 17, 0), "XNYS regular: closed (Thanksgiving) until 2026-11-27 09:30 America/New_York"),
    (ny(2026, 11, 28, 10, 0), "XNYS regular: closed (weekend) until 2026-11-30 09:30 America/New_York"),
    (ny(2026, 1, 16, 17, 0),
     "XNYS regular: closed (weekend, Dr. Martin Luther King Jr. Day) until 2026-01-20 09:30 America/New_York"),
    # Ad hoc closures have no name in the library: say so plainly rather than guess.
    (ny(2025, 1, 9, 12, 0), "XNYS regular: closed (holiday) until 2025-01-10 09:30 America/New_York"),
    (ny(2026, 11, 30, 8, 0), "XNYS regular: closed until 2026-11-30 09:30 America/New_York"),
])
def test_describe(regular, at, text):
    assert regular.describe(at) == text


def test_describe_extended(extended):
    assert extended.describe(ny(2026, 11, 27, 14, 0)) == \
        "XNYS extended: open until 2026-11-27 17:00 America/New_York (half day)"
    assert extended.describe(ny(2026, 11, 28, 10, 0)) == \
        "XNYS extended: closed (weekend) until 2026-11-30 04:00 America/New_York"


def test_far_future_and_past_dates(regular):
    # Beyond the library's default range (about 20 years back to 1 year ahead of today).
    assert regular.is_open(ny(2030, 12, 25, 12, 0)) is False
    assert regular.is_open(ny(2030, 12, 24, 12, 59)) is True
    assert regular.is_open(ny(2030, 12, 24, 13, 0)) is False
    assert regular.next_open(ny(2030, 11, 27, 17, 0)) == ny(2030, 11, 29, 9, 30)
    assert regular.is_open(ny(2008, 11, 27, 12, 0)) is False
    assert regular.is_open(ny(2008, 9, 15, 15, 59)) is True
    assert regular.next_open(ny(2008, 11, 27, 12, 0)) == ny(2008, 11, 28, 9, 30)
    assert regular.is_open(ny(2008, 11, 28, 13, 0)) is False
    # And back to the present after visiting other decades.
    assert regular.is_open(ny(2026, 11, 30, 9, 30)) is True


def test_agrees_with_the_library_minute_by_minute_across_a_week(regular):
    # Walks through window boundaries in order, exercising the cached open/closed stretch.
    calendar = xc.get_calendar("XNYS", start="2026-11-01", end="2026-12-31")
    at = ny(2026, 11, 23, 0, 0)
    while at < ny(2026, 11, 30, 0, 0):
        assert regular.is_open(at) is bool(calendar.is_open_on_minute(pd.Timestamp(at))), at
        at += timedelta(minutes=1)


def test_timezone():
    assert MarketHours().timezone == "America/New_York"
    assert MarketHours("XLON").timezone == "Europe/London"
    assert MarketHours("XLON").is_open(datetime(2026, 11, 30, 8, 0, tzinfo=ZoneInfo("Europe/London"))) is True


def test_from_settings():
    default = MarketHours.from_settings(load_settings({}))
    assert (default.calendar, default.session) == ("XNYS", "regular")
    assert default.is_open(ny(2026, 11, 30, 8, 0)) is False
    overridden = MarketHours.from_settings(load_settings({"STOCKLAKE_MARKET_HOURS_SESSION": "extended",
                                                          "STOCKLAKE_MARKET_HOURS_PRE_MARKET_MINUTES": "90"}))
    assert overridden.session == "extended"
    assert overridden.is_open(ny(2026, 11, 30, 7, 59)) is False
    assert overridden.is_open(ny(2026, 11, 30, 8, 0)) is True  # 90 minutes before 09:30
    assert overridden.is_open(ny(2026, 11, 30, 19, 59)) is True


def test_alias_codes_are_accepted():
    # XNAS is an alias of XNYS in exchange_calendars (same holidays and hours).
    assert MarketHours("XNAS").is_open(ny(2026, 11, 30, 9, 30)) is True


@pytest.mark.parametrize("kwargs, message", [
    ({"calendar": "NYSEX"}, "unknown exchange calendar 'NYSEX': use an exchange_calendars code such as XNYS"),
    ({"session": "overnight"}, "unknown market session 'overnight': use one of regular, extended, always"),
    ({"pre_market_minutes": -1}, "must be >= 0"),
])
def test_invalid_configuration(kwargs, message):
    with pytest.raises(ValueError, match=message):
        MarketHours(**kwargs)


@pytest.mark.parametrize("session", ["regular", "always"])
def test_naive_datetimes_are_refused(session):
    hours = MarketHours(session=session)
    for method in (hours.is_open, hours.next_open, hours.describe):
        with pytest.raises(ValueError, match="timezone-aware datetime, got naive 2026-11-30T10:00:00"):
            method(datetime(2026, 11, 30, 10, 0))
