"""Start-up checks: reach the broker and the object store, with the credentials, before any real work starts.

Every entry point calls these after loading its settings and before it builds a SparkSession or sends a record,
so a bad bootstrap server, endpoint, bucket, topic or missing credential fails in seconds with one line naming
the setting, instead of after the clients' multi-minute retries with a stack trace:

    check_credentials()                  AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY are set (values never shown)
    check_broker(settings, topics)       the brokers answer a metadata request, the topics exist
    check_object_store(settings)         the S3 endpoint answers and the credentials can see lake.bucket

Each raises PreflightError (a ConfigError, so the entry points' existing `configuration error` handling prints
it) whose message starts with the setting or variable to fix. The Kafka check uses the same client
configuration as the producer (conf.kafka_security.client_config: bootstrap servers plus security), so a SASL
or TLS setup is checked as the pipeline will use it. No message ever holds a credential's value.
"""
from __future__ import annotations

import logging
import os
import re
import time
from typing import Any, Iterable, Mapping

from conf.errors import first_line
from conf.settings import ConfigError, Settings

ACCESS_KEY_ENV = "AWS_ACCESS_KEY_ID"
SECRET_KEY_ENV = "AWS_SECRET_ACCESS_KEY"  # noqa: S105 - the variable's name  # pragma: allowlist secret
SESSION_TOKEN_ENV = "AWS_SESSION_TOKEN"  # noqa: S105 - the variable's name
# Longest a check waits for an answer. A refused connection or an unknown host fails sooner (FAST_FAIL_SECONDS).
KAFKA_TIMEOUT_SECONDS = 10.0
S3_CONNECT_TIMEOUT_SECONDS = 5.0
S3_READ_TIMEOUT_SECONDS = 10.0
# librdkafka reports "all brokers down" or "failed to resolve" at once; give it this long to connect anyway
# (a second bootstrap server may answer) before calling the broker unreachable.
FAST_FAIL_SECONDS = 2.0
NEW_TOPIC_GRACE_SECONDS = 5.0
_AFTER = re.compile(r"\s*\(after \d+ms in state \w+\)")


class PreflightError(ConfigError):
    """A setting that points at something unreachable or missing; the message starts with the setting."""


def check_credentials(environ: Mapping[str, str] | None = None) -> tuple[str, str]:
    """The S3 access key and secret from the environment; PreflightError naming what is missing."""
    env = os.environ if environ is None else environ
    access_key, secret_key = env.get(ACCESS_KEY_ENV, "").strip(), env.get(SECRET_KEY_ENV, "").strip()
    missing = [name for name, value in ((ACCESS_KEY_ENV, access_key), (SECRET_KEY_ENV, secret_key)) if not value]
    if missing:
        raise PreflightError(f"{' and '.join(missing)}: not set; S3 credentials come only from the environment "
                             f"(for the local stack: `source .lake/env.sh`)")
    return access_key, secret_key


# ---------------------------------------------------------------------------------------------------------- Kafka

def _kafka_errors() -> tuple[dict[str, Any], list[Any]]:
    """Client settings that keep librdkafka quiet (its log lines would land on stderr) and collect its errors."""
    errors: list[Any] = []
    quiet = logging.getLogger("stocklake.preflight.librdkafka")
    quiet.propagate = False
    if not quiet.handlers:
        quiet.addHandler(logging.NullHandler())
    return {"error_cb": errors.append, "logger": quiet}, errors


def _describe(errors: list[Any]) -> str:
    """The most telling librdkafka error text: a connection or resolve failure, without its timing suffix."""
    from confluent_kafka import KafkaError

    texts = [_AFTER.sub("", e.str()) for e in errors if e.code() != KafkaError._ALL_BROKERS_DOWN]
    return texts[-1] if texts else (errors[-1].str() if errors else "no answer")


def check_broker(settings: Settings, topics: Iterable[str] = (), timeout: float = KAFKA_TIMEOUT_SECONDS,
                 environ: Mapping[str, str] | None = None) -> None:
    """The brokers of kafka.bootstrap_servers answer (with kafka.security_*), and every topic in `topics` exists.

    `topics` are setting names of the kafka section (e.g. "trades_topic"), so a missing topic is reported by
    its setting.
    """
    from confluent_kafka import KafkaError, KafkaException
    from confluent_kafka.admin import AdminClient

    from conf.kafka_security import client_config

    kafka = settings.kafka
    servers = kafka.bootstrap_servers
    quiet, errors = _kafka_errors()
    # client_config raises a ConfigError naming kafka.security_protocol when SASL credentials are missing.
    config = client_config(settings, environ, **quiet)
    try:
        admin = AdminClient(config)
    except (KafkaException, ValueError, TypeError) as exc:
        raise PreflightError(f"kafka.bootstrap_servers: cannot make a Kafka client for {servers!r}: "
                             f"{first_line(exc)}") from None
    started = time.monotonic()
    metadata = None
    while metadata is None:
        try:
            metadata = admin.list_topics(timeout=1.0)
        except KafkaException:
            admin.poll(0)  # serves error_cb
            elapsed = time.monotonic() - started
            codes = {e.code() for e in errors}
            if codes & {KafkaError._AUTHENTICATION, KafkaError.SASL_AUTHENTICATION_FAILED}:
                raise PreflightError(f"kafka.security_protocol: the brokers at {servers} refused the client's "
                                     f"credentials ({_describe(errors)}); check kafka.sasl_mechanism and the "
                                     f"KAFKA_SASL_* variables") from None
            if KafkaError._SSL in codes:
                raise PreflightError(f"kafka.security_protocol: TLS with the brokers at {servers} failed "
                                     f"({_describe(errors)}); check kafka.ssl_ca_location") from None
            fatal = codes & {KafkaError._ALL_BROKERS_DOWN, KafkaError._RESOLVE}
            if elapsed >= timeout or (fatal and elapsed >= FAST_FAIL_SECONDS):
                raise PreflightError(f"kafka.bootstrap_servers: broker {servers} unreachable "
                                     f"({_describe(errors)}, gave up after {elapsed:.0f} s)") from None
    for setting in topics:
        topic = kafka[setting]
        found = metadata.topics.get(topic)
        # A topic created a moment ago (or a broker just restarted) may not be in the metadata yet: ask again
        # for a few seconds before calling it missing.
        deadline = time.monotonic() + NEW_TOPIC_GRACE_SECONDS
        while (found is None or found.error is not None) and time.monotonic() < deadline:
            time.sleep(0.5)
            try:
                found = admin.list_topics(topic, timeout=1.0).topics.get(topic)
            except KafkaException:
                found = None
        if found is None or found.error is not None:
            raise PreflightError(f"kafka.{setting}: topic {topic!r} does not exist on {servers} (topics are "
                                 f"created up front, e.g. by `make services-up`; the brokers do not create them)")


# ------------------------------------------------------------------------------------------------- object store

def s3_client(settings: Settings, environ: Mapping[str, str] | None = None):
    """A boto3 S3 client on lake.s3_endpoint with the environment's credentials, short timeouts, one retry."""
    import boto3
    from botocore.config import Config

    env = os.environ if environ is None else environ
    access_key, secret_key = check_credentials(env)
    lake = settings.lake
    config = Config(s3={"addressing_style": "path" if lake.path_style_access else "auto"},
                    connect_timeout=S3_CONNECT_TIMEOUT_SECONDS, read_timeout=S3_READ_TIMEOUT_SECONDS,
                    retries={"total_max_attempts": 2, "mode": "standard"})
    try:
        return boto3.client("s3", endpoint_url=lake.s3_endpoint, region_name=lake.s3_region,
                            aws_access_key_id=access_key, aws_secret_access_key=secret_key,
                            aws_session_token=env.get(SESSION_TOKEN_ENV) or None, config=config)
    except ValueError as exc:  # e.g. botocore's "Invalid endpoint"
        raise PreflightError(f"lake.s3_endpoint: {lake.s3_endpoint!r} is not a usable endpoint URL "
                             f"({first_line(exc)})") from None


def check_object_store(settings: Settings, environ: Mapping[str, str] | None = None) -> None:
    """lake.s3_endpoint answers, the credentials are accepted and lake.bucket exists (a HEAD of the bucket)."""
    from botocore.exceptions import BotoCoreError, ClientError

    lake = settings.lake
    client = s3_client(settings, environ)
    try:
        client.head_bucket(Bucket=lake.bucket)
    except ClientError as exc:
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        meta = exc.response.get("ResponseMetadata", {})
        status = meta.get("HTTPStatusCode")
        if code in ("404", "NoSuchBucket") or status == 404:
            if not any(name.lower().startswith("x-amz-") for name in meta.get("HTTPHeaders", {})):
                # S3 and MinIO stamp their answers with x-amz-request-id: this 404 came from something else.
                raise PreflightError(f"lake.s3_endpoint: {lake.s3_endpoint} answered HTTP 404 without S3's "
                                     f"x-amz-* headers: not an S3 endpoint?") from None
            raise PreflightError(f"lake.bucket: bucket {lake.bucket!r} does not exist at {lake.s3_endpoint}") \
                from None
        if code in ("403", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch") or status == 403:
            raise PreflightError(f"{ACCESS_KEY_ENV}/{SECRET_KEY_ENV}: the object store at {lake.s3_endpoint} "
                                 f"refused them for bucket {lake.bucket!r} (HTTP 403)") from None
        if status in (301, 400):
            raise PreflightError(f"lake.s3_region: the object store at {lake.s3_endpoint} refused the request for "
                                 f"bucket {lake.bucket!r} in region {lake.s3_region!r} (HTTP {status})") from None
        raise PreflightError(f"lake.s3_endpoint: {lake.s3_endpoint} answered HTTP {status} {code} for bucket "
                             f"{lake.bucket!r}") from None
    except BotoCoreError as exc:
        raise PreflightError(f"lake.s3_endpoint: object store {lake.s3_endpoint} unreachable "
                             f"({first_line(exc)})") from None


def preflight(settings: Settings, *, kafka_topics: Iterable[str] | None = None, object_store: bool = False,
              environ: Mapping[str, str] | None = None) -> None:
    """What an entry point needs: credentials first (no network), then the object store, then Kafka.

    kafka_topics: None = the job does not use Kafka; otherwise the kafka.* topic settings it reads or writes.
    """
    if object_store:
        check_credentials(environ)
        check_object_store(settings, environ)
    if kafka_topics is not None:
        check_broker(settings, kafka_topics, environ=environ)
