"""Write the exchange calendar seeds of Gold's date dimension (maintainers).

    python scripts/make_exchange_calendar.py

- dbt_project/seeds/exchange_holidays.csv: the weekdays the exchange is closed, so that "previous trading day"
  skips them; rule-based holidays carry their names, one-off closures (e.g. a national day of mourning) are named
  "closure".
- dbt_project/seeds/exchange_sessions.csv: each trading day's regular session, open and close in UTC (daylight
  saving applied), and whether it is a half day (an early close, e.g. 13:00 New York the day after Thanksgiving).

Both come from the maintained exchange_calendars library (the producer's market-hours calendar), not from a
hand-written list. Re-run it when exchange_calendars is upgraded (a unit test fails until then); the range matches
dim_date's date spine.
"""
from __future__ import annotations

import csv
import sys
from pathlib import Path

import exchange_calendars as xc
import pandas as pd

SEEDS = Path(__file__).resolve().parents[1] / "dbt_project" / "seeds"
CALENDAR, START, END = "XNYS", "2020-01-01", "2035-12-31"
UTC_FORMAT = "%Y-%m-%d %H:%M:%S"


def holiday_rows(calendar: xc.ExchangeCalendar) -> list[list[str]]:
    closed = pd.bdate_range(START, END).difference(calendar.sessions)
    names = calendar.regular_holidays.holidays(START, END, return_name=True)
    return [[CALENDAR, day.date().isoformat(), names.get(day, "closure")] for day in closed]


def session_rows(calendar: xc.ExchangeCalendar) -> list[list[str]]:
    early = set(calendar.early_closes)
    return [[CALENDAR, day.date().isoformat(), times["open"].strftime(UTC_FORMAT),
             times["close"].strftime(UTC_FORMAT), str(day in early).lower()]
            for day, times in calendar.schedule.loc[START:END].iterrows()]


def write(path: Path, header: list[str], rows: list[list[str]]) -> None:
    with path.open("w", newline="") as out:
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)


def main(seeds: Path = SEEDS) -> None:
    calendar = xc.get_calendar(CALENDAR, start=START, end=END)
    holidays, sessions = holiday_rows(calendar), session_rows(calendar)
    write(seeds / "exchange_holidays.csv", ["exchange", "holiday_date", "holiday_name"], holidays)
    write(seeds / "exchange_sessions.csv", ["exchange", "session_date", "open_utc", "close_utc", "is_half_day"],
          sessions)
    print(f"wrote {len(holidays)} {CALENDAR} holidays and {len(sessions)} sessions ({sum(r[4] == 'true' for r in sessions)}"
          f" half days) {START}..{END} to {seeds}", file=sys.stderr)


if __name__ == "__main__":
    main()
