#!/usr/bin/env python3
"""Run the local stack as plain processes: a real Kafka broker (KRaft) and a real MinIO server.

  python scripts/services.py up        start both (idempotent), create the topics and the bucket
  python scripts/services.py down      stop both by pid (SIGTERM, then SIGKILL after a grace period)
  python scripts/services.py status    one line per service: running or not, healthy or not
  python scripts/services.py reset     stop both and delete their data (topics, lake, checkpoints)
  python scripts/services.py monitoring-up|monitoring-down|monitoring-status
                                       Prometheus (conf/prometheus: scrape config, alert rules) and its
                                       Pushgateway, from Debian's packages; `down` stops them too

Addresses come from conf/pipeline.yaml (kafka.bootstrap_servers, lake.s3_endpoint, services.*), credentials
from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY. Data, logs and pids live under the runtime folder
($STOCKLAKE_HOME, default .lake/ in the clone); the Kafka jars and the MinIO binary come from the cache
(`make setup`).
"""
from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from urllib.parse import urlparse

REPO = Path(__file__).resolve().parents[1]

from conf.settings import ConfigError, load_settings

RUNTIME = Path(os.environ.get("STOCKLAKE_HOME", REPO / ".lake")).resolve()
CACHE = Path(os.environ.get("STOCKLAKE_CACHE", Path.home() / ".cache" / "stocklake")).expanduser()
START_TIMEOUT_S = 90
STOP_GRACE_S = 30


class ServiceError(RuntimeError):
    pass


def log(message: str) -> None:
    print(f"services: {message}", flush=True)


def host_port(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host or "127.0.0.1", int(port)


def port_open(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def ready(url: str) -> bool:
    """A local service's health URL answers 200."""
    try:
        with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 (a local http:// address we built)
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def wait_until(check, what: str, proc_alive, log_file: Path, timeout: float = START_TIMEOUT_S) -> None:
    """Poll `check` until it passes; fail fast, with the log's tail, if the process dies meanwhile."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        if not proc_alive():
            tail = "".join(log_file.read_text(errors="replace").splitlines(keepends=True)[-30:])
            raise ServiceError(f"{what} exited during start-up; last lines of {log_file}:\n{tail}")
        time.sleep(0.5)
    raise ServiceError(f"{what} not healthy after {timeout:.0f}s; see {log_file}")


class Service:
    """One local server. `home`: its runtime folder (data, logs, pid), the clone's .lake by default; a second
    stack on other ports (settings) and another home runs beside the first (the fault tests' own)."""
    name: str

    def __init__(self, settings, home: Path = RUNTIME):
        self.settings = settings
        self.home = home
        self.pid_file = home / "run" / f"{self.name}.pid"
        self.log_file = home / "logs" / f"{self.name}.log"

    def pid(self) -> int | None:
        try:
            pid = int(self.pid_file.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        # A recycled pid belongs to some other program: only trust it if its command line is ours.
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return None
        return pid if self.marker().encode() in cmdline else None

    def marker(self) -> str:
        raise NotImplementedError

    def healthy(self) -> bool:
        raise NotImplementedError

    def address(self) -> str:
        raise NotImplementedError

    def command(self) -> tuple[list[str], dict[str, str]]:
        raise NotImplementedError

    def prepare(self) -> None:
        """One-time set-up before the first start (config files, storage format)."""

    def up(self) -> None:
        pid = self.pid()
        if pid:
            if not self.healthy():
                wait_until(self.healthy, self.name, lambda: self.pid() is not None, self.log_file)
            log(f"{self.name} already running (pid {pid}) at {self.address()}")
            return
        host, port = host_port(self.address())
        if port_open(host, port):
            raise ServiceError(f"{self.name}: port {port} on {host} is in use by another process; "
                               f"free it or change the address in conf/pipeline.yaml")
        self.prepare()
        cmd, env = self.command()
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        self.pid_file.parent.mkdir(parents=True, exist_ok=True)
        with self.log_file.open("ab") as out:
            # A session of its own: the service outlives this script and ignores the terminal's Ctrl-C.
            # Our own argv list (java or the MinIO binary from the cache), no shell.
            proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,  # noqa: S603
                                    env={**os.environ, **env}, start_new_session=True, cwd=self.home)
        self.pid_file.write_text(str(proc.pid))
        started = time.monotonic()
        wait_until(self.healthy, self.name, lambda: proc.poll() is None, self.log_file)
        log(f"{self.name} started (pid {proc.pid}) at {self.address()} in {time.monotonic() - started:.1f}s; "
            f"log {self.log_file}")

    def down(self) -> None:
        pid = self.pid()
        if not pid:
            log(f"{self.name} not running")
            self.pid_file.unlink(missing_ok=True)
            return
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_S
        while time.monotonic() < deadline and self.pid():
            time.sleep(0.2)
        if self.pid():
            log(f"{self.name} did not stop within {STOP_GRACE_S}s; killing it")
            os.kill(pid, signal.SIGKILL)
            while self.pid():
                time.sleep(0.1)
        self.pid_file.unlink(missing_ok=True)
        log(f"{self.name} stopped (pid {pid})")

    def status(self) -> bool:
        pid = self.pid()
        ok = bool(pid) and self.healthy()
        state = f"running (pid {pid}), {'healthy' if ok else 'NOT healthy'}" if pid else "stopped"
        log(f"{self.name}: {state} at {self.address()}")
        return ok


class Kafka(Service):
    name = "kafka"

    def __init__(self, settings, home: Path = RUNTIME):
        super().__init__(settings, home)
        self.dir = home / "kafka"
        self.config = self.dir / "server.properties"

    def address(self) -> str:
        return self.settings.kafka.bootstrap_servers.split(",")[0]

    def marker(self) -> str:
        return str(self.config)

    def classpath(self) -> str:
        listing = RUNTIME / "kafka-classpath.txt"  # written by `make setup` into the clone's runtime folder
        if not listing.is_file():
            raise ServiceError(f"Kafka jars not fetched ({listing} missing): run `make setup`")
        return ":".join(listing.read_text().split())

    def prepare(self) -> None:
        host, port = host_port(self.address())
        controller = self.settings.services.kafka_controller_port
        sasl = self.settings.services.kafka_sasl_port
        data = self.dir / "data"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.config.write_text(f"""# Generated by scripts/services.py from conf/pipeline.yaml; single-node KRaft (broker + controller).
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@{host}:{controller}
listeners=PLAINTEXT://{host}:{port},SASL_PLAINTEXT://{host}:{sasl},CONTROLLER://{host}:{controller}
advertised.listeners=PLAINTEXT://{host}:{port},SASL_PLAINTEXT://{host}:{sasl}
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT,CONTROLLER:PLAINTEXT
# SCRAM-SHA-512 on the SASL listener; users are stored in the cluster metadata (ensure_scram_user).
sasl.enabled.mechanisms=SCRAM-SHA-512
listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
inter.broker.listener.name=PLAINTEXT
log.dirs={data}
num.partitions={self.settings.kafka.partitions}
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=false
log.retention.ms={self.settings.kafka.retention_ms}
""")
        (self.dir / "log4j2.properties").write_text(
            "rootLogger.level=INFO\nrootLogger.appenderRef.stdout.ref=STDOUT\n"
            "appender.stdout.type=Console\nappender.stdout.name=STDOUT\n"
            "appender.stdout.layout.type=PatternLayout\nappender.stdout.layout.pattern=[%d] %p %m (%c)%n\n"
            "logger.kafka.name=kafka\nlogger.kafka.level=WARN\n"
            "logger.state.name=state.change.logger\nlogger.state.level=WARN\n"
        )
        if not (data / "meta.properties").is_file():
            cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
            result = subprocess.run(  # noqa: S603 - argv list, no shell; java from PATH as for the broker
                ["java", "-cp", self.classpath(), f"-Dlog4j2.configurationFile={self.dir / 'log4j2.properties'}",  # noqa: S607
                 # --cluster-id=ID, not "-t ID": an id starting with "-" (urlsafe base64 can) reads as an option.
                 "kafka.tools.StorageTool", "format", f"--cluster-id={cluster_id}", "-c", str(self.config)],
                capture_output=True, text=True)
            if result.returncode != 0:
                raise ServiceError(f"formatting Kafka storage failed:\n{result.stdout}{result.stderr}")
            log(f"kafka storage formatted in {data}")

    def command(self) -> tuple[list[str], dict[str, str]]:
        heap = self.settings.services.kafka_heap
        return ([
            "java", f"-Xmx{heap}", f"-Xms{heap}", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20",
            "-Djava.awt.headless=true", f"-Dlog4j2.configurationFile={self.dir / 'log4j2.properties'}",
            "-cp", self.classpath(), "kafka.Kafka", str(self.config),
        ], {})

    def healthy(self) -> bool:
        # A real metadata request, not just an open port.
        from confluent_kafka.admin import AdminClient

        if not port_open(*host_port(self.address())):
            return False  # not listening yet: skip librdkafka's connection-refused noise
        admin = AdminClient({"bootstrap.servers": self.address(), "socket.timeout.ms": 2000})
        try:
            return len(admin.list_topics(timeout=2).brokers) > 0
        except Exception:
            return False

    def create_topics(self) -> None:
        from confluent_kafka.admin import AdminClient, NewTopic

        kafka = self.settings.kafka
        admin = AdminClient({"bootstrap.servers": self.address()})
        existing = admin.list_topics(timeout=10).topics
        wanted = [kafka.trades_topic, kafka.quotes_topic, kafka.dlq_topic]
        new = [NewTopic(t, num_partitions=kafka.partitions, replication_factor=kafka.replication_factor,
                        config={"retention.ms": str(kafka.retention_ms)}) for t in wanted if t not in existing]
        for topic, future in (admin.create_topics(new) if new else {}).items():
            future.result()
            log(f"created topic {topic} ({kafka.partitions} partitions)")
        for topic in wanted:
            if topic in existing and len(existing[topic].partitions) != kafka.partitions:
                log(f"warning: topic {topic} has {len(existing[topic].partitions)} partitions, "
                    f"conf says {kafka.partitions} (left as is)")
        # Liveness heartbeats (conf/heartbeat.py): compacted, so the newest record of each sender stays.
        if kafka.heartbeats_topic not in existing:
            heartbeats = NewTopic(kafka.heartbeats_topic, num_partitions=1, replication_factor=kafka.replication_factor,
                                  config={"cleanup.policy": "compact"})
            admin.create_topics([heartbeats])[kafka.heartbeats_topic].result()
            log(f"created topic {kafka.heartbeats_topic} (1 partition, compacted)")


def ensure_scram_user(bootstrap_servers: str, user: str, password: str, mechanism: str = "SCRAM-SHA-512") -> None:
    """Create or update a SCRAM user on the broker (through a listener that needs no SASL, e.g. the local one)."""
    from confluent_kafka.admin import AdminClient, ScramCredentialInfo, ScramMechanism, UserScramCredentialUpsertion

    admin = AdminClient({"bootstrap.servers": bootstrap_servers})
    upsert = UserScramCredentialUpsertion(
        user, ScramCredentialInfo(getattr(ScramMechanism, mechanism.replace("-", "_")), 8192), password.encode())
    for future in admin.alter_user_scram_credentials([upsert]).values():
        future.result(timeout=30)


class MinIO(Service):
    name = "minio"

    def __init__(self, settings, home: Path = RUNTIME):
        super().__init__(settings, home)
        self.data = home / "minio" / "data"

    def address(self) -> str:
        return urlparse(self.settings.lake.s3_endpoint).netloc

    def marker(self) -> str:
        return str(self.data)

    def binary(self) -> Path:
        result = subprocess.run([str(REPO / "scripts" / "build_minio.sh")], capture_output=True, text=True)  # noqa: S603
        if result.returncode != 0:
            raise ServiceError(f"MinIO binary unavailable:\n{result.stderr}")
        return Path(result.stdout.strip())

    def prepare(self) -> None:
        self.data.mkdir(parents=True, exist_ok=True)

    def command(self) -> tuple[list[str], dict[str, str]]:
        user, password = credentials()
        host, _ = host_port(self.address())
        console = f"{host}:{self.settings.services.minio_console_port}"
        env = {"MINIO_ROOT_USER": user, "MINIO_ROOT_PASSWORD": password,
               "MINIO_BROWSER": "on", "MINIO_UPDATE": "off"}
        return ([str(self.binary()), "server", str(self.data), "--address", self.address(),
                 "--console-address", console, "--quiet"], env)

    def healthy(self) -> bool:
        # The local MinIO's own health URL, built from lake.s3_endpoint (http://127.0.0.1:... by default).
        return ready(f"{self.settings.lake.s3_endpoint}/minio/health/ready")

    def create_bucket(self) -> None:
        import boto3
        from botocore.exceptions import ClientError

        user, password = credentials()
        s3 = boto3.client("s3", endpoint_url=self.settings.lake.s3_endpoint, aws_access_key_id=user,
                          aws_secret_access_key=password, region_name=self.settings.lake.s3_region)
        bucket = self.settings.lake.bucket
        try:
            s3.head_bucket(Bucket=bucket)
        except ClientError:
            s3.create_bucket(Bucket=bucket)
            log(f"created bucket {bucket}")


MONITORING_HOST = "127.0.0.1"
PROMETHEUS_CONF = REPO / "conf" / "prometheus"


def installed(program: str) -> str:
    """The path of a program from Debian's prometheus / prometheus-pushgateway packages."""
    path = shutil.which(program)
    if path is None:
        raise ServiceError(f"{program} not found: install Debian's packages "
                           f"(apt-get install prometheus prometheus-pushgateway)")
    return path


def scrape_targets(settings) -> dict[str, list[str]]:
    """Prometheus's targets, per file of conf/prometheus/prometheus.yml's file_sd_configs, from the settings; a
    metrics port of 0 (off) is no target, so the job's StreamDown-style alerts see it absent."""
    def endpoint(section) -> list[str]:
        return [f"{section.metrics_host}:{section.metrics_port}"] if section.metrics_port else []

    return {"stream": endpoint(settings.stream), "producer": endpoint(settings.producer),
            "pushgateway": [pushgateway_address(settings)]}


def pushgateway_address(settings) -> str:
    return f"{MONITORING_HOST}:{settings.monitoring.pushgateway_port}"


class Prometheus(Service):
    """Debian's Prometheus on conf/prometheus (copied to its runtime folder with the targets written beside it)."""
    name = "prometheus"

    def __init__(self, settings, home: Path = RUNTIME):
        super().__init__(settings, home)
        self.dir = home / "prometheus"
        self.config = self.dir / "prometheus.yml"

    def address(self) -> str:
        return f"{MONITORING_HOST}:{self.settings.monitoring.prometheus_port}"

    def marker(self) -> str:
        return str(self.config)

    def render(self) -> None:
        """The repo's config and rules, and the targets from the settings; a file is replaced whole (rename), so a
        running Prometheus, which re-reads target files when they change, never reads half of one."""
        (self.dir / "targets").mkdir(parents=True, exist_ok=True)
        shutil.rmtree(self.dir / "rules", ignore_errors=True)
        shutil.copytree(PROMETHEUS_CONF / "rules", self.dir / "rules")
        files = {self.config: (PROMETHEUS_CONF / "prometheus.yml").read_text()}
        for job, targets in scrape_targets(self.settings).items():
            files[self.dir / "targets" / f"{job}.json"] = json.dumps([{"targets": targets}] if targets else [])
        for path, text in files.items():
            partial = path.with_suffix(".partial")
            partial.write_text(text)
            partial.replace(path)

    def up(self) -> None:
        self.render()
        pid = self.pid()
        if pid:
            os.kill(pid, signal.SIGHUP)  # a running Prometheus reloads its config and rules
        super().up()

    def command(self) -> tuple[list[str], dict[str, str]]:
        return ([installed("prometheus"), f"--config.file={self.config}", f"--storage.tsdb.path={self.dir / 'data'}",
                 f"--web.listen-address={self.address()}", "--storage.tsdb.retention.time=15d"], {})

    def healthy(self) -> bool:
        return ready(f"http://{self.address()}/-/ready")


class Pushgateway(Service):
    """Debian's Prometheus Pushgateway: where the watchdog and freshness jobs push their gauges."""
    name = "pushgateway"

    def __init__(self, settings, home: Path = RUNTIME):
        super().__init__(settings, home)
        self.store = home / "pushgateway" / "metrics.db"

    def address(self) -> str:
        return pushgateway_address(self.settings)

    def marker(self) -> str:
        return str(self.store)

    def prepare(self) -> None:
        self.store.parent.mkdir(parents=True, exist_ok=True)

    def command(self) -> tuple[list[str], dict[str, str]]:
        # Persisted: a restart keeps the last pushed values (WatchdogNotRunning reads their timestamp).
        return ([installed("prometheus-pushgateway"), f"--web.listen-address={self.address()}",
                 f"--persistence.file={self.store}", "--persistence.interval=1m"], {})

    def healthy(self) -> bool:
        return ready(f"http://{self.address()}/-/ready")


def credentials() -> tuple[str, str]:
    user, password = os.environ.get("AWS_ACCESS_KEY_ID"), os.environ.get("AWS_SECRET_ACCESS_KEY")
    if not user or not password:
        raise ServiceError("AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY must be set (the Makefile loads them from "
                           ".lake/credentials.env; by hand: `set -a; . .lake/credentials.env; set +a`)")
    if len(password) < 8:
        raise ServiceError("AWS_SECRET_ACCESS_KEY must be at least 8 characters (MinIO's minimum)")
    return user, password


COMMANDS = ("up", "down", "status", "reset", "monitoring-up", "monitoring-down", "monitoring-status")


def monitor(command: str, services: list[Service]) -> int:
    """monitoring-up / -down / -status: the Pushgateway and Prometheus, apart from the stack (they need
    Debian's packages)."""
    if command == "up":
        for service in services:
            service.up()
        return 0
    if command == "down":
        for service in reversed(services):
            service.down()
        return 0
    return 0 if all([service.status() for service in services]) else 1


def main(argv: list[str]) -> int:
    if len(argv) != 1 or argv[0] not in COMMANDS:
        print(__doc__, file=sys.stderr)
        return 2
    try:
        settings = load_settings()
        kafka, minio = Kafka(settings), MinIO(settings)
        monitoring = [Pushgateway(settings), Prometheus(settings)]
        if argv[0].startswith("monitoring-"):
            return monitor(argv[0].removeprefix("monitoring-"), monitoring)
        if argv[0] == "up":
            minio.up()
            kafka.up()
            minio.create_bucket()
            kafka.create_topics()
            user, password = os.environ.get("KAFKA_SASL_USERNAME"), os.environ.get("KAFKA_SASL_PASSWORD")
            if user and password:
                ensure_scram_user(kafka.address(), user, password)
                log(f"kafka SCRAM user {user} ready on the SASL listener "
                    f"{host_port(kafka.address())[0]}:{settings.services.kafka_sasl_port}")
        elif argv[0] == "down":
            kafka.down()
            minio.down()
            for service in monitoring:  # stopped with the stack when it runs; no line when it does not
                if service.pid():
                    service.down()
        elif argv[0] == "status":
            healthy = [service.status() for service in (kafka, minio)]
            return 0 if all(healthy) else 1
        elif argv[0] == "reset":
            kafka.down()
            minio.down()
            for folder in (kafka.dir, minio.data.parent):
                shutil.rmtree(folder, ignore_errors=True)
            log("data deleted (Kafka topics, lake bucket, checkpoints)")
    except (ServiceError, ConfigError) as exc:
        print(f"services: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
