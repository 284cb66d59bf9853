"""The Gold dbt project's vars, made from the pipeline settings: what dbt_project/ needs of conf/pipeline.yaml.

    python -m conf.dbt_vars     # one JSON object, for: dbt build --vars "$(python -m conf.dbt_vars)"

dbt_project/ restates no setting: its sources and models read these vars without a default, so a dbt run that is
not given them stops at dbt's "Required var ... not found" instead of reading a second copy of a setting. Every
dbt run is given them (make gold, the Gold DAG's dbt_build, the demo, the bench, the tests). A caller with a var of
its own (a test's local Silver, a lake streamed without quotes) merges it over these: {**dbt_vars(settings), ...}.
"""
from __future__ import annotations

import json
import sys
from typing import Any

from conf.calendars import exchange_calendar
from conf.lake import delta_rs_uri, storage_options
from conf.settings import ConfigError, Settings, load_settings


def dbt_vars(settings: Settings) -> dict[str, Any]:
    """The vars of every dbt run, from the settings (with their STOCKLAKE_* overrides)."""
    calendar, timezone = exchange_calendar(settings.market_hours.calendar)
    return {
        # Silver's Delta tables are <silver_root>/<table>, read by dbt-duckdb's delta plugin (delta-rs) with these
        # object-store options; the credentials stay in the environment (AWS_*), never in a var.
        "silver_root": delta_rs_uri(settings, "silver"),
        "lake_storage_options": storage_options(settings),
        "lake_quotes_enabled": settings.warehouse.quotes_enabled,
        # The exchange whose sessions (seeds exchange_sessions, exchange_holidays) and time zone make trading dates.
        "exchange_calendar": calendar,
        "exchange_timezone": timezone,
    }


def main(argv: list[str]) -> int:
    """Print the vars as one line of JSON; 2 and one line on stderr for a bad setting."""
    if argv:
        print("dbt_vars: takes no argument (settings come from conf/pipeline.yaml and STOCKLAKE_*)", file=sys.stderr)
        return 2
    try:
        print(json.dumps(dbt_vars(load_settings()), sort_keys=True))
    except ConfigError as exc:
        print(f"dbt_vars: configuration error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
