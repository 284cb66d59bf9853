"""Silver change index: which (symbol, minute) buckets of Silver trades changed, and in which Silver version.

    python -m spark_jobs.silver_changes [--json PATH]

No Spark: reads Silver's Delta change data feed with deltalake (delta-rs) from the version after the last one
indexed to the current one, and appends one row per changed (symbol, UTC minute) to silver/trades_changes, a Delta
table beside Silver (so DuckDB and Snowflake read it like Silver). Gold's incremental candle models rebuild exactly
the buckets whose rows carry a silver_version above the one they were last built through (dbt_project, the
`changed_buckets` macro), whole, at every grain; the Gold DAG and `make gold` run this job before `dbt build`.

What the feed holds: rows the stream appends (late ones included), reconcile's MERGE, reprocess's replaceWhere (its
deletes and inserts); compaction (OPTIMIZE, dataChange=false) changes no row and adds nothing. When the feed cannot
say what changed (the first run, a table written before the feed was on, change files vacuumed, versions whose
log expired) it appends one row with a null symbol at the current version: "everything changed", which Gold
answers with a full rebuild. Never silent: such a run logs why.

Columns: silver_version (the Silver version this run indexed through), from_version (the first version it read),
symbol, minute_ts (epoch ms of the minute's start, UTC), inserted_rows, deleted_rows (an update counts in both),
indexed_at. Prints one summary line; --json writes it. Exit 0 indexed (or nothing new), 1 failed, 2 bad
configuration.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pyarrow as pa

from conf.settings import ConfigError, load_settings
from spark_jobs.lib.logs import LOG_FORMAT
from spark_jobs.lib.delta import storage_options
from conf.errors import first_line
from spark_jobs.lib.transforms import TRADES

LOGGER_NAME = "stocklake.silver_changes"
log = logging.getLogger(LOGGER_NAME)

CHANGES_SCHEMA = pa.schema([
    ("silver_version", pa.int64()), ("from_version", pa.int64()), ("symbol", pa.string()),
    ("minute_ts", pa.int64()), ("inserted_rows", pa.int64()), ("deleted_rows", pa.int64()),
    ("indexed_at", pa.timestamp("us", tz="UTC")),
])


def changes_path(silver_path: str) -> str:
    """The index of a Silver table: silver/trades -> silver/trades_changes."""
    return silver_path.rstrip("/") + "_changes"


def last_indexed_version(index_path: str, options: dict[str, str] | None) -> int | None:
    """The Silver version the index was last built through; None when there is no index yet."""
    import duckdb
    from deltalake import DeltaTable
    from deltalake.exceptions import TableNotFoundError

    try:
        index = DeltaTable(index_path, storage_options=options)
    except TableNotFoundError:
        return None
    with duckdb.connect() as con:
        con.register("changes", index.to_pyarrow_dataset())
        return con.execute("select max(silver_version) from changes").fetchall()[0][0]


def bucket_counts(feed: pa.Table) -> list[dict[str, Any]]:
    """Rows of the change feed (symbol, trade_ts, _change_type) -> inserted and deleted rows per (symbol, UTC minute
    of 60,000 ms). An update's pre-image leaves its bucket, its post-image enters one."""
    import duckdb

    with duckdb.connect() as con:
        con.register("feed", feed)
        rows = con.execute("""
        select symbol, trade_ts - trade_ts % 60000 as minute_ts,
               count(*) filter (where _change_type in ('insert', 'update_postimage')) as inserted_rows,
               count(*) filter (where _change_type in ('delete', 'update_preimage')) as deleted_rows
        from feed
        where _change_type in ('insert', 'update_postimage', 'delete', 'update_preimage')
        group by all
        order by symbol, minute_ts""").fetchall()
    return [dict(zip(("symbol", "minute_ts", "inserted_rows", "deleted_rows"), row)) for row in rows]


def read_feed(silver, from_version: int, to_version: int) -> pa.Table:
    reader = silver.load_cdf(starting_version=from_version, ending_version=to_version,
                             columns=["symbol", "trade_ts", "_change_type"])
    return pa.RecordBatchReader.from_stream(reader).read_all()


def index_changes(silver_path: str, options: dict[str, str] | None = None, now: datetime | None = None) -> dict:
    """Append the changes of Silver since the last indexed version to its index; returns what was done."""
    from deltalake import DeltaTable, write_deltalake

    silver = DeltaTable(silver_path, storage_options=options)
    current = silver.version()
    index_path = changes_path(silver_path)
    last = last_indexed_version(index_path, options)
    result = {"silver": silver_path, "index": index_path, "silver_version": current, "from_version": None,
              "buckets": 0, "inserted_rows": 0, "deleted_rows": 0, "full_rebuild": None}
    if last is not None and last >= current:
        return {**result, "status": "up_to_date"}
    start = 0 if last is None else last + 1
    buckets, why_full = changed_buckets(silver, start, current, first_run=last is None)
    if why_full:
        buckets = [{"symbol": None, "minute_ts": None, "inserted_rows": 0, "deleted_rows": 0}]
        log.warning(json.dumps({"event": "full_rebuild", "silver": silver_path, "reason": why_full}))
    if not buckets:  # only compaction or metadata commits: no row changed, nothing to index
        return {**result, "status": "no_row_changes", "from_version": start}
    stamp = {"silver_version": current, "from_version": start, "indexed_at": now or datetime.now(timezone.utc)}
    write_deltalake(index_path, pa.Table.from_pylist([{**stamp, **b} for b in buckets], schema=CHANGES_SCHEMA),
                    mode="append", storage_options=options)
    return {**result, "status": "indexed", "from_version": start, "full_rebuild": why_full,
            "buckets": 0 if why_full else len(buckets),
            "inserted_rows": sum(b["inserted_rows"] for b in buckets),
            "deleted_rows": sum(b["deleted_rows"] for b in buckets)}


def changed_buckets(silver, start: int, current: int, first_run: bool) -> tuple[list[dict], str | None]:
    """(buckets changed in versions start..current, None), or ([], why) when only a full rebuild is safe."""
    if first_run:
        return [], "first run: no index yet"
    try:
        return bucket_counts(read_feed(silver, start, current)), None
    except Exception as exc:  # delta-rs raises DeltaError/generic errors for a feed it cannot read
        return [], f"change data feed unreadable for versions {start}..{current}: {first_line(exc)}"


def render(result: dict) -> str:
    if result["status"] != "indexed":
        return f"silver_changes: {result['silver']} version {result['silver_version']}: no row changed"
    what = (f"full rebuild ({result['full_rebuild']})" if result["full_rebuild"] else
            f"{result['buckets']:,} buckets changed (+{result['inserted_rows']:,} / -{result['deleted_rows']:,} rows)")
    return (f"silver_changes: {result['silver']} versions {result['from_version']}..{result['silver_version']}: "
            f"{what}")


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m spark_jobs.silver_changes",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, help="also write the result as JSON here")
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    try:
        args = parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"silver_changes: configuration error: {exc}", file=sys.stderr)
        return 2
    silver_path = settings.lake_uri(TRADES.table("silver"))
    try:
        result = index_changes(silver_path, storage_options(settings))
    except Exception as exc:
        print(f"silver_changes: cannot index {silver_path}: {first_line(exc)}", file=sys.stderr)
        return 1
    log.info(json.dumps({"event": "silver_changes", **result}, default=str))
    print(render(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
