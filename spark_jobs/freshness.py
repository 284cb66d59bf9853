"""Silver freshness that knows the market: is the newest trade in Silver recent, given the exchange's hours?

    python -m spark_jobs.freshness [--now ISO8601-UTC] [--json PATH]

No Spark: the newest trade time of silver/trades comes from its Delta log (each data file's max trade_ts statistic;
no data is read), the market's hours from market_hours (calendar, session: regular, extended or always) through the
exchange_calendars library. While the market is closed (nights, weekends, holidays, after a half day's 13:00 close)
no trade is expected: fresh, saying until when it is closed. While it is open the newest trade must be at most
watchdog.max_silver_trade_age_seconds old, counted from the session's open when that is later: a market that opened
less than that ago is fresh whatever the newest trade (Silver holds the previous session's). Trades stopping during
the session are stale.

Prints one line; --json writes the result; with monitoring.pushgateway_url set, the verdict and whether the market
is open also go to the Pushgateway (spark_jobs/lib/pushed_metrics.py) for the alert rules of conf/prometheus. Exit 0
fresh or closed, 1 stale or Silver unreadable, 2 bad configuration or arguments.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from datetime import datetime, timezone
from pathlib import Path

from conf.settings import ConfigError, load_settings
from producer.market_calendar import MarketHours
from spark_jobs.lib.logs import LOG_FORMAT
from spark_jobs.lib.delta import storage_options
from spark_jobs.lib.hours import parse_utc
from conf.errors import first_line
from spark_jobs.lib.pushed_metrics import FRESHNESS_JOB, freshness_samples, push
from spark_jobs.lib.transforms import TRADES

log = logging.getLogger("stocklake.freshness")


def assess(newest_trade: datetime | None, now: datetime, market: MarketHours,
           max_age_seconds: float) -> tuple[bool, str]:
    """(fresh, why) of Silver whose newest trade is `newest_trade` (None: no trade at all) at `now`."""
    opened = market.open_since(now)
    if opened is None:
        return True, f"market closed, no trade expected ({market.describe(now)})"
    expected_since = max(opened.timestamp(), now.timestamp() - max_age_seconds)
    newest = "no trade in Silver" if newest_trade is None else \
        f"newest trade {newest_trade:%Y-%m-%d %H:%M:%S} UTC, {now.timestamp() - newest_trade.timestamp():,.0f} s old"
    if newest_trade is not None and newest_trade.timestamp() >= expected_since:
        return True, f"market open, {newest}"
    if now.timestamp() - opened.timestamp() <= max_age_seconds:
        return True, f"market opened {now.timestamp() - opened.timestamp():,.0f} s ago, {newest}"
    return False, (f"market open since {opened:%Y-%m-%d %H:%M} UTC and {newest} "
                   f"(> watchdog.max_silver_trade_age_seconds {max_age_seconds:,})")


def newest_trade_time(silver_path: str, options: dict[str, str] | None = None) -> datetime | None:
    """The newest trade time in a Silver trades table, from its files' max trade_ts statistics (None: empty)."""
    import pyarrow as pa
    from deltalake import DeltaTable

    actions = pa.table(DeltaTable(silver_path, storage_options=options).get_add_actions(flatten=True))
    if actions.num_rows == 0:
        return None
    newest = max(value for value in actions.column("max.trade_ts").to_pylist() if value is not None)
    return datetime.fromtimestamp(newest / 1000, timezone.utc)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m spark_jobs.freshness", description=__doc__.splitlines()[0])
    parser.add_argument("--now", type=parse_utc, help="judge at this instant (ISO 8601, UTC; default: now)")
    parser.add_argument("--json", type=Path, help="also write the result as JSON here")
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    try:
        args = parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    now = args.now or datetime.now(timezone.utc)
    try:
        settings = load_settings()
        market = MarketHours.from_settings(settings)
    except (ConfigError, ValueError) as exc:
        print(f"freshness: configuration error: {exc}", file=sys.stderr)
        return 2
    silver_path = settings.lake_uri(TRADES.table("silver"))
    try:
        newest = newest_trade_time(silver_path, storage_options(settings))
    except Exception as exc:
        print(f"freshness: cannot read {silver_path}: {first_line(exc)}", file=sys.stderr)
        return 1
    fresh, why = assess(newest, now, market, settings.watchdog.max_silver_trade_age_seconds)
    result = {"fresh": fresh, "reason": why, "now": now.isoformat(), "silver": silver_path,
              "newest_trade": None if newest is None else newest.isoformat()}
    log.info(json.dumps({"event": "silver_freshness", **result}))
    print(f"freshness: {silver_path}: {'fresh' if fresh else 'STALE'}: {why}")
    age = None if newest is None else (now - newest).total_seconds()
    push(settings.monitoring.pushgateway_url, FRESHNESS_JOB,
         freshness_samples(TRADES.name, fresh, age, market.open_since(now) is not None, now.timestamp()))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0 if fresh else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
