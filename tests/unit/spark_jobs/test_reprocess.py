"""spark_jobs/reprocess.py's pure parts: which partitions a run replaces, and its arguments."""
from __future__ import annotations

from datetime import date, datetime, timezone

import pytest

from spark_jobs.reprocess import Partitions, closed_window, parse_args

GRACE = 15


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=timezone.utc)


@pytest.mark.parametrize("first, last, now, predicate", [
    # Days long past: whole days.
    ("2026-01-07", "2026-01-08", "2026-01-10T12:00:00",
     "(date >= '2026-01-07' AND date <= '2026-01-08')"),
    # Today: its closed hours only. At 10:20, 09:00-10:00 ended 20 min ago (closed), 10:00 is open.
    ("2026-01-07", "2026-01-10", "2026-01-10T10:20:00",
     "(date >= '2026-01-07' AND date <= '2026-01-09') OR (date = '2026-01-10' AND hour < '10')"),
    # 10:14: hour 09 ended 14 min ago, within the grace: not closed yet.
    ("2026-01-10", "2026-01-10", "2026-01-10T10:14:59", "(date = '2026-01-10' AND hour < '09')"),
    ("2026-01-10", "2026-01-10", "2026-01-10T10:15:00", "(date = '2026-01-10' AND hour < '10')"),
    # Just after midnight plus the grace: yesterday is whole, today has no closed hour.
    ("2026-01-09", "2026-01-10", "2026-01-10T00:15:00", "(date >= '2026-01-09' AND date <= '2026-01-09')"),
])
def test_only_closed_hours_are_replaced(first, last, now, predicate):
    window = closed_window(date.fromisoformat(first), date.fromisoformat(last), at(now), GRACE)
    assert window.predicate() == predicate


def test_a_range_without_a_closed_hour_is_refused():
    with pytest.raises(ValueError, match=r"^no closed hour in 2026-01-10..2026-01-11 at 2026-01-10T00:14:00\+00:00"):
        closed_window(date(2026, 1, 10), date(2026, 1, 11), at("2026-01-10T00:14:00"), GRACE)
    with pytest.raises(ValueError, match="no closed hour"):
        closed_window(date(2026, 2, 1), date(2026, 2, 2), at("2026-01-10T12:00:00"), GRACE)


def test_the_window_knows_where_the_stream_may_still_write():
    window = closed_window(date(2026, 1, 7), date(2026, 1, 10), at("2026-01-10T10:20:00"), GRACE)
    assert window == Partitions(date(2026, 1, 7), date(2026, 1, 9), date(2026, 1, 10), 10, at("2026-01-10T10:00:00"))


def test_the_window_condition_on_columns_matches_its_predicate(spark):
    window = closed_window(date(2026, 1, 7), date(2026, 1, 10), at("2026-01-10T10:20:00"), GRACE)
    rows = spark.createDataFrame([(d, h) for d in ("2026-01-06", "2026-01-07", "2026-01-09", "2026-01-10",
                                                   "2026-01-11") for h in ("00", "09", "10", "23")],
                                 "date string, hour string")
    by_column = {tuple(r) for r in rows.where(window.column(rows["date"], rows["hour"])).collect()}
    assert by_column == {tuple(r) for r in rows.where(window.predicate()).collect()}
    assert by_column == {(d, h) for d in ("2026-01-07", "2026-01-09") for h in ("00", "09", "10", "23")} | {
        ("2026-01-10", "00"), ("2026-01-10", "09")}


def test_arguments(capsys):
    args = parse_args(["--from", "2026-01-07", "--to", "2026-01-08", "--entity", "trades", "--entity", "trades"])
    assert (args.from_date, args.to_date, [e.name for e in args.entities]) == (
        date(2026, 1, 7), date(2026, 1, 8), ["trades"])
    assert [e.name for e in parse_args(["--from", "2026-01-07", "--to", "2026-01-07"]).entities] == [
        "trades", "quotes"]
    for argv, message in ((["--from", "2026-01-08", "--to", "2026-01-07"], "--from 2026-01-08 is after --to 2026-01-07"),
                          (["--from", "2026-01-32", "--to", "2026-02-01"], "not a date: '2026-01-32'"),
                          (["--to", "2026-01-07"], "the following arguments are required: --from")):
        with pytest.raises(SystemExit) as exit_info:
            parse_args(argv)
        assert exit_info.value.code == 2
        assert message in capsys.readouterr().err
