"""Shared fixtures: one local SparkSession for the run, and an isolated namespace on the real local stack."""
from __future__ import annotations

import os
import uuid

import pytest

from conf.settings import load_settings


@pytest.fixture(scope="session")
def spark():
    """A local SparkSession with Delta and S3A on the local MinIO, as the jobs build it."""
    from spark_jobs.session import build_spark

    session = build_spark("stocklake-tests", load_settings(), {
        "spark.master": "local[2]",
        "spark.ui.enabled": "false",
        "spark.sql.shuffle.partitions": "2",
    })
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


@pytest.fixture(scope="session")
def run_id() -> str:
    return uuid.uuid4().hex[:8]


def namespace_env(run_id: str, name: str) -> dict[str, str]:
    """Setting overrides that give a test its own topics, bucket and so its own tables and checkpoints."""
    prefix = f"test-{run_id}-{name}"
    return {
        "STOCKLAKE_KAFKA_TRADES_TOPIC": f"{prefix}.trades",
        "STOCKLAKE_KAFKA_QUOTES_TOPIC": f"{prefix}.quotes",
        "STOCKLAKE_KAFKA_DLQ_TOPIC": f"{prefix}.dlq",
        "STOCKLAKE_KAFKA_HEARTBEATS_TOPIC": f"{prefix}.heartbeats",
        "STOCKLAKE_LAKE_BUCKET": prefix[:63],
    }


@pytest.fixture
def isolated(run_id, request, monkeypatch):
    """Fresh topics and bucket on the running Kafka and MinIO for one test; settings point at them."""
    from tests.integration.stack import create_namespace

    env = namespace_env(run_id, request.node.name.replace("_", "-")[:20].strip("-").lower())
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    settings = load_settings()
    create_namespace(settings)
    return settings, {**os.environ, **env}
