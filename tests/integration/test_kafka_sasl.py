"""Kafka SASL/SCRAM end to end: the local broker's SASL_PLAINTEXT listener with a SCRAM-SHA-512 user.

The producer (librdkafka) and Spark's Kafka source (the Java client) both get the security settings from
conf/kafka_security.py; neither prints the password.
"""
from __future__ import annotations

import json
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

from scripts.services import ensure_scram_user
from spark_jobs.report import account
from spark_jobs.transforms import TRADES
from tests.integration.stack import REPO, expected_records, producer_args, run_stream_available_now

pytestmark = pytest.mark.integration


def sasl_env(settings, env: dict[str, str], user: str, password: str) -> dict[str, str]:
    host = settings.kafka.bootstrap_servers.split(":")[0]
    return {**env, "STOCKLAKE_KAFKA_BOOTSTRAP_SERVERS": f"{host}:{settings.services.kafka_sasl_port}",
            "STOCKLAKE_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "STOCKLAKE_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
            "KAFKA_SASL_USERNAME": user, "KAFKA_SASL_PASSWORD": password}


def run_producer_cli(env: dict[str, str], args: list[str], tmp: Path) -> tuple[subprocess.CompletedProcess, dict]:
    summary = tmp / "producer-summary.json"
    result = subprocess.run([sys.executable, "-m", "producer", *args, "--summary-json", str(summary)], env=env,
                            cwd=REPO, capture_output=True, text=True, timeout=120)
    return result, json.loads(summary.read_text())


def test_producer_and_stream_authenticate_with_scram_and_never_print_the_password(spark, isolated, tmp_path):
    settings, env = isolated
    user, password = f"lake-{secrets.token_hex(4)}", secrets.token_urlsafe(24)
    ensure_scram_user(settings.kafka.bootstrap_servers, user, password)
    env = sasl_env(settings, env, user, password)

    args = producer_args(600, seed=31, start_time="2026-01-05T14:30:00", duplicate_ratio=0.05)
    produced, summary = run_producer_cli(env, args, tmp_path)
    assert produced.returncode == 0, produced.stderr[-3000:]
    assert (summary["delivered"], summary["delivery_failures"]) == (600, 0)

    log = tmp_path / "stream.log"
    run_stream_available_now(env, log)
    records = expected_records(env, args)
    books = account(spark, settings, TRADES)
    distinct = len({r.event_id for r in records})
    assert (books["bronze_rows"], books["silver_rows"], books["duplicates_removed"]) == (600, distinct, 600 - distinct)
    assert (books["quarantined_rows"], books["late_rows"], books["balanced"]) == (0, 0, True)

    for text in (produced.stdout, produced.stderr, log.read_text(errors="replace")):
        assert password not in text


def test_a_wrong_password_stops_the_producer_at_start_up_with_one_line(isolated, tmp_path):
    settings, env = isolated
    user = f"lake-{secrets.token_hex(4)}"
    ensure_scram_user(settings.kafka.bootstrap_servers, user, secrets.token_urlsafe(24))
    wrong = secrets.token_urlsafe(24)
    args = producer_args(50, seed=32, start_time="2026-01-05T14:30:00")
    produced = subprocess.run([sys.executable, "-m", "producer", *args], env=sasl_env(settings, env, user, wrong),
                              cwd=REPO, capture_output=True, text=True, timeout=120)
    assert produced.returncode == 2
    lines = produced.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        "python -m producer: error: configuration: kafka.security_protocol: the brokers at ")
    assert "Authentication failed" in lines[0]
    assert wrong not in produced.stdout + produced.stderr
