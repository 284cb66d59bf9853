"""Historical backfill: daily bars per symbol for a date range, from Finnhub candles or a CSV/Parquet file, into
bronze/bars, quarantine/bars and silver/bars through the stream's own validation. Re-runs change nothing.

    spark-submit spark_jobs/backfill.py --from YYYY-MM-DD --to YYYY-MM-DD [--symbols AAPL,MSFT]
                                        (--file PATH.csv|PATH.parquet | --finnhub) [--json PATH]

--symbols defaults to finnhub.symbols; --from and --to are trading dates, both included.

Sources (read on the driver: days x symbols is small):
- --finnhub: GET {finnhub.rest_url}/stock/candle?symbol=S&resolution=D&from=<epoch s>&to=<epoch s> per symbol,
  the key from FINNHUB_API_KEY in the X-Finnhub-Token header only, at most finnhub.quote_calls_per_minute calls a
  minute, 429 waited out (Retry-After, else backoff), as the quote poller does (producer/finnhub_candles.CandleClient).
  A key without candle access (403) -> exit 2 saying so; `{"s":"no_data"}` -> no bars for that symbol, reported.
- --file: CSV with a header, or Parquet, with exactly these columns (producer/samples/daily-bars-sample.csv):
      symbol                    ticker, e.g. AAPL
      date                      trading date, YYYY-MM-DD (in Parquet also a date or timestamp column)
      open, high, low, close    prices, > 0
      volume                    shares traded, >= 0
  Missing or unknown columns -> exit 2 naming them. Rows of other symbols or dated outside --from..--to are
  ignored and counted. PATH is a local path or any URI Spark reads (s3a://...).

Validation: each bar becomes a bar.v1 event (conf/schemas/bar.v1.json) with event_id = sha256(source|symbol|
trading_date), so a re-run, or a re-load of the same bar, has the same id. The events are laid out as Bronze rows,
as if read from Kafka (key = symbol, value = the JSON, topic = backfill:<source>, partition = -1, offset = row
index, kafka_timestamp = the run's start, kafka_timestamp_type = -1: not from Kafka), and go through the stream's
parse_events / silver_rows / quarantine_rows with bar.v1, plus one rule a JSON Schema cannot state: high >= max(open,
close, low) and low <= min(open, close, high), else `ohlc:inconsistent`. A bar stamped further past the run's start
than stream.max_future_skew_seconds is `bar_ts:future`.

Writes: one Delta MERGE per table, in this order, so a run that fails midway is completed by running it again:
- bronze/bars: every bar read, unless a row with the same topic and value (byte for byte) is there already.
  Bronze holds each distinct payload a source delivered once; a corrected bar is a new payload, so Bronze keeps
  both versions (partitioned by run time, as the stream's Bronze is by Kafka time).
- quarantine/bars: the invalid bars with the reason, by the same (topic, value) rule.
- silver/bars: the valid bars, on event_id: inserted when new; updated (every column, lineage included) when
  bar_ts, open, high, low, close or volume differ, since vendors correct daily bars; left alone when equal. Bars
  sharing an id within one run (a file listing a day twice) keep the first (lowest offset), as the stream keeps
  the first delivery; the others are counted as duplicates_in_input. Partitioned like the other Silver tables:
  date = the trading date, hour = "00" (the bar's 00:00 UTC stamp), plain column types for dbt/DuckDB.
  Bars of one symbol and day from Finnhub and from a file have different ids (the source is part of it): both
  stay, told apart by `source`.

Report (stdout: one line; --json PATH: all of it): bars read, ignored, no-data symbols, valid, quarantined by
reason, duplicates in the input, rows added to Bronze and quarantine, Silver inserted / updated / unchanged, and
counts per symbol. Progress is logged as JSON lines. Exit 0 done; 1 the job failed (Finnhub kept failing or
answered garbage, storage errors); 2 bad arguments or configuration, one line on stderr naming the option or
setting.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from functools import reduce
from pathlib import Path
from typing import Any, Iterable

from delta.tables import DeltaTable
from pyspark.errors import AnalysisException
from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql.types import DateType, TimestampNTZType, TimestampType

from conf.identifiers import IdentifierError, is_symbol
from conf.identifiers import symbol as ticker
from conf.preflight import preflight
from conf.contracts.schemas import load_contract
from conf.settings import ConfigError, Settings, load_settings
from conf.contracts.bars import FILE, FILE_COLUMNS, FINNHUB, file_row_event, parse_trading_date
from producer.finnhub_candles import CandleClient, CandleFetchFailed, CandleFormatError, candle_events
from producer.errors import AccessDenied, ApiKeyRejected
from conf.contracts.events import encode
from producer.secrets import MissingApiKey, api_key, install_redaction
from spark_jobs.lib.jobs import OneLineParser
from spark_jobs.lib.logs import LOG_FORMAT
from spark_jobs.lib.session import build_spark
from spark_jobs.lib.tables import KAFKA_SCHEMA, ensure_tables
from spark_jobs.lib.transforms import BARS, bronze_rows, parse_events, quarantine_rows, silver_rows

log = logging.getLogger("stocklake.backfill")

PROG = "spark_jobs/backfill.py"
TOPIC_PREFIX = "backfill:"
NOT_FROM_KAFKA = -1  # partition and timestamp type of a backfilled row (Kafka's own "no timestamp type" is -1)
# Silver columns a vendor's correction can change; the rest of the event is its identity (the id's inputs).
SILVER_VALUE_COLUMNS = ("bar_ts", "open", "high", "low", "close", "volume")
OHLC_INCONSISTENT = "ohlc:inconsistent"
OTHER_SYMBOLS, OUTSIDE_DATE_RANGE = "other_symbols", "outside_date_range"
NO_CANDLE_ACCESS = ("the Finnhub API key has no candle access (HTTP 403 on /stock/candle): use --file "
                    "PATH.csv|PATH.parquet to backfill from a file instead")


class UsageError(Exception):
    """Bad arguments, configuration or input file, or a Finnhub key that cannot do this: exit 2."""


class BackfillFailed(Exception):
    """The job could not finish (Finnhub kept failing or answered garbage): exit 1."""


@dataclass
class Bars:
    """What a source gave: the bar events to land (in offset order) and what was left out, and why."""

    source: str
    events: list[dict[str, Any]] = field(default_factory=list)
    read: int = 0                                    # bars fetched or file rows read, before filtering
    ignored: Counter = field(default_factory=Counter)  # OTHER_SYMBOLS / OUTSIDE_DATE_RANGE -> rows
    no_data: list[str] = field(default_factory=list)   # Finnhub symbols that had no bar in the range


# -- arguments --------------------------------------------------------------------------------------------

def _iso_date(text: str) -> date:
    day = parse_trading_date(text)
    if day is None:
        raise argparse.ArgumentTypeError(f"not a date YYYY-MM-DD: {text!r}")
    return day


def _symbols(text: str) -> list[str]:
    symbols = list(dict.fromkeys(s.strip() for s in text.split(",") if s.strip()))
    if not symbols:
        raise argparse.ArgumentTypeError("no symbol given")
    bad = [symbol for symbol in symbols if not is_symbol(symbol)]  # before a URL, a key or a filter holds one
    if bad:
        raise argparse.ArgumentTypeError(f"invalid symbol {bad[0]!r} (upper case, e.g. AAPL, BRK.B, BINANCE:BTCUSDT)")
    return symbols


def _data_file(text: str) -> str:
    if not text.rstrip("/").lower().endswith((".csv", ".parquet")):
        raise argparse.ArgumentTypeError(f"must be a .csv or .parquet file, got {text!r}")
    return text


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = OneLineParser(prog=PROG, description=__doc__.splitlines()[0], hint=" (see --help)")
    parser.add_argument("--from", dest="start", type=_iso_date, required=True, metavar="YYYY-MM-DD",
                        help="first trading date")
    parser.add_argument("--to", dest="end", type=_iso_date, required=True, metavar="YYYY-MM-DD",
                        help="last trading date (included)")
    parser.add_argument("--symbols", type=_symbols, metavar="AAPL,MSFT", help="default: finnhub.symbols")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--file", type=_data_file, metavar="PATH.csv|PATH.parquet",
                        help="columns symbol, date, open, high, low, close, volume")
    source.add_argument("--finnhub", action="store_true", help="Finnhub /stock/candle (FINNHUB_API_KEY)")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the report as JSON here")
    args = parser.parse_args(argv)
    if args.start > args.end:
        parser.error(f"--from {args.start} is after --to {args.end}")
    return args


def symbols_of(settings: Settings, args: argparse.Namespace) -> list[str]:
    """--symbols (checked by the parser), else finnhub.symbols, each checked as a ticker (UsageError if not)."""
    if args.symbols:
        return args.symbols
    symbols = list(dict.fromkeys(settings.finnhub.symbols))
    try:
        return [ticker(symbol, "finnhub.symbols") for symbol in symbols]
    except IdentifierError as exc:
        raise UsageError(str(exc)) from None


# -- sources ----------------------------------------------------------------------------------------------

def _log(event: str, **fields: Any) -> None:
    log.info(json.dumps({"event": event, **fields}, default=str))


def select_file_rows(rows: Iterable[dict[str, Any]], symbols: list[str], start: date, end: date) -> Bars:
    """File rows (dicts of FILE_COLUMNS) -> bar events of the wanted symbols and dates, the rest counted.

    A row whose date cannot be read is kept, so the contract quarantines it instead of it vanishing here."""
    bars, wanted = Bars(FILE), set(symbols)
    for row in rows:
        bars.read += 1
        symbol = row.get("symbol")
        if (symbol.strip() if isinstance(symbol, str) else symbol) not in wanted:
            bars.ignored[OTHER_SYMBOLS] += 1
            continue
        day = parse_trading_date(row.get("date"))
        if day is not None and not start <= day <= end:
            bars.ignored[OUTSIDE_DATE_RANGE] += 1
            continue
        bars.events.append(file_row_event(row))
    return bars


def read_file(spark: SparkSession, path: str, symbols: list[str], start: date, end: date) -> Bars:
    """The bars of a CSV (header, every cell as text) or Parquet file; UsageError for a missing file or
    columns other than FILE_COLUMNS."""
    try:
        if path.rstrip("/").lower().endswith(".csv"):
            df = spark.read.csv(path, header=True, inferSchema=False)
        else:
            df = spark.read.parquet(path)
    except AnalysisException as exc:
        raise UsageError(f"--file {path}: cannot read it: {str(exc).splitlines()[0]}") from None
    missing = [name for name in FILE_COLUMNS if name not in df.columns]
    unknown = [name for name in df.columns if name not in FILE_COLUMNS]
    if missing or unknown:
        problems = ([f"missing column(s) {', '.join(missing)}"] if missing else []) + \
                   ([f"unknown column(s) {', '.join(unknown)}"] if unknown else [])
        raise UsageError(f"--file {path}: {'; '.join(problems)} (expected exactly: {', '.join(FILE_COLUMNS)})")
    date_type = df.schema["date"].dataType
    # Dates as YYYY-MM-DD text, rendered by Spark in the session time zone (UTC) rather than in Python's.
    date_text = (F.date_format("date", "yyyy-MM-dd") if isinstance(date_type, (DateType, TimestampType,
                                                                               TimestampNTZType))
                 else F.col("date").cast("string"))
    selected = df.select(F.col("symbol").cast("string").alias("symbol"), date_text.alias("date"),
                         "open", "high", "low", "close", "volume")
    bars = select_file_rows((row.asDict() for row in selected.collect()), symbols, start, end)
    _log("file_read", file=path, rows=bars.read, bars=len(bars.events), ignored=dict(bars.ignored))
    return bars


def finnhub_client(settings: Settings) -> CandleClient:
    try:
        key = api_key()
    except MissingApiKey as exc:
        raise UsageError(str(exc)) from None
    install_redaction(key)  # a second line of defence: nothing here logs the key in the first place
    return CandleClient(settings, key)


def fetch_finnhub(client: CandleClient, symbols: list[str], start: date, end: date) -> Bars:
    """The daily bars of each symbol from /stock/candle, symbol after symbol, within the rate limit."""
    bars = Bars(FINNHUB)
    for symbol in symbols:
        try:
            events = candle_events(symbol, client.candles(symbol, start, end))
        except AccessDenied:
            raise UsageError(NO_CANDLE_ACCESS) from None
        except ApiKeyRejected as exc:
            raise UsageError(str(exc)) from None
        except (CandleFetchFailed, CandleFormatError) as exc:
            raise BackfillFailed(str(exc)) from None
        bars.read += len(events)
        if not events:
            bars.no_data.append(symbol)
        kept = [e for e in events if start <= date.fromisoformat(e["trading_date"]) <= end]
        bars.ignored[OUTSIDE_DATE_RANGE] += len(events) - len(kept)
        bars.events.extend(kept)
        _log("symbol_fetched", symbol=symbol, bars=len(kept), no_data=not events)
    _log("finnhub_fetched", symbols=len(symbols), bars=len(bars.events), calls=client.calls,
         rate_limited=client.rate_limited, errors=client.errors)
    return bars


# -- transforms (pure) ------------------------------------------------------------------------------------

def bronze_frame(spark: SparkSession, bars: Bars, run_time: datetime) -> DataFrame:
    """The bars as Bronze rows, as if read from Kafka (see the module docstring)."""
    topic = TOPIC_PREFIX + bars.source
    rows = [(None if event.get("symbol") is None else str(event["symbol"]).encode("utf-8"), encode(event), topic,
             NOT_FROM_KAFKA, offset, run_time, NOT_FROM_KAFKA) for offset, event in enumerate(bars.events)]
    return bronze_rows(spark.createDataFrame(rows, KAFKA_SCHEMA))


def ohlc_consistent(event: Column) -> Column:
    """False when high is below open, close or low, or low above open, close or high; null if a price is."""
    o, h, l, c = (event[name] for name in ("open", "high", "low", "close"))  # noqa: E741
    return (h >= F.greatest(o, c, l)) & (l <= F.least(o, c, h))


def validate_bars(bronze_df: DataFrame, schema: dict[str, Any], max_future_skew_seconds: int) -> DataFrame:
    """The stream's parse_events with bar.v1, then the OHLC rule, judged on bars that keep the contract (a
    negative open is `open:exclusiveMinimum`, not also inconsistent)."""
    parsed = parse_events(bronze_df, BARS, schema, max_future_skew_seconds)
    broken = (F.size("reasons") == 0) & F.coalesce(~ohlc_consistent(F.col("event")), F.lit(False))
    return parsed.withColumn("reasons", F.when(broken, F.array_append("reasons", F.lit(OHLC_INCONSISTENT)))
                                         .otherwise(F.col("reasons")))


def first_per_event_id(silver_df: DataFrame) -> DataFrame:
    """One row per event_id: the lowest offset (the first delivery, as the stream keeps)."""
    first = Window.partitionBy("event_id").orderBy("kafka_offset")
    return silver_df.withColumn("_rank", F.row_number().over(first)).where("_rank = 1").drop("_rank")


def silver_outcomes(source: DataFrame, existing: DataFrame) -> DataFrame:
    """(symbol, outcome) of each source row against Silver: inserted, updated (values differ) or unchanged."""
    old = existing.select("event_id", F.lit(True).alias("_exists"),
                          *[F.col(name).alias(f"_old_{name}") for name in SILVER_VALUE_COLUMNS])
    differs = reduce(lambda a, b: a | b, [~F.col(name).eqNullSafe(F.col(f"_old_{name}"))
                                          for name in SILVER_VALUE_COLUMNS])
    return source.join(old, "event_id", "left").select(
        "symbol",
        F.when(F.col("_exists").isNull(), F.lit("inserted")).when(differs, F.lit("updated"))
         .otherwise(F.lit("unchanged")).alias("outcome"))


# -- writes -----------------------------------------------------------------------------------------------

def insert_new_payloads(spark: SparkSession, path: str, rows: DataFrame) -> int:
    """MERGE rows into a Bronze-shaped table, skipping those whose (topic, value) is there already."""
    metrics = (DeltaTable.forPath(spark, path).alias("t")
               .merge(rows.alias("s"), "t.topic = s.topic AND t.value = s.value")
               .whenNotMatchedInsertAll()
               .execute().first())
    return int(metrics["num_inserted_rows"])


def merge_silver(spark: SparkSession, path: str, source: DataFrame) -> Counter:
    """MERGE valid bars into Silver on event_id; (symbol, outcome) -> rows."""
    target = DeltaTable.forPath(spark, path)
    outcomes = Counter({(row["symbol"], row["outcome"]): row["count"]
                        for row in silver_outcomes(source, target.toDF()).groupBy("symbol", "outcome")
                        .count().collect()})
    changed = " OR ".join(f"NOT (t.{name} <=> s.{name})" for name in SILVER_VALUE_COLUMNS)
    metrics = (target.alias("t").merge(source.alias("s"), "t.event_id = s.event_id")
               .whenMatchedUpdateAll(condition=changed)
               .whenNotMatchedInsertAll()
               .execute().first())
    totals = Counter()
    for (_, outcome), count in outcomes.items():
        totals[outcome] += count
    if (int(metrics["num_inserted_rows"]), int(metrics["num_updated_rows"])) != (totals["inserted"],
                                                                                 totals["updated"]):
        # Only another writer between the two reads could cause it: say so rather than report wrong counts.
        raise BackfillFailed(f"silver/bars changed while this run merged into it (expected {totals['inserted']} "
                             f"inserted / {totals['updated']} updated, MERGE did {metrics['num_inserted_rows']} / "
                             f"{metrics['num_updated_rows']}): run the backfill again")
    return outcomes


@dataclass
class Landed:
    """What one backfill wrote: the bars checked (key, reasons, event_id), and the counts per table."""
    checked: list
    valid_ids: list[str]
    by_reason: Counter
    bronze_inserted: int = 0
    quarantine_inserted: int = 0
    outcomes: Counter = field(default_factory=Counter)  # (symbol, inserted|updated|unchanged) -> rows


def land(spark: SparkSession, settings: Settings, args: argparse.Namespace, bars: Bars) -> dict[str, Any]:
    """Validate the bars, write Bronze, quarantine and Silver, and return the report."""
    started = time.monotonic()
    run_time = datetime.now(timezone.utc).replace(microsecond=0)
    schema = load_contract(BARS.schema_name)
    ensure_tables(spark, settings, BARS, schema)
    paths = {layer: settings.lake_uri(BARS.table(layer)) for layer in ("bronze", "silver", "quarantine")}
    symbols = symbols_of(settings, args)
    bronze = bronze_frame(spark, bars, run_time)
    # Cached: one evaluation, so each row's ingest_time is the same in Bronze, quarantine and Silver.
    parsed = validate_bars(bronze, schema, settings.stream.max_future_skew_seconds).cache()
    try:
        landed = write_layers(spark, paths, bronze, parsed)
    finally:
        parsed.unpersist()
    report = backfill_report(args, bars, symbols, run_time, paths, landed)
    report["elapsed_seconds"] = round(time.monotonic() - started, 1)
    _log("backfill_finished", **{k: v for k, v in report.items() if k not in ("per_symbol", "tables")})
    return report


def write_layers(spark: SparkSession, paths: dict[str, str], bronze: DataFrame, parsed: DataFrame) -> Landed:
    """Bronze gets the new payloads, quarantine the invalid ones, Silver the first bar per event id (MERGE)."""
    checked = parsed.select("key", "reasons", F.col("event.event_id").alias("event_id")).collect()
    landed = Landed(checked, [row["event_id"] for row in checked if not row["reasons"]],
                    Counter(row["reasons"][0] for row in checked if row["reasons"]))
    if checked:
        landed.bronze_inserted = insert_new_payloads(spark, paths["bronze"], parsed.select(*bronze.columns))
        if landed.by_reason:
            landed.quarantine_inserted = insert_new_payloads(spark, paths["quarantine"], quarantine_rows(parsed))
        if landed.valid_ids:
            landed.outcomes = merge_silver(spark, paths["silver"], first_per_event_id(silver_rows(parsed, BARS)))
    return landed


def backfill_report(args: argparse.Namespace, bars: Bars, symbols: list[str], run_time: datetime,
                    paths: dict[str, str], landed: Landed) -> dict[str, Any]:
    checked, valid_ids, by_reason, outcomes = landed.checked, landed.valid_ids, landed.by_reason, landed.outcomes
    per_symbol = {symbol: Counter() for symbol in symbols}
    for row in checked:
        counts = per_symbol.setdefault(row["key"], Counter())
        counts["bars"] += 1
        counts["quarantined" if row["reasons"] else "valid"] += 1
    for (symbol, outcome), count in outcomes.items():
        per_symbol.setdefault(symbol, Counter())[outcome] += count
    return {
        "source": bars.source,
        "file": getattr(args, "file", None),
        "from": args.start.isoformat(),
        "to": args.end.isoformat(),
        "symbols": symbols,
        "run_time": run_time.isoformat(),
        "bars_read": bars.read,
        "ignored": {OTHER_SYMBOLS: bars.ignored[OTHER_SYMBOLS], OUTSIDE_DATE_RANGE: bars.ignored[OUTSIDE_DATE_RANGE]},
        "no_data_symbols": bars.no_data,
        "bars": len(checked),
        "valid": len(valid_ids),
        "quarantined": sum(by_reason.values()),
        "quarantined_by_reason": dict(sorted(by_reason.items())),
        "duplicates_in_input": len(valid_ids) - len(set(valid_ids)),
        "bronze_inserted": landed.bronze_inserted,
        "bronze_already_present": len(checked) - landed.bronze_inserted,
        "quarantine_inserted": landed.quarantine_inserted,
        "silver": {outcome: sum(n for (_, o), n in outcomes.items() if o == outcome)
                   for outcome in ("inserted", "updated", "unchanged")},
        "per_symbol": {symbol: {name: counts[name] for name in ("bars", "valid", "quarantined", "inserted",
                                                                  "updated", "unchanged")}
                       for symbol, counts in per_symbol.items()},
        "tables": paths,
    }


def run(spark: SparkSession, settings: Settings, args: argparse.Namespace) -> dict[str, Any]:
    """The whole job on a given session (tests run it in-process); UsageError -> exit 2, BackfillFailed -> 1."""
    symbols = symbols_of(settings, args)
    if args.finnhub:
        bars = fetch_finnhub(finnhub_client(settings), symbols, args.start, args.end)
    else:
        bars = read_file(spark, args.file, symbols, args.start, args.end)
    return land(spark, settings, args, bars)


def render(report: dict[str, Any]) -> str:
    ignored = sum(report["ignored"].values())
    no_data = f", no data for {','.join(report['no_data_symbols'])}" if report["no_data_symbols"] else ""
    silver = report["silver"]
    return (f"backfill {report['source']} {report['from']}..{report['to']}: {report['bars_read']} bars read "
            f"({ignored} ignored{no_data}), {report['valid']} valid, {report['quarantined']} quarantined; "
            f"silver/bars {silver['inserted']} inserted, {silver['updated']} updated, {silver['unchanged']} "
            f"unchanged; bronze/bars +{report['bronze_inserted']}")


def main(argv: list[str] | None = None, spark: SparkSession | None = None) -> int:
    """Entry point; pass `spark` to run in an existing session (tests), which is then left running."""
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format=LOG_FORMAT)
    args = parse_args(argv)
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"backfill: configuration error: {exc}", file=sys.stderr)
        return 2
    owned = spark is None
    try:
        symbols = symbols_of(settings, args)
        _log("backfill_started", source=FINNHUB if args.finnhub else FILE, file=args.file,
             start=args.start.isoformat(), end=args.end.isoformat(), symbols=symbols)
        # Finnhub first, before Spark starts: a key without candle access fails in a second, not after a JVM.
        bars = fetch_finnhub(finnhub_client(settings), symbols, args.start, args.end) if args.finnhub else None
        if owned:
            preflight(settings, object_store=True)  # credentials, endpoint and bucket, before the JVM starts
            spark = build_spark("stocklake-backfill", settings, {"spark.ui.enabled": "false"})
            spark.sparkContext.setLogLevel("WARN")
        if bars is None:
            bars = read_file(spark, args.file, symbols, args.start, args.end)
        report = land(spark, settings, args, bars)
    except (UsageError, ConfigError) as exc:
        print(f"backfill: error: {exc}", file=sys.stderr)
        return 2
    except BackfillFailed as exc:
        print(f"backfill: failed: {exc}", file=sys.stderr)
        return 1
    finally:
        if owned and spark is not None:
            spark.stop()
    print(render(report))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
