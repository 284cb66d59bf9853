"""Write dbt_project/seeds/exchange_holidays.csv: the weekdays the exchange is closed (maintainers).

    python scripts/make_exchange_holidays.py

Gold's date dimension needs the exchange's holidays so that "previous trading day" skips them. They come from the
maintained exchange_calendars library (the producer's market-hours calendar), not from a hand-written list:
rule-based holidays carry their names, one-off closures (e.g. a national day of mourning) are named "closure".
Re-run it when exchange_calendars is upgraded; the range matches dim_date's date spine.
"""
from __future__ import annotations

import csv
import sys
from pathlib import Path

import exchange_calendars as xc
import pandas as pd

OUT = Path(__file__).resolve().parents[1] / "dbt_project" / "seeds" / "exchange_holidays.csv"
CALENDAR, START, END = "XNYS", "2020-01-01", "2035-12-31"


def main() -> None:
    calendar = xc.get_calendar(CALENDAR, start=START, end=END)
    weekdays = pd.bdate_range(START, END)
    closed = weekdays.difference(calendar.sessions)
    names = calendar.regular_holidays.holidays(START, END, return_name=True)
    with OUT.open("w", newline="") as out:
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["exchange", "holiday_date", "holiday_name"])
        for day in closed:
            writer.writerow([CALENDAR, day.date().isoformat(), names.get(day, "closure")])
    print(f"wrote {len(closed)} {CALENDAR} holidays {START}..{END} to {OUT}", file=sys.stderr)


if __name__ == "__main__":
    main()
