"""Data-quality suite on Silver: Great Expectations over the latest closed hour partitions.

    python -m spark_jobs.data_quality [--entity trades|quotes ...] [--hours N] [--partition YYYY-MM-DD/HH ...]
                                      [--now ISO8601-UTC] [--json PATH]

No Spark: the chosen (date, hour) partitions of silver/<entity> are read with deltalake (delta-rs) into pandas and
validated with a Great Expectations 1.x suite built here (ephemeral context, pandas datasource):
- the columns are exactly the Silver contract's: the message schema's fields (conf/schemas, every version), the
  event time, the Kafka lineage, ingest_time, date, hour (the columns transforms.silver_rows writes); in any order,
  since Delta schema evolution adds a new version's fields after the others;
- not null: every field the message schema requires and does not allow to be null, and every column the stream
  itself fills (event time, lineage, date, hour);
- prices > 0 (trades: price; quotes: current, high, low, open, previous_close), trades' volume >= 0;
- symbol in quality.allowed_symbols (when empty: the simulator's symbols and finnhub.symbols);
- event_id unique (a duplicated id counts every row that carries it: one id twice is 2 unexpected rows);
- the event time lies in its partition's hour, [date hour:00, +1 h): checked as the pair (date/hour,
  event time truncated to its UTC hour) being equal, on a derived frame so the table's columns stay as read.

Which partitions: --partition picks them (repeatable, checked even if still open); otherwise the --hours newest
closed hours present in the table (default quality.latest_hours). An hour is closed once
now >= hour end + maintenance.closed_hour_grace_minutes; open hours still receive rows and are left alone.
No closed partition to check (a fresh table, a market holiday) passes with a "nothing to check" line: missing data
is the freshness checks' and the stream watchdog's business, not this suite's. A named --partition absent from
the table likewise has nothing to check.

Prints one line per expectation (success, unexpected count, up to five unexpected values with their event_id) and a
summary line per entity; --json writes the full result (Great Expectations' validation results included, whose
unexpected lists are capped, never the whole frame). Exit 0 all passed, 1 any expectation failed or the table could
not be read, 2 bad configuration or arguments.
"""
from __future__ import annotations

import argparse
import json
import logging
import re
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable

from conf.contracts.schemas import load_contract
from conf.lake import delta_rs_uri
from conf.settings import ConfigError, Settings, load_settings
from spark_jobs.lib.logs import LOG_FORMAT
from spark_jobs.lib.hours import is_closed
from spark_jobs.lib.hours import parse_utc as parse_now
from spark_jobs.lib.delta import credentialed_storage_options as storage_options
from spark_jobs.lib.transforms import ENTITIES, PARTITION_COLUMNS, Entity

LOGGER_NAME = "stocklake.data_quality"
log = logging.getLogger(LOGGER_NAME)

# Columns silver_rows adds after the event's own fields and its event time (restated from transforms.silver_rows;
# the integration test checks them against a table created by the stream's own code).
LINEAGE_COLUMNS = ["kafka_topic", "kafka_partition", "kafka_offset", "kafka_timestamp", "ingest_time"]
# Price-like fields that must be strictly positive, and quantities that must not be negative, per entity.
POSITIVE_COLUMNS = {"trades": ["price"], "quotes": ["current", "high", "low", "open", "previous_close"]}
NON_NEGATIVE_COLUMNS = {"trades": ["volume"], "quotes": []}
PARTITION = re.compile(r"^(\d{4}-\d{2}-\d{2})/(\d{2})$")
SAMPLE_SIZE = 5
# Derived columns of the event-time check (a separate frame: the table's own columns are checked as read).
PARTITION_COLUMN, EVENT_HOUR_COLUMN = "partition", "event_time_partition"


@dataclass(frozen=True)
class Contract:
    """What a Silver table of one entity must look like."""

    entity: str
    columns: list[str]
    not_null: list[str]
    positive: list[str]
    non_negative: list[str]
    event_time_column: str


def contract(entity: Entity) -> Contract:
    schema = load_contract(entity.schema_name)
    fields = list(schema["properties"])
    required = set(schema.get("required", []))

    def nullable(name: str) -> bool:
        declared = schema["properties"][name].get("type", [])
        return name not in required or "null" in ([declared] if isinstance(declared, str) else declared)

    stream_filled = [entity.event_time_column, *LINEAGE_COLUMNS, *PARTITION_COLUMNS]
    return Contract(entity=entity.name, columns=fields + stream_filled,
                    not_null=[name for name in fields if not nullable(name)] + stream_filled,
                    positive=POSITIVE_COLUMNS[entity.name], non_negative=NON_NEGATIVE_COLUMNS[entity.name],
                    event_time_column=entity.event_time_column)


def allowed_symbols(settings: Settings) -> list[str]:
    configured = list(settings.quality.allowed_symbols)
    return sorted(set(configured) if configured else set(settings.simulator.symbols) | set(settings.finnhub.symbols))


# ---- which partitions -------------------------------------------------------------------------------------------

def hour_start(partition: tuple[str, str]) -> datetime:
    date, hour = partition
    return datetime.strptime(f"{date} {hour}", "%Y-%m-%d %H").replace(tzinfo=timezone.utc)


def parse_partition(text: str) -> tuple[str, str]:
    """'2026-01-05/14' -> ('2026-01-05', '14'); anything else is an argparse error."""
    m = PARTITION.match(text)
    try:
        if not m:
            raise ValueError
        hour_start((m.group(1), m.group(2)))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a partition: {text!r} (use YYYY-MM-DD/HH, e.g. 2026-01-05/14)") from None
    return m.group(1), m.group(2)


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a whole number > 0, got {text!r}")
    return value


def latest_closed_hours(partitions: Iterable[tuple[str, str]], now: datetime, grace_minutes: int,
                        count: int) -> list[tuple[str, str]]:
    """The `count` newest partitions whose hour is closed (now >= hour end + grace), oldest first."""
    closed = {p for p in partitions if is_closed(p[0], p[1], now, grace_minutes)}
    return sorted(closed, key=hour_start)[-count:]


def table_partitions(partition_values: Iterable[dict[str, str | None]]) -> tuple[list[tuple[str, str]], list[dict]]:
    """(date, hour) pairs of a Delta table's partitions, and the ones that are not valid date/hour values."""
    valid, invalid = [], []
    for values in partition_values:
        try:
            valid.append(parse_partition(f"{values.get('date')}/{values.get('hour')}"))
        except argparse.ArgumentTypeError:
            invalid.append(dict(values))
    return sorted(set(valid), key=hour_start), invalid


# ---- reading Silver ---------------------------------------------------------------------------------------------

def delta_uri(settings: Settings, entity: Entity) -> str:
    return delta_rs_uri(settings, entity.table("silver"))


def open_table(settings: Settings, entity: Entity):
    from deltalake import DeltaTable

    return DeltaTable(delta_uri(settings, entity), storage_options=storage_options(settings))


def read_partitions(table, partitions: list[tuple[str, str]]):
    """The rows of these (date, hour) partitions as pandas, in the table's column order."""
    return table.to_pandas(filters=[[("date", "=", date), ("hour", "=", hour)] for date, hour in partitions])


# ---- the suite --------------------------------------------------------------------------------------------------

def event_time_frame(frame, event_time_column: str):
    """event_id, the row's partition (date/hour) and the UTC hour of its event time, as 'YYYY-MM-DD/HH'."""
    import pandas as pd

    times = pd.to_datetime(frame[event_time_column])
    times = times.dt.tz_convert("UTC") if times.dt.tz is not None else times.dt.tz_localize("UTC")
    return pd.DataFrame({
        "event_id": frame["event_id"] if "event_id" in frame else None,
        PARTITION_COLUMN: frame["date"] + "/" + frame["hour"],
        EVENT_HOUR_COLUMN: times.dt.strftime("%Y-%m-%d/%H"),
    }, index=frame.index)


def table_expectations(contract_: Contract, symbols: list[str]) -> list:
    import great_expectations as gx

    expect = gx.expectations
    return [
        expect.ExpectTableColumnsToMatchSet(column_set=contract_.columns, exact_match=True),
        *[expect.ExpectColumnValuesToNotBeNull(column=name) for name in contract_.not_null],
        *[expect.ExpectColumnValuesToBeBetween(column=name, min_value=0, strict_min=True)
          for name in contract_.positive],
        *[expect.ExpectColumnValuesToBeBetween(column=name, min_value=0) for name in contract_.non_negative],
        expect.ExpectColumnValuesToBeInSet(column="symbol", value_set=symbols),
        expect.ExpectColumnValuesToBeUnique(column="event_id"),
    ]


def event_time_expectations() -> list:
    import great_expectations as gx

    return [gx.expectations.ExpectColumnPairValuesToBeEqual(column_A=PARTITION_COLUMN, column_B=EVENT_HOUR_COLUMN)]


def summarize(result) -> dict:
    """One expectation's outcome, small enough for a log line: never the unexpected rows beyond a sample."""
    config = result.expectation_config
    kwargs = config.kwargs
    details = result.result or {}
    column = kwargs.get("column") or (f"{kwargs['column_A']},{kwargs['column_B']}" if "column_A" in kwargs else None)
    summary: dict[str, Any] = {"expectation": config.type, "column": column, "success": bool(result.success),
                               "unexpected_count": details.get("unexpected_count")}
    sample = details.get("partial_unexpected_index_list") or details.get("partial_unexpected_list") or []
    # The row's event id first, then the offending value(s).
    sample = [{"event_id": row["event_id"], **row} if isinstance(row, dict) and "event_id" in row else row
              for row in sample[:SAMPLE_SIZE]]
    summary["unexpected_sample"] = json.loads(json.dumps(sample, default=str))
    if "observed_value" in details:
        summary["observed_value"] = json.loads(json.dumps(details["observed_value"], default=str))
    # exception_info is one {"raised_exception", "exception_message", ...} or a mapping of several by metric.
    info = result.exception_info or {}
    raised = [info] if "raised_exception" in info else [v for v in info.values() if isinstance(v, dict)]
    messages = [str(e.get("exception_message")) for e in raised if e.get("raised_exception")]
    if messages:
        summary["error"] = messages[0].splitlines()[0] if messages[0] else "exception"
    return summary


def validate(frame, contract_: Contract, symbols: list[str]) -> dict:
    """Run the suite on a Silver frame: {"success", "expectations": [summaries], "validation_results": [...]}."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import (DataContextConfig, InMemoryStoreBackendDefaults,
                                                            ProgressBarsConfig)

    context = gx.get_context(mode="ephemeral", project_config=DataContextConfig(
        store_backend_defaults=InMemoryStoreBackendDefaults(), analytics_enabled=False,
        progress_bars=ProgressBarsConfig(globally=False)))
    source = context.data_sources.add_pandas("silver")
    runs = [(f"silver_{contract_.entity}", frame, table_expectations(contract_, symbols))]
    if {contract_.event_time_column, "date", "hour"} <= set(frame.columns):
        runs.append((f"silver_{contract_.entity}_event_time", event_time_frame(frame, contract_.event_time_column),
                     event_time_expectations()))
    summaries, raw = [], []
    for name, data, expectations in runs:
        batch_definition = source.add_dataframe_asset(name).add_batch_definition_whole_dataframe("partitions")
        suite = context.suites.add(gx.ExpectationSuite(name, expectations=expectations))
        result_format: dict[str, Any] = {"result_format": "SUMMARY", "partial_unexpected_count": 20}
        if "event_id" in data.columns:
            # Name each sampled row by its event id rather than by a meaningless frame index.
            result_format["unexpected_index_column_names"] = ["event_id"]
        outcome = batch_definition.get_batch(batch_parameters={"dataframe": data}).validate(
            suite, result_format=result_format)
        # Results come back grouped by column; report them in the suite's order.
        order = {expectation.id: index for index, expectation in enumerate(suite.expectations)}
        results = sorted(outcome.results, key=lambda result: order.get(result.expectation_config.id, len(order)))
        summaries.extend(summarize(result) for result in results)
        raw.append(outcome.to_json_dict())
    if len(runs) == 1:
        summaries.append({"expectation": "expect_column_pair_values_to_be_equal",
                          "column": f"{PARTITION_COLUMN},{EVENT_HOUR_COLUMN}", "success": False,
                          "unexpected_count": None, "unexpected_sample": [],
                          "error": f"cannot check event times: needs columns {contract_.event_time_column}, date, hour"})
    return {"success": all(s["success"] for s in summaries), "expectations": summaries,
            "validation_results": json.loads(json.dumps(raw, default=str))}


# ---- the job ----------------------------------------------------------------------------------------------------

def check_entity(settings: Settings, entity: Entity, now: datetime, hours: int,
                 partitions: list[tuple[str, str]] | None) -> dict:
    report: dict[str, Any] = {"entity": entity.name, "table": delta_uri(settings, entity), "now": now.isoformat(),
                              "partitions": [], "rows": 0, "success": True, "expectations": []}
    try:
        table = open_table(settings, entity)
        present, invalid = table_partitions(table.partitions())
    except ConfigError:
        raise
    except Exception as exc:  # a missing table, an unreachable store: the job failed, the DAG must alert
        report.update(success=False, error=f"cannot read {report['table']}: {type(exc).__name__}: "
                                           f"{str(exc).splitlines()[0] if str(exc) else ''}")
        return report
    if invalid:
        log.warning(json.dumps({"event": "invalid_partitions", "entity": entity.name, "partitions": invalid}))
    if partitions is None:
        chosen = latest_closed_hours(present, now, settings.maintenance.closed_hour_grace_minutes, hours)
        report["selection"] = f"latest {hours} closed hour(s)"
    else:
        requested = list(dict.fromkeys(partitions))
        chosen = [p for p in requested if p in set(present)]
        report["missing_partitions"] = [f"{d}/{h}" for d, h in requested if (d, h) not in chosen]
        report["selection"] = "--partition"
    report["partitions"] = [f"{d}/{h}" for d, h in chosen]
    log.info(json.dumps({"event": "partitions_selected", "entity": entity.name, "partitions": report["partitions"],
                         "present": len(present)}))
    if not chosen:
        report["nothing_to_check"] = True
        return report
    started = time.monotonic()
    frame = read_partitions(table, chosen)
    report["rows"] = len(frame)
    log.info(json.dumps({"event": "partitions_read", "entity": entity.name, "rows": len(frame),
                         "seconds": round(time.monotonic() - started, 2)}))
    outcome = validate(frame, contract(entity), allowed_symbols(settings))
    report.update(outcome)
    log.info(json.dumps({"event": "validated", "entity": entity.name, "success": outcome["success"],
                         "failed": [s["expectation"] + (f"({s['column']})" if s["column"] else "")
                                    for s in outcome["expectations"] if not s["success"]]}))
    return report


def render(report: dict) -> str:
    lines = []
    for s in report["expectations"]:
        column = f"({s['column']})" if s["column"] else ""
        line = f"  {'PASS' if s['success'] else 'FAIL'} {s['expectation']}{column}"
        if s["unexpected_count"] is not None:
            line += f" unexpected={s['unexpected_count']:,}"
        if not s["success"]:
            if s["unexpected_sample"]:
                line += f" e.g. {json.dumps(s['unexpected_sample'])}"
            if "observed_value" in s:
                line += f" observed={json.dumps(s['observed_value'])}"
            if "error" in s:
                line += f" error: {s['error']}"
        lines.append(line)
    name = f"data_quality {report['entity']}"
    if "error" in report:
        lines.append(f"{name}: FAILED: {report['error']}")
    elif report.get("nothing_to_check"):
        why = (f"partitions {', '.join(report['missing_partitions'])} not in the table"
               if report["selection"] == "--partition"
               else f"no closed hour partition in the table as of {report['now']}")
        lines.append(f"{name}: nothing to check ({why}) {report['table']}: passed")
    else:
        failed = sum(1 for s in report["expectations"] if not s["success"])
        total = len(report["expectations"])
        lines.append(f"{name}: {'passed' if report['success'] else 'FAILED'}: {total - failed}/{total} expectations "
                     f"passed on {report['rows']:,} rows of {', '.join(report['partitions'])} ({report['table']})"
                     + (f"; not in the table: {', '.join(report['missing_partitions'])}"
                        if report.get("missing_partitions") else ""))
    return "\n".join(lines)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m spark_jobs.data_quality", description=__doc__.splitlines()[0])
    parser.add_argument("--entity", choices=list(ENTITIES), action="append",
                        help="a Silver table to check; repeat for several (default: trades)")
    parser.add_argument("--hours", type=positive_int,
                        help="check the N newest closed hour partitions (default: quality.latest_hours)")
    parser.add_argument("--partition", type=parse_partition, action="append",
                        help="YYYY-MM-DD/HH: check this partition (repeatable; overrides --hours)")
    parser.add_argument("--now", type=parse_now, help="the time that decides which hours are closed (default: now)")
    parser.add_argument("--json", type=Path, help="also write the full result as JSON here")
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    try:
        args = parse_args(argv)
    except SystemExit as exc:  # argparse printed the one-line error (or --help): hand back its exit code
        return int(exc.code or 0)
    # Our progress at INFO; Great Expectations' own INFO chatter (hundreds of lines) stays out.
    logging.basicConfig(level=logging.WARNING, format=LOG_FORMAT)
    log.setLevel(logging.INFO)
    now = args.now or datetime.now(timezone.utc)
    try:
        settings = load_settings()
        storage_options(settings)  # fail on missing credentials before any reading
    except ConfigError as exc:
        print(f"data_quality: configuration error: {exc}", file=sys.stderr)
        return 2
    hours = args.hours or settings.quality.latest_hours
    reports = [check_entity(settings, ENTITIES[name], now, hours, args.partition)
               for name in dict.fromkeys(args.entity or ["trades"])]
    for report in reports:
        print(render(report))
    passed = all(r["success"] for r in reports)
    if args.json:
        args.json.write_text(json.dumps({"success": passed, "now": now.isoformat(), "entities": reports}, indent=2))
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
