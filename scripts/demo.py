#!/usr/bin/env python3
"""`make demo`: the whole flow for about a minute, then a summary read back from the Delta tables.

1. Empties the default topics and the lake bucket (the demo always starts from nothing).
2. Starts the streaming job (spark-submit spark_jobs/stream.py, processing-time trigger) in the background.
3. Runs the simulator producer at a few thousand events/s, with duplicate deliveries, out-of-order, late and
   malformed events mixed in.
4. Waits until the stream has read every record, stops it with SIGTERM (a clean stop between batches), and
   prints what landed where: `spark-submit spark_jobs/report.py`.
5. Builds Gold from Silver with dbt on the local target (DuckDB) and prints the KPI rows per symbol.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

from conf.kafka_security import client_config
from conf.dbt_vars import dbt_vars
from conf.settings import Settings, load_settings
from scripts.services import RUNTIME, Kafka, credentials
from spark_jobs.lib.listener import read_progress

BIN = Path(sys.executable).parent


def say(message: str) -> None:
    print(f"\n==> {message}", flush=True)


def empty_topics_and_bucket(settings) -> None:
    import boto3
    from confluent_kafka.admin import AdminClient

    admin = AdminClient(client_config(settings))
    topics = [settings.kafka.trades_topic, settings.kafka.quotes_topic, settings.kafka.dlq_topic]
    existing = [t for t in topics if t in admin.list_topics(timeout=10).topics]
    for future in (admin.delete_topics(existing).values() if existing else []):
        future.result(timeout=30)
    deadline = time.monotonic() + 60
    while any(t in admin.list_topics(timeout=10).topics for t in topics):
        if time.monotonic() > deadline:
            raise SystemExit("demo: topics were not deleted within 60 s")
        time.sleep(0.5)
    Kafka(settings).create_topics()

    user, password = credentials()
    s3 = boto3.resource("s3", endpoint_url=settings.lake.s3_endpoint, aws_access_key_id=user,
                        aws_secret_access_key=password, region_name=settings.lake.s3_region)
    s3.Bucket(settings.lake.bucket).objects.all().delete()


def stream_batches(log: Path) -> dict[str, int]:
    """Rows read so far per query, from the job's structured progress lines."""
    rows: dict[str, int] = {}
    for record in read_progress(log.read_text(errors="replace")):
        if record["event"] == "batch":
            rows[record["query"]] = rows.get(record["query"], 0) + record["rows_in"]
    return rows


def simulated_start(settings, duration: int, now: datetime) -> datetime | None:
    """When the simulated trades start: now (None) while the exchange's regular session is open; otherwise the last
    session's final minutes, so they land in a session and Gold's daily bars and KPIs (regular session only) have
    them, whatever the hour the demo runs at."""
    from producer.market_calendar import MarketHours

    closed_at = MarketHours(settings.market_hours.calendar, "regular").last_close(now)
    return None if closed_at is None else closed_at - timedelta(seconds=duration + 60)


def start_stream(stream_log: Path) -> subprocess.Popen:
    """The streaming job in the background, once both its queries have started."""
    # Batches of at most 20k records: the watermark advances batch by batch, so late events meet it.
    stream_env = {**os.environ, "STOCKLAKE_STREAM_MAX_OFFSETS_PER_TRIGGER": "20000"}
    # S603 (here and below): argv lists, no shell, of this venv's spark-submit / python / dbt and the repo's jobs.
    stream = subprocess.Popen(  # noqa: S603
        # Trades only: the demo's simulator produces no quotes, so quotes queries would only take cores.
        [str(BIN / "spark-submit"), "--driver-memory", "2g", str(REPO / "spark_jobs" / "stream.py"),
         "--entity", "trades"],
        stdout=stream_log.open("ab"), stderr=subprocess.STDOUT, start_new_session=True, env=stream_env)
    deadline = time.monotonic() + 300
    while sum(1 for record in read_progress(stream_log.read_text(errors="replace"))
              if record["event"] == "query_started") < 2:
        if stream.poll() is not None or time.monotonic() > deadline:
            stop_stream(stream)
            raise SystemExit(f"demo: the streaming job did not start; see {stream_log}")
        time.sleep(1)
    return stream


def stop_stream(stream: subprocess.Popen) -> None:
    if stream.poll() is None:
        os.killpg(stream.pid, signal.SIGTERM)  # a clean stop: the running batch commits first
        stream.wait(timeout=120)


def produce(args: argparse.Namespace, settings, summary_path: Path) -> dict:
    """The simulator's run (its summary), stamped in the last session when the market is closed."""
    start = simulated_start(settings, args.duration, datetime.now(timezone.utc))
    stamped = "" if start is None else \
        f"; the market is closed: stamped in its last session, from {start:%Y-%m-%d %H:%M} UTC"
    say(f"producing simulated trades for {args.duration} s at {args.rate}/s "
        f"(with duplicates, out-of-order, late and malformed events){stamped}")
    subprocess.run(  # noqa: S603
        [sys.executable, "-m", "producer", "--source", "simulator", "--rate", str(args.rate),
         "--duration", str(args.duration), "--duplicate-ratio", "0.02", "--out-of-order-ratio", "0.02",
         "--late-ratio", "0.01", "--malformed-ratio", "0.005", "--malformed-target", "topic",
         *([] if start is None else ["--start-time", start.isoformat()]),
         "--summary-json", str(summary_path)], check=True, cwd=REPO)
    return json.loads(summary_path.read_text())


def wait_for_rows(stream: subprocess.Popen, stream_log: Path, sent: int) -> None:
    say("waiting for the stream to read every record")
    deadline = time.monotonic() + 600
    while True:
        rows = stream_batches(stream_log)
        if rows.get("bronze_trades", 0) >= sent and rows.get("silver_trades", 0) >= sent:
            return
        if stream.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"demo: the stream stopped or stalled at {rows} of {sent}; see {stream_log}")
        time.sleep(1)


def read_report(report_json: Path) -> dict:
    say("reading the tables back")
    result = subprocess.run([str(BIN / "spark-submit"), str(REPO / "spark_jobs" / "report.py"),  # noqa: S603
                             "--entity", "trades", "--json", str(report_json)], capture_output=True, text=True)
    if not report_json.exists():
        print(result.stderr[-3000:], file=sys.stderr)
        raise SystemExit("demo: the report failed")
    return json.loads(report_json.read_text())[0]


def print_summary(produced: dict, report: dict, settings, seconds: float) -> bool:
    """What landed where; True when the books balance."""
    kinds = produced["by_kind"]
    print(f"""
Demo summary ({seconds:.0f} s)
  events produced        {produced['records']:>9,}  ({', '.join(f'{k} {v:,}' for k, v in kinds.items())})
  delivered to Kafka     {produced['delivered']:>9,}  (DLQ: {produced['sent_dlq']:,}, failures: {produced['delivery_failures']:,})
  Bronze rows            {report['bronze_rows']:>9,}  (every record, as received)
  Silver rows            {report['silver_rows']:>9,}  (distinct valid events)
  duplicates removed     {report['duplicates_removed']:>9,}
  quarantined rows       {report['quarantined_rows']:>9,}""")
    for reason, count in report["quarantined_by_reason"].items():
        print(f"    {reason:<24}{count:>7,}")
    print(f"""  late rows              {report['late_rows']:>9,}  (behind the watermark: kept in Bronze, not in Silver)
  check: Bronze = Silver + quarantined + duplicates + late  ->  {'adds up' if report['balanced'] else 'DOES NOT ADD UP'}
  check: Bronze = delivered to Kafka                         ->  {'adds up' if report['bronze_rows'] == produced['delivered'] else 'DOES NOT ADD UP'}
Tables:""")
    for layer, uri in report["tables"].items():
        print(f"  {layer:<11} {uri}")
    print(f"  MinIO console: http://127.0.0.1:{settings.services.minio_console_port} "
          f"(credentials in {RUNTIME / 'credentials.env'})")
    return report["balanced"] and report["bronze_rows"] == produced["delivered"]


def build_gold(warehouse: Path, settings: Settings) -> bool:
    """The Silver change index, then dbt build on the local target with its vars from the settings; True when both
    succeed."""
    say("building Gold with dbt (local target: DuckDB reading the Silver Delta tables)")
    warehouse.parent.mkdir(parents=True, exist_ok=True)
    warehouse.unlink(missing_ok=True)  # the lake was emptied above: Gold starts from nothing too
    # What changed in Silver, for the incremental candles (the Gold DAG runs the same job before dbt).
    index = subprocess.run([str(BIN / "python"), "-m", "spark_jobs.silver_changes"], cwd=REPO,  # noqa: S603
                           capture_output=True, text=True)
    print(f"  {(index.stdout or index.stderr).strip()}")
    if index.returncode != 0:
        return False
    dbt_env = {**os.environ, "DBT_PROFILES_DIR": str(REPO / "dbt_project"), "DBT_DUCKDB_PATH": str(warehouse),
               "DBT_SEND_ANONYMOUS_USAGE_STATS": "false"}
    # The demo's stream runs trades only (start_stream): it writes no silver/quotes for Gold to read.
    variables = {**dbt_vars(settings), "lake_quotes_enabled": False}
    build = subprocess.run([str(BIN / "dbt"), "build", "--project-dir", str(REPO / "dbt_project"),  # noqa: S603
                            "--target", "local", "--vars", json.dumps(variables)], env=dbt_env, capture_output=True,
                           text=True)
    done = [line for line in build.stdout.splitlines() if "PASS=" in line]
    print(f"  dbt build: {done[-1].split('Done. ')[-1] if done else 'failed'}")
    if build.returncode != 0:
        print(build.stdout[-4000:], file=sys.stderr)
        return False
    return True


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=int, default=2000, help="events per second (default 2000)")
    parser.add_argument("--duration", type=int, default=60, help="seconds of producing (default 60)")
    args = parser.parse_args(argv)
    settings = load_settings()
    started = time.monotonic()
    logs = RUNTIME / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    stream_log = logs / "demo-stream.log"
    stream_log.write_text("")

    say(f"emptying topics and bucket {settings.lake.bucket} on the local Kafka and MinIO")
    empty_topics_and_bucket(settings)
    say(f"starting the streaming job (log: {stream_log})")
    stream = start_stream(stream_log)
    try:
        produced = produce(args, settings, logs / "demo-producer.json")
        wait_for_rows(stream, stream_log, produced["sent_trades_topic"])
    finally:
        stop_stream(stream)
    report = read_report(logs / "demo-report.json")
    balanced = print_summary(produced, report, settings, time.monotonic() - started)
    warehouse = REPO / settings.duckdb_path()
    if not build_gold(warehouse, settings):
        return 1
    print_kpis(warehouse)
    print(f"  Gold warehouse: {warehouse} (tables fct_candles_1m/1h/1d, fct_symbol_kpi, fct_volatility, ...)")
    print(f"  Live dashboard on it: make dashboard (http://127.0.0.1:{settings.dashboard.port})")
    return 0 if balanced else 1


def print_kpis(warehouse: Path) -> None:
    import duckdb

    with duckdb.connect(str(warehouse), read_only=True) as con:
        rows = con.sql("""
            select symbol, trading_date, last_price, price_change, pct_change, day_high, day_low, day_volume,
                   day_trade_count, day_vwap
            from fct_symbol_kpi order by symbol""").fetchall()

    def num(value, spec: str) -> str:
        return "n/a" if value is None else format(value, spec)

    print("Gold KPI per symbol (fct_symbol_kpi; change and % are vs the previous trading day's close, n/a without one):")
    print(f"  {'symbol':<7}{'date':<12}{'last':>10}{'change':>9}{'%':>8}{'high':>10}{'low':>10}"
          f"{'volume':>12}{'trades':>8}{'vwap':>10}")
    for symbol, day, last, change, pct, high, low, volume, trades, vwap in rows:
        print(f"  {symbol:<7}{str(day):<12}{last:>10.2f}{num(change, '.2f'):>9}{num(pct, '.2f'):>8}{high:>10.2f}"
              f"{low:>10.2f}{volume:>12,.0f}{trades:>8,}{num(vwap, '.2f'):>10}")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
