"""spark_jobs/lib/session.py's configuration: the lake's keys from the environment only, and only required where
the lake is used (the unit tests' shared session runs without them)."""
from __future__ import annotations

import pytest

from conf.settings import ConfigError, load_settings
from spark_jobs.lib.session import spark_conf

KEYS = ("spark.hadoop.fs.s3a.access.key", "spark.hadoop.fs.s3a.secret.key")


@pytest.fixture
def no_credentials(monkeypatch):
    monkeypatch.delenv("AWS_ACCESS_KEY_ID", raising=False)
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY", raising=False)


def test_a_job_without_credentials_stops_with_one_line(no_credentials):
    with pytest.raises(ConfigError, match="^AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY must be set"):
        spark_conf(load_settings({}))


def test_a_session_off_the_lake_needs_no_credentials(no_credentials):
    conf = spark_conf(load_settings({}), require_credentials=False)
    assert not set(KEYS) & set(conf)
    assert conf["spark.sql.extensions"] == "io.delta.sql.DeltaSparkSessionExtension"
    assert conf["spark.sql.session.timeZone"] == "UTC"


def test_the_keys_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "lake-test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-a-real-secret")  # pragma: allowlist secret
    for required in (True, False):
        conf = spark_conf(load_settings({}), require_credentials=required)
        assert [conf[key] for key in KEYS] == ["lake-test", "not-a-real-secret"]
