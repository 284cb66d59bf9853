"""Kafka SASL/SCRAM end to end: the local broker's SASL_PLAINTEXT listener with a SCRAM-SHA-512 user.

The producer (librdkafka) and Spark's Kafka source (the Java client) both get the security settings from
conf/kafka_security.py; neither prints the password. The run checked is the secured one
(tests/integration/secured_stream.py): the producer and spark-submit of the stream, both through SCRAM.
"""
from __future__ import annotations

import secrets
import subprocess
import sys

import pytest

from scripts.services import ensure_scram_user
from spark_jobs.report import account
from spark_jobs.lib.transforms import TRADES
from tests.integration.secured_stream import sasl_env
from tests.integration.stack import REPO, producer_args

pytestmark = pytest.mark.integration


def test_producer_and_stream_authenticate_with_scram_and_never_print_the_password(spark, secured_stream):
    run = secured_stream
    password = run.env["KAFKA_SASL_PASSWORD"]
    assert run.env["STOCKLAKE_KAFKA_SECURITY_PROTOCOL"] == "SASL_PLAINTEXT"
    assert run.env["STOCKLAKE_KAFKA_BOOTSTRAP_SERVERS"].endswith(f":{run.settings.services.kafka_sasl_port}")
    assert (run.summary["delivered"], run.summary["delivery_failures"]) == (1000, 0)
    assert run.returncode == 0, run.log.read_text(errors="replace")[-5000:]

    # Every record the producer sent through SCRAM was read by the stream through SCRAM: the books are exact.
    books = account(spark, run.settings, TRADES)
    valid = {r.event_id for r in run.records if r.kind != "malformed"}
    quarantined = sum(1 for r in run.records if r.kind == "malformed")
    assert (books["bronze_rows"], books["silver_rows"], books["quarantined_rows"]) == (1000, len(valid), quarantined)
    assert (books["duplicates_removed"], books["late_rows"], books["balanced"]) == (
        1000 - len(valid) - quarantined, 0, True)

    outputs = [run.runner.captured["producer simulator stdout"], run.runner.captured["producer simulator stderr"],
               run.log.read_bytes()]
    for text in outputs:
        assert password.encode() not in text


def test_a_wrong_password_stops_the_producer_at_start_up_with_one_line(isolated):
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
