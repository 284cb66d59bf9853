"""Helpers for tests against the real local stack: namespaces, the producer CLI, the streaming job."""
from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, Mapping, Sequence

from conf.settings import Settings, load_settings
from spark_jobs.lib.listener import LOGGER_NAME, read_progress
from spark_jobs.lib.logs import LOG_FORMAT

REPO = Path(__file__).resolve().parents[2]
SPARK_SUBMIT = str(Path(sys.executable).parent / "spark-submit")


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 300, interval: float = 0.5) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def s3_client(settings: Settings):
    """boto3 on the settings' object store, with the environment's credentials (the tests' one S3 client)."""
    import boto3

    return boto3.client("s3", endpoint_url=settings.lake.s3_endpoint, region_name=settings.lake.s3_region)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on at the moment."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def distinct_free_ports(count: int) -> list[int]:
    ports: list[int] = []
    while len(ports) < count:
        port = free_port()
        if port not in ports:
            ports.append(port)
    return ports


def route_bucket(spark, bucket: str, endpoint: str) -> None:
    """Point the SparkSession's S3A at another object store for one bucket (S3A's per-bucket settings), before
    anything reads it: a second stack's bucket read with the tests' one session."""
    spark.sparkContext._jsc.hadoopConfiguration().set(f"fs.s3a.bucket.{bucket}.endpoint", endpoint)


def create_namespace(settings: Settings) -> None:
    """Create the settings' topics (the heartbeat one compacted, as docker/create_topics.py makes it) and bucket on
    the running Kafka and MinIO."""
    from confluent_kafka.admin import AdminClient, NewTopic

    kafka = settings.kafka
    admin = AdminClient({"bootstrap.servers": kafka.bootstrap_servers})
    topics = [kafka.trades_topic, kafka.quotes_topic, kafka.dlq_topic]
    futures = admin.create_topics([NewTopic(t, num_partitions=kafka.partitions, replication_factor=1)
                                   for t in topics]
                                  + [NewTopic(kafka.heartbeats_topic, num_partitions=1, replication_factor=1,
                                              config={"cleanup.policy": "compact"})])
    for future in futures.values():
        future.result(timeout=30)
    s3_client(settings).create_bucket(Bucket=settings.lake.bucket)


def producer_args(count: int, seed: int, start_time: str, rate: float = 1000, **ratios: float) -> list[str]:
    args = ["--source", "simulator", "--rate", str(rate), "--count", str(count), "--no-pacing", "--seed", str(seed),
            "--start-time", start_time, "--malformed-target", "topic"]
    for name, value in ratios.items():
        args += [f"--{name.replace('_', '-')}", str(value)]
    return args


def run_producer(env: dict[str, str], args: list[str], tmp: Path) -> dict:
    summary = tmp / f"producer-{time.monotonic_ns()}.json"
    result = subprocess.run([sys.executable, "-m", "producer", *args, "--summary-json", str(summary)],
                            env=env, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(summary.read_text())


def expected_records(env: dict[str, str], args: list[str]):
    """The exact records the producer CLI sends for these arguments (the simulator is seeded)."""
    from producer.arguments import parse_args
    from producer.simulator_run import make_simulator

    settings = load_settings(env)
    parsed = parse_args(args, settings)
    return make_simulator(parsed, settings).take(parsed.count)


# The stream runs every entity by default; tests name the ones they check, so the 2-core machine runs only
# their queries.
TRADES_ONLY = ("trades",)


def stream_command(trigger: str, entities: Sequence[str], extra_args: Sequence[str] = (), master: str = "local[2]",
                   submit_args: Sequence[str] = ()) -> list[str]:
    """spark-submit of stream.py; `submit_args` are spark-submit's own options (e.g. --conf), `extra_args` the job's."""
    return [SPARK_SUBMIT, "--master", master, "--driver-memory", "2g", "--conf", "spark.ui.enabled=false",
            *submit_args, str(REPO / "spark_jobs" / "stream.py"), "--trigger", trigger,
            *[arg for entity in entities for arg in ("--entity", entity)], *extra_args]


def run_stream_available_now(env: dict[str, str], log: Path, timeout: float = 900,
                             entities: Sequence[str] = TRADES_ONLY, master: str = "local[2]",
                             submit_args: Sequence[str] = ()) -> None:
    with log.open("ab") as out:
        result = subprocess.run(stream_command("available-now", entities, master=master, submit_args=submit_args),
                                env=env, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, timeout=timeout)
    assert result.returncode == 0, log.read_text(errors="replace")[-5000:]


@contextmanager
def environment(env: Mapping[str, str]) -> Iterator[None]:
    """os.environ is exactly `env` inside the block (what an in-process job loads its settings from), and what it
    was before afterwards."""
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


@contextmanager
def job_log(log: Path, logger: str = LOGGER_NAME) -> Iterator[None]:
    """The job logger's records appended to `log` in the job's own format, as spark-submit's output would hold
    them (read_progress reads both)."""
    handler = logging.FileHandler(log)
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    target = logging.getLogger(logger)
    level = target.level
    target.addHandler(handler)
    target.setLevel(logging.INFO)
    try:
        yield
    finally:
        target.removeHandler(handler)
        target.setLevel(level)
        handler.close()


def run_stream_in_session(spark, env: dict[str, str], log: Path, entities: Sequence[str] = TRADES_ONLY,
                          extra_args: Sequence[str] = (), expect: int | None = 0) -> int:
    """stream.py --trigger available-now on the tests' warm SparkSession (stream.run(argv, spark)): the same
    queries, checkpoints and tables as spark-submit's, without a JVM start. For tests that are about what the
    stream writes, not about its process (signals, kills, JVM options and logs keep spark-submit). Asserts the
    exit code is `expect` (None: returns it unchecked)."""
    from spark_jobs import stream

    argv = ["--trigger", "available-now", *[arg for entity in entities for arg in ("--entity", entity)],
            *extra_args]
    with environment(env), job_log(log):
        code = stream.run(argv, spark=spark)
    assert expect is None or code == expect, log.read_text(errors="replace")[-5000:]
    return code


def start_stream(env: dict[str, str], log: Path, trigger: str = "processing-time",
                 entities: Sequence[str] = TRADES_ONLY, extra_args: Sequence[str] = ()) -> subprocess.Popen:
    out = log.open("ab")
    return subprocess.Popen(stream_command(trigger, entities, extra_args), env=env, cwd=REPO, stdout=out,
                            stderr=subprocess.STDOUT, start_new_session=True)


def kill_process_group(proc: subprocess.Popen) -> None:
    """SIGKILL the job and everything it started (the spark-submit JVM and the Python driver)."""
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)


def batch_records(log: Path, query: str) -> list[dict]:
    """The progress records of `query`'s finished micro-batches, in order, from the job's structured log lines."""
    return [record for record in read_progress(log.read_text(errors="replace"))
            if record["event"] == "batch" and record["query"] == query]


def batches_committed(log: Path, query: str) -> int:
    """Micro-batches of `query` that finished, from the job's structured progress lines."""
    return len(batch_records(log, query))
