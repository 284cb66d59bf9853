"""Exchange calendars by their exchange_calendars code (the setting market_hours.calendar): the calendar's name and
its time zone, as the maintained exchange_calendars library says (the producer's market hours and Gold's calendar
seeds come from it too). The library takes pandas, seconds to import, so only this function imports it.
"""
from __future__ import annotations

from functools import lru_cache

from conf.settings import ConfigError


def calendar_name(code: str) -> str:
    """The calendar an exchange_calendars code names: 'XNYS' -> 'XNYS', an alias the calendar it stands for
    ('XNAS' -> 'XNYS', the name Gold's seeds use); an unknown code is a ConfigError."""
    import exchange_calendars as xc

    try:
        return xc.resolve_alias(code)
    except xc.errors.InvalidCalendarName:
        raise ConfigError(f"market_hours.calendar: unknown exchange calendar {code!r}: use an exchange_calendars "
                          f"code such as XNYS, XNAS or XLON") from None


@lru_cache(maxsize=8)
def exchange_calendar(code: str) -> tuple[str, str]:
    """(name, IANA time zone) of an exchange calendar: 'XNYS' -> ('XNYS', 'America/New_York'); see calendar_name."""
    import exchange_calendars as xc

    name = calendar_name(code)
    return name, str(xc.get_calendar(name).tz)
