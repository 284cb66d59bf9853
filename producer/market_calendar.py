"""Market hours for the live sources: is the exchange trading at a given instant, and when does it next open?

Outside trading hours the Finnhub quote poller idles and the WebSocket watchdog treats silence as normal.
Holidays, half days and the time zone (with its DST changes) come from the maintained exchange_calendars
library, never from this code. The caller passes the instant (no clock reads here), so tests inject times.
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from functools import lru_cache
from typing import Any

import exchange_calendars as xc
import numpy as np
import pandas as pd

from conf.calendars import calendar_name, exchange_calendar

SESSIONS = ("regular", "extended", "always")
UTC = timezone.utc
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
ONE_US = timedelta(microseconds=1)
Span = tuple[datetime, datetime, bool, int, xc.ExchangeCalendar]


@lru_cache(maxsize=8)
def _build(code: str, decade: int) -> xc.ExchangeCalendar:
    """The calendar for `decade` with 10 years either side, shared by all instances (a build costs ~0.15 s)."""
    try:
        return xc.get_calendar(code, start=f"{decade - 10}-01-01", end=f"{decade + 19}-12-31")
    except ValueError:
        # Some calendars (e.g. XSAU) refuse dates outside their bounds: fall back to the library's default range.
        return xc.get_calendar(code)


def _nanos(at: datetime) -> int:
    return (at - EPOCH) // ONE_US * 1000


def _utc(nanos: int) -> datetime:
    return EPOCH + timedelta(microseconds=int(nanos) // 1000)


class MarketHours:
    """Whether an exchange's regular (or extended) session is open at an instant; cheap enough to ask per message."""

    def __init__(self, calendar: str = "XNYS", session: str = "regular", pre_market_minutes: int = 330,
                 after_hours_minutes: int = 240):
        calendar_name(calendar)  # ConfigError (a ValueError) for an unknown code
        if session not in SESSIONS:
            raise ValueError(f"unknown market session {session!r}: use one of {', '.join(SESSIONS)}")
        if pre_market_minutes < 0 or after_hours_minutes < 0:
            raise ValueError("pre_market_minutes and after_hours_minutes must be >= 0")
        self.calendar, self.session = calendar, session
        extended = session == "extended"
        self._pre = pre_market_minutes * 60 * 10**9 if extended else 0
        self._post = after_hours_minutes * 60 * 10**9 if extended else 0
        # (decade, calendar, window starts, window ends in UTC nanoseconds): swapped as one, so threads may share.
        self._table: tuple[int, xc.ExchangeCalendar, np.ndarray, np.ndarray] | None = None
        # The open window or closed gap holding the last instant asked about: most calls land in it again.
        self._span: Span | None = None

    @classmethod
    def from_settings(cls, settings: Any) -> MarketHours:
        mh = settings.market_hours
        return cls(mh.calendar, mh.session, mh.pre_market_minutes, mh.after_hours_minutes)

    @property
    def timezone(self) -> str:
        """The exchange's time zone name, e.g. America/New_York (conf.calendars: Gold's dbt vars say the same)."""
        return exchange_calendar(self.calendar)[1]

    @staticmethod
    def _check(at: datetime) -> None:
        if at.tzinfo is None or at.utcoffset() is None:
            raise ValueError(f"market hours need a timezone-aware datetime, got naive {at.isoformat()}")

    def _locate(self, at: datetime) -> Span:
        """(start, end, open?, session index, calendar) of the open window or closed gap containing `at`."""
        self._check(at)
        span = self._span
        if span is not None and span[0] <= at < span[1]:
            return span
        decade = at.astimezone(UTC).year // 10 * 10
        table = self._table
        if table is None or table[0] != decade:
            cal = _build(self.calendar, decade)
            table = self._table = (decade, cal, pd.DatetimeIndex(cal.opens).as_unit("ns").asi8 - self._pre,
                                   pd.DatetimeIndex(cal.closes).as_unit("ns").asi8 + self._post)
        _, cal, starts, ends = table
        t = _nanos(at)
        i = int(np.searchsorted(starts, t, side="right")) - 1
        if i < 0 or i + 1 >= len(starts):
            raise ValueError(f"{at.isoformat()} is outside the {self.calendar} calendar's range "
                             f"{cal.first_session.date()} to {cal.last_session.date()}")
        # Windows are half-open [start, end): 09:30:00 is open, 16:00:00 is closed (the library's side="left").
        if t < ends[i]:
            span = (_utc(starts[i]), _utc(ends[i]), True, i, cal)
        else:
            span = (_utc(ends[i]), _utc(starts[i + 1]), False, i + 1, cal)
        self._span = span
        return span

    def is_open(self, at: datetime) -> bool:
        """True inside the configured window (timezone-aware `at`)."""
        if self.session == "always":
            self._check(at)
            return True
        return self._locate(at)[2]

    def open_since(self, at: datetime) -> datetime | None:
        """Start of the open window holding `at` (UTC), or None when the market is closed at `at`; with the
        calendar ignored ("always") the market never opened: it always was (the Unix epoch)."""
        if self.session == "always":
            self._check(at)
            return datetime(1970, 1, 1, tzinfo=UTC)
        start, _, is_open, _, _ = self._locate(at)
        return start if is_open else None

    def last_close(self, at: datetime) -> datetime | None:
        """End of the open window before `at` (UTC) when the market is closed at `at`; None when it is open."""
        if self.is_open(at):
            return None
        return self._locate(at)[0]

    def next_open(self, at: datetime) -> datetime:
        """Start of the next window at or after `at` (`at` itself when open), in UTC."""
        if self.is_open(at):
            return at.astimezone(UTC)
        return self._locate(at)[1]

    def describe(self, at: datetime) -> str:
        """One line for logs: open until when, or closed (why) until when, in exchange time."""
        head = f"{self.calendar} {self.session}"
        if self.session == "always":
            self._check(at)
            return f"{head}: open (calendar ignored)"
        _, end, is_open, i, cal = self._locate(at)
        tz = cal.tz
        if is_open:
            half = " (half day)" if cal.sessions[i] in cal.early_closes else ""
            return f"{head}: open until {end.astimezone(tz):%Y-%m-%d %H:%M} {tz}{half}"
        # Why closed: the non-trading days between now and the next session (weekend, holiday names if known).
        days = pd.date_range(at.astimezone(tz).date(), cal.sessions[i] - pd.Timedelta(days=1), freq="D")
        rules = cal.regular_holidays
        names = rules.holidays(days[0], days[-1], return_name=True) if len(days) and rules is not None else {}
        reasons: list[str] = []
        for day in days:
            if cal.is_session(day):
                continue
            reason = "weekend" if cal.weekmask[day.weekday()] == "0" else names.get(day, "holiday")
            if reason not in reasons:
                reasons.append(reason)
        why = f" ({', '.join(reasons)})" if reasons else ""
        return f"{head}: closed{why} until {end.astimezone(tz):%Y-%m-%d %H:%M} {tz}"
