"""Hours, days and hour partitions: UTC instants, closed hours, look-back windows, the retention cutoff, and the
per-partition file statistics compaction and retention decide on. Pure functions, tested with exact values.

Per-partition file statistics come from the `add` actions of a table's current snapshot (spark_jobs/lib/delta.py
read_partition_stats): each `add` carries the file's size and, from its statistics, its row count.
"""
from __future__ import annotations

import argparse
import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Any, Iterable, Mapping


HOUR = timedelta(hours=1)


# Partition values end up in SQL predicates (partition_predicate): ASCII digits only, and \Z so that no trailing
# newline passes.
DATE_VALUE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}\Z")


HOUR_VALUE = re.compile(r"[0-9]{2}\Z")


def parse_utc(text: str) -> datetime:
    """An ISO 8601 instant as an aware UTC datetime; one without an offset is taken as UTC (storage is UTC)."""
    try:
        value = datetime.fromisoformat(text.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {text!r} (e.g. 2026-01-05T15:20:00Z)") from None
    if value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc)


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def hour_start(partition_date: str, partition_hour: str) -> datetime | None:
    """Start (UTC) of the hour partition date=YYYY-MM-DD/hour=HH; None for a value that is not one."""
    if not (isinstance(partition_date, str) and DATE_VALUE.match(partition_date)
            and isinstance(partition_hour, str) and HOUR_VALUE.match(partition_hour)):
        return None
    try:
        day = date.fromisoformat(partition_date)
    except ValueError:
        return None
    if not 0 <= int(partition_hour) <= 23:
        return None
    return datetime(day.year, day.month, day.day, int(partition_hour), tzinfo=timezone.utc)


def is_closed(partition_date: str, partition_hour: str, now: datetime, grace_minutes: int) -> bool:
    """An hour is closed once it ended at least grace_minutes ago: no stream writes into it any more (Silver
    rows arrive up to the watermark delay after the hour ends, Bronze rows never after)."""
    start = hour_start(partition_date, partition_hour)
    return start is not None and now >= start + HOUR + timedelta(minutes=grace_minutes)


def in_lookback(partition_date: str, partition_hour: str, now: datetime, lookback_hours: int) -> bool:
    """The hour is one of the lookback_hours whole hours before the current one (older ones were handled by
    earlier runs)."""
    start = hour_start(partition_date, partition_hour)
    current = now.astimezone(timezone.utc).replace(minute=0, second=0, microsecond=0)
    return start is not None and current - lookback_hours * HOUR <= start < current


def retention_cutoff(now: datetime, days: int) -> str:
    """First date kept: partitions with date < this are past retention (now's UTC date minus `days`)."""
    return (now.astimezone(timezone.utc).date() - timedelta(days=days)).isoformat()


@dataclass(frozen=True)
class PartitionStats:
    """The files of one hour partition in a table's current snapshot."""

    date: str
    hour: str
    files: int
    bytes: int
    rows: int | None  # None when a file has no row-count statistics

    @property
    def key(self) -> tuple[str, str]:
        return self.date, self.hour


def partition_stats(add_actions: Iterable[Mapping[str, Any]]) -> dict[tuple[str, str], PartitionStats]:
    """Files, bytes and rows per (date, hour) from `add` actions, each a mapping with `partition.date`,
    `partition.hour`, `size_bytes` and `num_records` (delta-rs get_add_actions(flatten=True) rows)."""
    totals: dict[tuple[str, str], list] = {}
    for action in add_actions:
        key = (action["partition.date"], action["partition.hour"])
        files, size, rows = totals.setdefault(key, [0, 0, 0])
        records = action.get("num_records")
        totals[key] = [files + 1, size + int(action["size_bytes"]),
                       None if rows is None or records is None else rows + int(records)]
    return {key: PartitionStats(key[0], key[1], files, size, rows)
            for key, (files, size, rows) in sorted(totals.items(), key=lambda item: tuple(map(str, item[0])))}


def compaction_candidates(stats: Mapping[tuple[str, str], PartitionStats], now: datetime, grace_minutes: int,
                          lookback_hours: int, min_files: int) -> list[PartitionStats]:
    """Closed hours within the look-back holding at least min_files files, oldest first. The open hour (and
    any hour not yet past its grace) is never a candidate."""
    return sorted((s for s in stats.values()
                   if s.files >= min_files
                   and in_lookback(s.date, s.hour, now, lookback_hours)
                   and is_closed(s.date, s.hour, now, grace_minutes)),
                  key=lambda s: s.key)


def expired_partitions(stats: Mapping[tuple[str, str], PartitionStats], cutoff: str) -> list[PartitionStats]:
    """Partitions whose date is before the cutoff date, oldest first (ISO dates compare as strings)."""
    return sorted((s for s in stats.values() if isinstance(s.date, str) and DATE_VALUE.match(s.date)
                   and s.date < cutoff), key=lambda s: s.key)


def partition_predicate(stats: PartitionStats) -> str:
    """SQL predicate selecting one hour partition; the values are checked, never pasted blindly."""
    if hour_start(stats.date, stats.hour) is None:
        raise ValueError(f"not an hour partition: date={stats.date!r} hour={stats.hour!r}")
    return f"date = '{stats.date}' AND hour = '{stats.hour}'"
