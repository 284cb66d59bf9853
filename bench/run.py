"""`make bench`: the pipeline's speed, latency, compaction and memory measured on the real local stack, in one run.

    python -m bench.run [--events 2000000] [--steps 5000,10000,20000,40000] [--out .lake/bench] [--keep]

Writes results.json, results.md (the table it prints) and results.png to --out. Each phase uses its own topics and
bucket (bench-<run>-*), deleted at the end unless --keep:
  1. backlog      one simulated trading day of trades (bench/backlog.py; cached after the first run)
  2. producer     the backlog published through the producer's Kafka path, delivery confirmed; and the simulator
                  source end to end (generate + validate + publish) for comparison
  3. ceiling      a bare librdkafka consumer reading the backlog and discarding it (bench/kafka_ceiling.py)
  4. baseline     the per-message peer: a Python consumer writing each message to MinIO (bench/baseline.py)
  5. catch-up     the stream with --trigger available-now over the whole backlog -> Bronze + Silver, then exact
                  counts checked (a benchmark that lost or doubled an event is not a result); then what one record
                  costs in each of the stream's steps (bench/record_costs.py)
  6. compaction   Silver's files per hour before/after spark_jobs/compact.py, and a typical query before/after
  7. gold         dbt build on the local target over that day
  8. stepped      the stream live (default trigger), fed at rising rates; then the highest step it kept up with
                  held for --hold-seconds by a new stream on a backlog of its own: sustained = the highest rate held
  9. latency      the stream live at --latency-rate events/s from the simulator; latency = Silver commit time -
                  Kafka send time, per event, from the table's own log (bench/latency.py)
Peak resident memory of each process is sampled throughout (bench/memory.py).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

REPO = Path(__file__).resolve().parents[1]

from bench import backlog
from bench.baseline import per_message_to_object_store
from bench.breakdown import batch_breakdown, delta_commit_ms
from bench.kafka_ceiling import consume_all
from bench.latency import LiveTailPoller, commit_latencies_ms, percentiles
from bench.memory import PeakMemory
from bench.record_costs import first_records, record_costs
from bench.report import chart, markdown
from bench.sustained import SETTLE_SECONDS, hold_verdict
from conf.dbt_vars import dbt_vars
from conf.settings import Settings, load_settings
from scripts.dashboard_screenshot import free_port
from spark_jobs.lib.transforms import TRADES

PYTHON = sys.executable
SPARK_SUBMIT = str(Path(sys.executable).parent / "spark-submit")
DBT = str(Path(sys.executable).parent / "dbt")
# The stream gets the machine's cores and the driver memory a 2-core, 24 GiB box can spare beside broker and MinIO.
SPARK_ARGS = ["--master", "local[*]", "--driver-memory", "4g", "--conf", "spark.ui.enabled=false"]
# A day in the backlog's session; compaction treats its hours as closed "now" = the next morning.
BACKLOG_DAY = backlog.SESSION_START[:10]
COMPACT_NOW = "2026-01-06T06:00:00Z"
QUERY_SYMBOL = "AAPL"
QUERY_RUNS = 3
# Events sent to a live stream before measuring: its first data batches pay for JIT and the first Delta writes.
WARM_UP_EVENTS = 20_000
# A live step is kept up with when, one trigger interval after it, the stream is this many intervals behind at most.
# A held rate is kept pace with when its lag grows by at most one trigger interval of events (bench/sustained.py).
KEPT_UP_TRIGGERS = 2
# The rates held for --hold-seconds: the highest step kept up with, then the next one down if that hold fails.
HOLD_ATTEMPTS = 2
LAG_SAMPLE_SECONDS = 5


def say(message: str) -> None:
    print(f"bench {datetime.now().strftime('%H:%M:%S')} {message}", flush=True)


def namespace(run: str, name: str) -> dict[str, str]:
    prefix = f"bench-{run}-{name}"
    return {"STOCKLAKE_KAFKA_TRADES_TOPIC": f"{prefix}.trades", "STOCKLAKE_KAFKA_QUOTES_TOPIC": f"{prefix}.quotes",
            "STOCKLAKE_KAFKA_DLQ_TOPIC": f"{prefix}.dlq", "STOCKLAKE_LAKE_BUCKET": prefix[:63]}


def create_namespace(env: dict[str, str]) -> Settings:
    from scripts.services import Kafka, MinIO

    settings = load_settings(env)
    Kafka(settings).create_topics()
    MinIO(settings).create_bucket()
    return settings


def delete_namespace(settings: Settings) -> None:
    from confluent_kafka import KafkaError, KafkaException
    from confluent_kafka.admin import AdminClient

    kafka = settings.kafka
    admin = AdminClient({"bootstrap.servers": kafka.bootstrap_servers})
    for topic, future in admin.delete_topics([kafka.trades_topic, kafka.quotes_topic, kafka.dlq_topic]).items():
        try:
            future.result(timeout=60)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.UNKNOWN_TOPIC_OR_PART:  # already gone is fine; say anything else
                say(f"could not delete topic {topic}: {exc}")
    s3 = s3_client(settings)
    bucket = settings.lake.bucket
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
        if keys:
            s3.delete_objects(Bucket=bucket, Delete={"Objects": keys, "Quiet": True})
    s3.delete_bucket(Bucket=bucket)


def s3_client(settings: Settings):
    import boto3

    return boto3.client("s3", endpoint_url=settings.lake.s3_endpoint, region_name=settings.lake.s3_region)


def wait_for(condition: Callable[[], bool], what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.5)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")


def run_watched(command: list[str], env: dict[str, str], memory: PeakMemory, role: str, log: Path,
                timeout: float = 3600) -> None:
    """Run a command to its end, output appended to `log`, its memory watched as `role`; fail loudly on a
    non-zero exit."""
    with log.open("ab") as out:
        # noqa below: S603, an argv list (no shell) of the commands this script builds itself.
        proc = subprocess.Popen(command, env=env, cwd=REPO, stdout=out, stderr=subprocess.STDOUT)  # noqa: S603
        memory.watch(role, proc.pid)
        code = proc.wait(timeout=timeout)
    if code != 0:
        raise RuntimeError(f"{' '.join(command[:4])} ... exited {code}; log: {log}")


def run_json(command: list[str], env: dict[str, str], summary: Path, memory: PeakMemory, role: str,
             log: Path, timeout: float = 3600) -> dict:
    """run_watched for a command that writes a JSON summary to `summary`; returns the summary."""
    run_watched(command, env, memory, role, log, timeout)
    return json.loads(summary.read_text())


def scrape(port: int) -> dict[tuple[str, str], float]:
    """{(metric, query label): value} from the stream's Prometheus endpoint."""
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return {(sample.name, sample.labels.get("query", "")): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def rows_in(port: int) -> int:
    """Events both trades queries have taken in: the smaller of Bronze's and Silver's counts."""
    metrics = scrape(port)
    return int(min(metrics.get(("stocklake_stream_rows_in_total", q), 0) for q in ("bronze_trades", "silver_trades")))


class LiveStream:
    """The streaming job on the default trigger, with its metrics endpoint, for the live phases."""

    def __init__(self, env: dict[str, str], log: Path, memory: PeakMemory, role: str):
        self.port = free_port()
        # noqa below: S603, an argv list (no shell) of the venv's spark-submit and this repo's job.
        self.proc = subprocess.Popen([SPARK_SUBMIT, *SPARK_ARGS, str(REPO / "spark_jobs" / "stream.py"),  # noqa: S603
                                      "--entity", "trades", "--metrics-port", str(self.port)],
                                     env=env, cwd=REPO, stdout=log.open("ab"), stderr=subprocess.STDOUT,
                                     start_new_session=True)
        memory.watch(role, self.proc.pid)
        self.log = log

    def wait_ready(self) -> None:
        def ready() -> bool:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the stream exited {self.proc.returncode}; log: {self.log}")
            try:
                return all(scrape(self.port).get(("stocklake_stream_batches_total", q), 0) >= 1
                           for q in ("bronze_trades", "silver_trades"))
            except OSError:
                return False
        wait_for(ready, "the stream's first batches", 300)

    def wait_rows_in(self, count: int, what: str) -> None:
        """Wait until both trades queries have taken `count` events in."""
        wait_for(lambda: rows_in(self.port) >= count, what, 600)

    def stop(self) -> None:
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=180)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=60)


def spark_session(settings: Settings):
    from spark_jobs.lib.session import build_spark

    spark = build_spark("stocklake-bench", settings, {"spark.ui.enabled": "false", "spark.ui.showConsoleProgress": "false"})
    spark.sparkContext.setLogLevel("ERROR")
    return spark


def typical_query_seconds(spark, silver_uri: str) -> float:
    """Median time of one symbol's 1-minute candles for the backlog's day, read from Silver."""
    from pyspark.sql import functions as F

    def once() -> float:
        started = time.perf_counter()
        (spark.read.format("delta").load(silver_uri)
         .where((F.col("date") == BACKLOG_DAY) & (F.col("symbol") == QUERY_SYMBOL))
         .groupBy(F.date_trunc("minute", "trade_time").alias("minute"))
         .agg(F.min_by("price", "trade_time").alias("open"), F.max("price").alias("high"),
              F.min("price").alias("low"), F.max_by("price", "trade_time").alias("close"),
              F.sum("volume").alias("volume"))
         .collect())
        return time.perf_counter() - started

    once()  # warm-up: JIT and the Delta log cache, the same for before and after
    return round(statistics.median(once() for _ in range(QUERY_RUNS)), 3)


def machine() -> dict[str, Any]:
    import delta
    import pyspark

    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    mem_kib = int(next(line.split()[1] for line in Path("/proc/meminfo").read_text().splitlines()
                       if line.startswith("MemTotal")))
    # The broker's version: the pinned kafka-server coordinate (group:artifact:version sha256) in jars/kafka.lock.
    kafka_version = next((line.split()[0].rsplit(":", 1)[1] for line in
                          (REPO / "jars" / "kafka.lock").read_text().splitlines()
                          if line.startswith("org.apache.kafka:kafka-server:")), "unknown")
    return {"cores": os.cpu_count(), "memory_gib": round(mem_kib / 1024 ** 2, 1), "cpu": cpu,
            "os": platform.platform(terse=True), "python": platform.python_version(), "spark": pyspark.__version__,
            "kafka": kafka_version, "delta": getattr(delta, "__version__", "4.0.0")}


def measure(id_: str, name: str, value: float, unit: str, settings: str, target: float | None = None,
            higher_is_better: bool = True) -> dict[str, Any]:
    return {"id": id_, "name": name, "value": value, "unit": unit, "target": target,
            "higher_is_better": higher_is_better, "settings": settings}


@dataclass
class Bench:
    """One bench run: its options, its settings, the memory watcher, its logs and results, the namespaces it made."""
    args: argparse.Namespace
    run: str
    base: Settings
    memory: PeakMemory
    logs: Path
    results: dict[str, Any]
    namespaces: list[Settings] = field(default_factory=list)

    def new_namespace(self, name: str) -> tuple[dict[str, str], Settings]:
        """A phase's own topics and bucket, created now and deleted at the end (unless --keep)."""
        env = {**os.environ, **namespace(self.run, name)}
        settings = create_namespace(env)
        self.namespaces.append(settings)
        return env, settings

    def add(self, *args: Any, **kwargs: Any) -> None:
        self.results["measures"].append(measure(*args, **kwargs))

    def publish(self, env: dict[str, str], backlog_file: Path, topic: str, summary: str, log: str,
                *options: str) -> dict:
        """bench.backlog publish of the backlog's records to a topic (its summary)."""
        return run_json([PYTHON, "-m", "bench.backlog", "publish", "--file", str(backlog_file), "--topic", topic,
                         *options, "--summary-json", str(self.args.out / summary)],
                        env, self.args.out / summary, self.memory, "producer (publish path)", self.logs / log)


@dataclass(frozen=True)
class Backlog:
    file: Path
    events: int
    kinds: dict[str, int]
    distinct_valid: int
    description: str            # the day's size, symbols and partitions, for the measures' notes


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=2_000_000, help="backlog size (default 2,000,000)")
    parser.add_argument("--simulator-events", type=int, default=200_000)
    parser.add_argument("--baseline-messages", type=int, default=3_000)
    parser.add_argument("--steps", default="5000,10000,20000,40000",
                        help="live rates, events/s, comma-separated")
    parser.add_argument("--step-seconds", type=float, default=40)
    parser.add_argument("--hold-seconds", type=float, default=300,
                        help="how long the highest step kept up with is held to call it sustained (default 300; "
                             "0 = no hold)")
    parser.add_argument("--record-costs-events", type=int, default=500_000,
                        help="backlog records each step of a record is timed on (default 500,000)")
    parser.add_argument("--latency-rate", type=int, default=5_000)
    parser.add_argument("--latency-seconds", type=float, default=60)
    parser.add_argument("--out", type=Path, default=REPO / ".lake" / "bench")
    parser.add_argument("--keep", action="store_true", help="keep the bench topics and buckets")
    args = parser.parse_args(argv)
    args.out = args.out.resolve()  # dbt resolves a relative --target-path against its project, not here
    args.step_rates = [int(step) for step in args.steps.split(",") if step]
    args.latency_events = int(args.latency_rate * args.latency_seconds)
    problem = options_problem(args)
    if problem:
        parser.error(problem)
    return args


def options_problem(args: argparse.Namespace) -> str | None:
    if args.events <= 0 or not args.step_rates or min(args.step_rates) <= 0:
        return "--events and every --steps rate must be positive"
    if not 0 < args.record_costs_events <= args.events:
        return "--record-costs-events must be positive and at most --events"
    if args.hold_seconds < 0 or 0 < args.hold_seconds <= SETTLE_SECONDS:
        return f"--hold-seconds must be 0 (no hold) or more than the {SETTLE_SECONDS} s it is not judged"
    if args.latency_events <= 0 or WARM_UP_EVENTS + args.latency_events > args.events:
        return (f"--latency-rate x --latency-seconds must be positive and, with the {WARM_UP_EVENTS:,} "
                f"warm-up events, fit in the backlog (--events {args.events:,})")
    return None


def start(args: argparse.Namespace) -> Bench:
    """The run's folders (a previous run's logs removed), the services' memory watched, the results' frame."""
    from scripts.services import Kafka, MinIO

    logs = args.out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    for old_log in logs.glob("*.log"):  # the breakdown reads whole logs: never a previous run's lines
        old_log.unlink()
    started_at = datetime.now(timezone.utc)
    base = load_settings()
    memory = PeakMemory()
    for service, role in ((Kafka(base), "kafka broker"), (MinIO(base), "minio")):
        pid = service.pid()
        if pid is None:
            print(f"python -m bench.run: error: {service.name} is not running: start the services first "
                  f"(make services-up)", file=sys.stderr)
            raise SystemExit(2)
        memory.watch(role, pid)
    memory.start()
    stream = base.stream
    results: dict[str, Any] = {
        "started_at": started_at.isoformat(timespec="seconds"), "machine": machine(),
        "settings": {"events": args.events, "symbols": len(base.simulator.symbols),
                     "kafka_partitions": base.kafka.partitions, "trigger": stream.trigger_interval,
                     "max_offsets_per_trigger": stream.max_offsets_per_trigger,
                     "shuffle_partitions": stream.shuffle_partitions, "producer": producer_description(base)},
        "measures": [], "stepped_rate": [], "latency_ms": {}, "compaction": [], "query_seconds": {},
        "memory_mib": {}, "checks": {}, "breakdown": {}, "delta_commit_ms": {}, "holds": [], "record_costs": []}
    return Bench(args, started_at.strftime("%m%d%H%M%S"), base, memory, logs, results)


def producer_description(settings: Settings) -> str:
    producer = settings.producer
    return (f"{producer.compression} compression, linger {producer.linger_ms} ms, batch "
            f"{producer.batch_size_bytes // 1024} KiB, idempotent, acks=all")


def make_backlog(b: Bench) -> Backlog:
    events = b.args.events
    say(f"1/9 backlog: {events:,} simulated trades (cached in {backlog.cache_dir()})")
    backlog_file = backlog.generate(events, seed=7)
    kinds = json.loads(backlog_file.with_suffix(".json").read_text())["by_kind"]
    day = f"{events:,} events, {len(b.base.simulator.symbols)} symbols, {b.base.kafka.partitions} partitions"
    return Backlog(backlog_file, events, kinds, kinds.get("trade", 0) + kinds.get("out_of_order", 0), day)


def measure_producer(b: Bench, day: Backlog) -> tuple[dict[str, str], Settings]:
    """The publish path over the backlog into the day's namespace (which the next phases read), then the simulator
    source end to end."""
    say("2/9 producer: publish path, then the simulator source end to end")
    env_a, day_settings = b.new_namespace("day")
    published = b.publish(env_a, day.file, day_settings.kafka.trades_topic, "publish.json", "publish.log")
    if published["delivered"] != day.events:
        raise RuntimeError(f"published {published['delivered']:,} of {day.events:,}")
    producer = producer_description(b.base)
    b.add("producer_publish", "Producer, Kafka publish path", published["events_per_second"], "events/s",
          f"{day.description}; {producer}; delivery confirmed", target=200_000)
    env_s, _ = b.new_namespace("sim")
    simulated = run_json([PYTHON, "-m", "producer", "--source", "simulator", "--rate", "1000", "--count",
                          str(b.args.simulator_events), "--no-pacing", "--seed", "7",
                          "--summary-json", str(b.args.out / "simulator.json")],
                         env_s, b.args.out / "simulator.json", b.memory, "producer (simulator)",
                         b.logs / "simulator.log")
    b.add("producer_simulator", "Producer, simulator source end to end", simulated["events_per_second"],
          "events/s", f"{b.args.simulator_events:,} events generated, validated and published; {producer}")
    return env_a, day_settings


def measure_ceiling_and_baseline(b: Bench, day: Backlog, day_settings: Settings) -> dict:
    say("3/9 ceiling: bare librdkafka consumer over the backlog")
    kafka = day_settings.kafka
    ceiling = consume_all(kafka.bootstrap_servers, kafka.trades_topic, day.events)
    b.add("kafka_ceiling", "Kafka consume ceiling (librdkafka, discard)", ceiling["events_per_second"],
          "events/s", f"{day.description}; one consumer")
    messages = b.args.baseline_messages
    say(f"4/9 baseline: per-message consumer -> one JSON object per event in MinIO ({messages:,})")
    baseline = per_message_to_object_store(kafka.bootstrap_servers, kafka.trades_topic, s3_client(day_settings),
                                           day_settings.lake.bucket, "baseline", messages, 600)
    b.add("baseline", "Per-message baseline (Python consumer -> MinIO object per event)",
          baseline["events_per_second"], "events/s", f"first {messages:,} backlog events; commit per message")
    return baseline


def measure_catch_up(b: Bench, day: Backlog, env_a: dict[str, str], day_settings: Settings, baseline: dict):
    """The stream over the backlog with available-now: its rate, exact counts, the batch breakdown and commit
    times, and each step of a record timed on the first records. Returns the Spark session it opened."""
    say("5/9 catch-up: stream --trigger available-now over the backlog -> Bronze + Silver")
    catch_up_started = time.monotonic()
    run_watched([SPARK_SUBMIT, *SPARK_ARGS, str(REPO / "spark_jobs" / "stream.py"), "--trigger", "available-now",
                 "--entity", "trades"], env_a, b.memory, "spark driver (catch-up)", b.logs / "catch-up.log")
    catch_up_wall = time.monotonic() - catch_up_started
    spark = spark_session(day_settings)
    processing, batches = check_catch_up(b, spark, day, day_settings)
    record_breakdown(b.results, "catch-up", b.logs / "catch-up.log")
    for layer in ("bronze", "silver", "quarantine"):
        b.results["delta_commit_ms"][layer] = delta_commit_ms(s3_client(day_settings), day_settings.lake.bucket,
                                                              TRADES.table(layer))
    say(f"  Delta commit after the batch's files (median ms): "
        f"{ {layer: v['median_ms'] for layer, v in b.results['delta_commit_ms'].items()} }")
    stream = b.base.stream
    note = (f"{day.description}; available-now, maxOffsetsPerTrigger {stream.max_offsets_per_trigger:,} "
            f"({batches} batches/query), {stream.shuffle_partitions} shuffle partitions")
    b.add("stream_catch_up", "Stream catch-up, Kafka -> Bronze + Silver", round(day.events / processing, 1),
          "events/s", note, target=50_000)
    b.add("stream_catch_up_wall", "Stream catch-up incl. JVM start", round(day.events / catch_up_wall, 1),
          "events/s", note)
    b.add("vs_baseline", "Stream catch-up / per-message baseline",
          round(day.events / processing / baseline["events_per_second"], 1), "x", "same events, same machine",
          target=100)
    say(f"  where a record's time goes: each step on the first {b.args.record_costs_events:,} records, one session")
    first = first_records(spark, day_settings, b.args.record_costs_events)
    b.results["record_costs"] = record_costs(spark, first, day_settings)
    for row in b.results["record_costs"]:
        say(f"    {row['step']}: {row['records_per_second']:,} records/s ({row['core_us_per_record']} core-us each)")
    return spark


def check_catch_up(b: Bench, spark, day: Backlog, day_settings: Settings) -> tuple[float, int]:
    """(seconds of processing, batches per query) from the metrics table; RuntimeError unless every layer holds
    exactly what the backlog says it must."""
    def count(layer: str) -> int:
        return spark.read.format("delta").load(day_settings.lake_uri(TRADES.table(layer))).count()

    progress = (spark.read.format("delta").load(day_settings.lake_uri(day_settings.stream.metrics_table))
                .toPandas())
    first_start = progress["batch_timestamp"].min()
    last_end = max(row.batch_timestamp.timestamp() + row.batch_duration_ms / 1000
                   for row in progress.itertuples())
    malformed = day.kinds.get("malformed", 0)
    checks = {"bronze": count("bronze"), "silver": count("silver"), "quarantine": count("quarantine"),
              "expected_bronze": day.events, "expected_silver": day.distinct_valid,
              "expected_quarantine": malformed}
    checks["exact"] = (checks["bronze"], checks["silver"], checks["quarantine"]) == \
        (day.events, day.distinct_valid, malformed)
    b.results["checks"]["catch_up"] = checks
    if not checks["exact"]:
        raise RuntimeError(f"catch-up counts are not exact: {checks}")
    return last_end - first_start.timestamp(), int(len(progress) / 2)


def measure_compaction(b: Bench, spark, env_a: dict[str, str], day_settings: Settings) -> None:
    say("6/9 compaction: Silver before/after spark_jobs/compact.py, and a typical query")
    silver_uri = day_settings.lake_uri(TRADES.table("silver"))
    before_query = typical_query_seconds(spark, silver_uri)
    report_path = b.args.out / "compact.json"
    with (b.logs / "compact.log").open("ab") as out:
        # noqa below: S603, an argv list (no shell) of the venv's spark-submit and this repo's job.
        code = subprocess.run([SPARK_SUBMIT, *SPARK_ARGS, str(REPO / "spark_jobs" / "compact.py"),  # noqa: S603
                               "--entity", "trades", "--layer", "silver", "--now", COMPACT_NOW,
                               "--json", str(report_path)], env=env_a, cwd=REPO, stdout=out,
                              stderr=subprocess.STDOUT, timeout=1800).returncode
    if code != 0:
        raise RuntimeError(f"compaction failed; log: {b.logs / 'compact.log'}")
    after_query = typical_query_seconds(spark, silver_uri)
    b.results["compaction"] = compaction_rows(json.loads(report_path.read_text()))
    b.results["query_seconds"] = {"before": before_query, "after": after_query}
    query_note = f"{QUERY_SYMBOL}, {BACKLOG_DAY}, 1-minute candles from Silver; median of {QUERY_RUNS}"
    b.add("query_before", "Typical query before compaction", before_query, "s", query_note, higher_is_better=False)
    b.add("query_after", "Typical query after compaction", after_query, "s", query_note, higher_is_better=False)


def measure_gold(b: Bench, day: Backlog, env_a: dict[str, str], day_settings: Settings) -> None:
    say("7/9 gold: dbt build on the local target over the day")
    warehouse = b.args.out / "gold.duckdb"
    warehouse.unlink(missing_ok=True)
    dbt_env = {**env_a, "DBT_DUCKDB_PATH": str(warehouse), "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
               "DBT_PROFILES_DIR": str(REPO / "dbt_project")}
    gold_started = time.monotonic()
    # As `make gold`: index what changed in Silver, then build (the first build: everything changed).
    run_watched([PYTHON, "-m", "spark_jobs.silver_changes"], dbt_env, b.memory, "silver change index",
                b.logs / "dbt.log")
    # The catch-up stream ran trades only: there is no silver/quotes for Gold to read.
    variables = {**dbt_vars(day_settings), "lake_quotes_enabled": False}
    run_watched([DBT, "build", "--project-dir", str(REPO / "dbt_project"), "--target", "local",
                 "--target-path", str(b.args.out / "dbt-target"), "--vars", json.dumps(variables)], dbt_env, b.memory,
                "dbt (gold build)", b.logs / "dbt.log")
    b.add("gold_build", "Gold build (change index + dbt build, DuckDB)", round(time.monotonic() - gold_started, 1),
          "s", f"{day.distinct_valid:,} Silver trades of one day; models and tests", higher_is_better=False)


def measure_stepped(b: Bench, day: Backlog) -> list[int]:
    """The live stream fed at each step rate in turn; the rates it kept up with."""
    steps = b.args.step_rates
    say(f"8/9 stepped: the live stream fed at {', '.join(f'{s:,}' for s in steps)} events/s")
    env_b, live_settings = b.new_namespace("live")
    topic = live_settings.kafka.trades_topic
    stream = LiveStream(env_b, b.logs / "stepped.log", b.memory, "spark driver (live)")
    passed: list[int] = []
    try:
        stream.wait_ready()
        # Warm-up: the first batches with data pay for JIT compilation and the first Delta/S3A writes.
        offset = min(WARM_UP_EVENTS, day.events // 10)
        b.publish(env_b, day.file, topic, "warm-up.json", "stepped-publish.log", "--count", str(offset))
        stream.wait_rows_in(offset, "the stream to take the warm-up events")
        for step, rate in enumerate(steps):
            count = int(rate * b.args.step_seconds)
            if offset + count > day.events:
                say(f"  step {rate:,}/s skipped: the backlog has no more events")
                break
            kept_up = one_step(b, stream, env_b, day, topic, step, rate, offset, count)
            offset += count
            if not kept_up:
                break
            passed.append(rate)
            # Drain before the next step, so each step starts level.
            stream.wait_rows_in(offset, "the stream to drain")
    finally:
        stream.stop()
    record_breakdown(b.results, "stepped", b.logs / "stepped.log")
    b.add("stream_stepped", f"Stream live, highest {b.args.step_seconds:.0f} s step kept up with",
          max(passed, default=0), "events/s",
          f"default trigger ({b.base.stream.trigger_interval}); kept up = behind by at most "
          f"{KEPT_UP_TRIGGERS} trigger intervals of events one interval after the step")
    return passed


def one_step(b: Bench, stream: LiveStream, env: dict[str, str], day: Backlog, topic: str, step: int, rate: int,
             offset: int, count: int) -> bool:
    """`count` events from `offset` at `rate` events/s; whether the stream kept up with them."""
    interval = stream_interval_seconds(b.base)
    taken_before = rows_in(stream.port)
    step_started = time.monotonic()
    sent = b.publish(env, day.file, topic, f"step{step}.json", "stepped-publish.log", "--first", str(offset),
                     "--count", str(count), "--rate", str(rate))
    # Give the stream one more trigger interval to take what arrived during the step's last moments.
    time.sleep(interval)
    elapsed = time.monotonic() - step_started
    taken = rows_in(stream.port)
    lag = offset + count - taken
    row = {"offered_per_second": round(sent["delivered"] / sent["seconds"], 1),
           "processed_per_second": round((taken - taken_before) / elapsed, 1), "lag_end": lag}
    b.results["stepped_rate"].append(row)
    say(f"  step {rate:,}/s: offered {row['offered_per_second']:,.0f}/s, processed "
        f"{row['processed_per_second']:,.0f}/s, behind by {lag:,} events")
    return lag <= rate * KEPT_UP_TRIGGERS * interval


def measure_holds(b: Bench, passed: list[int]) -> None:
    """The highest rates kept up with, each held --hold-seconds by a new stream, until one keeps pace."""
    args, sustained = b.args, 0
    for rate in sorted(passed, reverse=True)[:HOLD_ATTEMPTS] if args.hold_seconds else []:
        say(f"  hold: {rate:,} events/s for {args.hold_seconds:.0f} s, a new stream on a backlog of its own")
        env_h, hold_settings = b.new_namespace(f"hold{rate}")
        held = hold(rate, args.hold_seconds, env_h, hold_settings, args.out, b.memory, b.logs,
                    stream_interval_seconds(b.base))
        b.results["holds"].append(held)
        say(f"  hold {rate:,}/s: processed {held['processed_per_second']:,.0f}/s, lag over the first judged / "
            f"last minute {held['first_minute_lag_events']:,} / {held['last_minute_lag_events']:,} events, at "
            f"most {held['max_lag_events']:,} ({held['max_lag_seconds']} s): "
            f"{'kept pace' if held['kept_pace'] else 'fell behind'}")
        if held["kept_pace"]:
            sustained = rate
            break
    if b.results["holds"]:
        record_breakdown(b.results, "hold", b.logs / "hold.log")
    if args.hold_seconds:
        b.add("stream_sustained", f"Stream live, highest rate held {args.hold_seconds:.0f} s", sustained,
              "events/s", f"default trigger ({b.base.stream.trigger_interval}); kept pace = after the first minute "
              f"the lag grew by at most one trigger interval of events (lag sampled every {LAG_SAMPLE_SECONDS} s)",
              target=20_000)


def measure_latency(b: Bench, day: Backlog) -> None:
    args = b.args
    say(f"9/9 latency: the live stream at {args.latency_rate:,} events/s for {args.latency_seconds:.0f} s")
    env_c, latency_settings = b.new_namespace("latency")
    topic = latency_settings.kafka.trades_topic
    stream = LiveStream(env_c, b.logs / "latency.log", b.memory, "spark driver (live)")
    try:
        stream.wait_ready()
        # The backlog's records, published at a paced rate: the publish path costs the cores little, so the
        # figure is the pipeline's, not a Python simulator's.
        warm_up = b.publish(env_c, day.file, topic, "latency-warm-up.json", "latency-publish.log",
                            "--count", str(WARM_UP_EVENTS))
        stream.wait_rows_in(warm_up["delivered"], "the stream to take the warm-up events")
        # The dashboard's live tail, as if Gold had been built through the warm-up, at its refresh interval.
        poller = live_tail_poller(latency_settings, b.base.dashboard.refresh_seconds)
        poller.start()
        warm_up_ms = int(time.time() * 1000) + 5_000  # and the run's first seconds settle the rate
        produced = b.publish(env_c, day.file, topic, "latency-publish.json", "latency-publish.log",
                             "--first", str(WARM_UP_EVENTS), "--count", str(args.latency_events),
                             "--rate", str(args.latency_rate))
        stream.wait_rows_in(warm_up["delivered"] + produced["delivered"], "Silver to take every event")
        poller.stop()
    finally:
        stream.stop()
    record_breakdown(b.results, "latency", b.logs / "latency.log")
    record_latencies(b, latency_settings, warm_up_ms, poller)


def record_latencies(b: Bench, settings: Settings, since_ms: int, poller: LiveTailPoller) -> None:
    """Kafka send -> Silver commit, and -> read by the dashboard's live tail: percentiles as measures."""
    args, interval = b.args, b.base.dashboard.refresh_seconds
    s3, bucket, silver = s3_client(settings), settings.lake.bucket, TRADES.table("silver")
    notes = {"latency": (f"{args.latency_rate:,} events/s of the backlog, paced, for {args.latency_seconds:.0f} s "
                         f"(after a warm-up; first 5 s excluded); default trigger "
                         f"({b.base.stream.trigger_interval}); Kafka send -> Silver commit"),
             "dashboard_latency": (f"as above; Kafka send -> read by the dashboard's live tail "
                                   f"(dashboard/live_tail.py) at its refresh every {interval} s")}
    for kind, name, target, visible in (("latency", "Latency to Silver", 5000, None),
                                        ("dashboard_latency", "Trade -> dashboard", 15_000, poller.visible_ms)):
        seen = {} if visible is None else {"visible_ms": visible}
        latencies = commit_latencies_ms(s3, bucket, silver, since_ms=since_ms, **seen)
        b.results[f"{kind}_ms"] = {**percentiles(latencies), "count": len(latencies)}
        for p in ("p50", "p95", "p99"):
            b.add(f"{kind}_{p}", f"{name}, {p}", b.results[f"{kind}_ms"][p], "ms", notes[kind],
                  target=target if p == "p95" else None, higher_is_better=False)


def clean_up(b: Bench) -> None:
    """Stop watching memory and delete the run's namespaces (unless --keep), whatever happened."""
    b.results["memory_mib"] = b.memory.stop()
    if not b.args.keep:
        for settings in b.namespaces:
            try:
                delete_namespace(settings)
            except Exception as exc:  # cleanup must not hide the run's own error
                say(f"could not delete bench namespace {settings.lake.bucket}: {exc}")


def write_results(b: Bench, started: float) -> str:
    """results.{json,md,png} in --out; the table."""
    b.results["duration_seconds"] = round(time.monotonic() - started, 1)
    out = b.args.out
    (out / "results.json").write_text(json.dumps(b.results, indent=2))
    table = markdown(b.results)
    (out / "results.md").write_text(table)
    chart(b.results, out / "results.png")
    return table


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    b = start(args)
    started = time.monotonic()
    try:
        day = make_backlog(b)
        env_a, day_settings = measure_producer(b, day)
        baseline = measure_ceiling_and_baseline(b, day, day_settings)
        spark = measure_catch_up(b, day, env_a, day_settings, baseline)
        measure_compaction(b, spark, env_a, day_settings)
        spark.stop()
        measure_gold(b, day, env_a, day_settings)
        measure_holds(b, measure_stepped(b, day))
        measure_latency(b, day)
    finally:
        clean_up(b)
    print(write_results(b, started))
    say(f"done in {b.results['duration_seconds'] / 60:.1f} min: {args.out}/results.{{json,md,png}}")
    return 0


def hold(rate: int, seconds: float, env: dict[str, str], settings: Settings, out: Path, memory: PeakMemory,
         logs: Path, interval: float) -> dict[str, Any]:
    """A new live stream, warmed up, then fed `rate` events/s for `seconds` from a backlog of its own (the main
    backlog is too short for minutes at 20,000/s, and this stream's watermark must start at the backlog's start),
    its lag sampled all along; bench/sustained.py judges it."""
    count = int(rate * seconds)
    hold_file = backlog.generate(WARM_UP_EVENTS + count, seed=7)
    topic = settings.kafka.trades_topic
    publish = [PYTHON, "-m", "bench.backlog", "publish", "--file", str(hold_file), "--topic", topic]
    stream = LiveStream(env, logs / "hold.log", memory, "spark driver (live)")
    try:
        stream.wait_ready()
        run_json([*publish, "--count", str(WARM_UP_EVENTS), "--summary-json", str(out / "hold-warm-up.json")],
                 env, out / "hold-warm-up.json", memory, "producer (publish path)", logs / "hold-publish.log")
        stream.wait_rows_in(WARM_UP_EVENTS, "the stream to take the warm-up events")
        taken_before = rows_in(stream.port)
        summary = out / f"hold-{rate}.json"
        with (logs / "hold-publish.log").open("ab") as log:
            # noqa below: S603, an argv list (no shell) of this repo's publisher.
            publisher = subprocess.Popen([*publish, "--first", str(WARM_UP_EVENTS), "--count", str(count),  # noqa: S603
                                          "--rate", str(rate), "--summary-json", str(summary)],
                                         env=env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
        memory.watch("producer (publish path)", publisher.pid)
        samples = sample_lag(stream, settings, publisher)
        elapsed = samples[-1][0] if samples else seconds
        taken = rows_in(stream.port) - taken_before
    finally:
        stream.stop()
    if publisher.returncode != 0:
        raise RuntimeError(f"the hold's publisher exited {publisher.returncode}; log: {logs / 'hold-publish.log'}")
    sent = json.loads(summary.read_text())
    verdict = hold_verdict(samples, rate, int(rate * interval))
    return {"rate": rate, "seconds": seconds, "offered_per_second": round(sent["delivered"] / sent["seconds"], 1),
            "processed_per_second": round(taken / elapsed, 1), **verdict, "lag_samples": samples}


def sample_lag(stream: LiveStream, settings: Settings, publisher: subprocess.Popen) -> list[tuple[float, int]]:
    """(seconds since the start, records in the topic - records both queries took in), every LAG_SAMPLE_SECONDS
    while the publisher runs and once as it ends."""
    from confluent_kafka.admin import AdminClient

    from spark_jobs.lib.checkpoints import topic_offsets

    admin = AdminClient({"bootstrap.servers": settings.kafka.bootstrap_servers})
    started = time.monotonic()
    samples = []
    while True:
        try:
            publisher.wait(timeout=LAG_SAMPLE_SECONDS)
            done = True
        except subprocess.TimeoutExpired:
            done = False
        in_topic = sum(topic_offsets(admin, settings.kafka.trades_topic)[1].values())
        samples.append((round(time.monotonic() - started, 1), in_topic - rows_in(stream.port)))
        if done:
            return samples


def live_tail_poller(settings: Settings, interval: float) -> LiveTailPoller:
    """A reader of the namespace's Silver as the dashboard reads it, from the current minute on."""
    import pandas as pd

    from dashboard.live_tail import LiveTail
    from conf.lake import delta_rs_uri
    from spark_jobs.lib.delta import credentialed_storage_options

    tail = LiveTail(delta_rs_uri(settings, TRADES.table("silver")), credentialed_storage_options(settings))
    return LiveTailPoller(tail, pd.Timestamp.now(tz="UTC").tz_localize(None).floor("min"), interval)


def record_breakdown(results: dict[str, Any], phase: str, log: Path) -> None:
    """The phase's per-query batch breakdown (bench/breakdown.py) into results, and said."""
    breakdown = batch_breakdown(log.read_text(errors="replace"))
    results["breakdown"][phase] = breakdown
    for query, row in breakdown.items():
        say(f"  {phase} {query}: {row['batches']} data batches of {row['rows_per_batch']} rows, mean ms: "
            + ", ".join(f"{key.removesuffix('_ms')} {value}" for key, value in row.items()
                        if key.endswith("_ms") and value is not None))


def stream_interval_seconds(settings: Settings) -> float:
    from conf.settings import interval_seconds

    return interval_seconds(settings.stream.trigger_interval)


def compaction_rows(report: dict) -> list[dict[str, Any]]:
    """Per compacted hour of Silver: files and bytes before and after, from compact.py's JSON report."""
    rows = []
    for table in report["tables"]:
        for partition in table.get("partitions", []):
            if "after" not in partition:
                continue
            rows.append({"partition": f"date={partition['date']}/hour={partition['hour']}",
                         "files_before": partition["before"]["files"], "files_after": partition["after"]["files"],
                         "bytes_before": partition["before"]["bytes"], "bytes_after": partition["after"]["bytes"]})
    return rows


if __name__ == "__main__":
    sys.exit(main())
