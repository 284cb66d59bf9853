"""Kafka client security from settings.kafka and the environment: one place for every client.

The producer and the admin clients are librdkafka (confluent-kafka); Spark's Kafka source is the Java client, which
takes the same settings as `kafka.`-prefixed source options and the SASL credentials as a JAAS line. The user name
and password come only from the environment (KAFKA_SASL_USERNAME, KAFKA_SASL_PASSWORD), never from a file.
"""
from __future__ import annotations

import os
from typing import Any, Mapping

from conf.settings import ConfigError, Settings

USERNAME_ENV = "KAFKA_SASL_USERNAME"
PASSWORD_ENV = "KAFKA_SASL_PASSWORD"  # noqa: S105 - the name of the variable, not a password  # pragma: allowlist secret

JAAS_MODULES = {
    "SCRAM-SHA-512": "org.apache.kafka.common.security.scram.ScramLoginModule",
    "SCRAM-SHA-256": "org.apache.kafka.common.security.scram.ScramLoginModule",
    "PLAIN": "org.apache.kafka.common.security.plain.PlainLoginModule",
}


def uses_sasl(settings: Settings) -> bool:
    return settings.kafka.security_protocol.startswith("SASL_")


def sasl_credentials(settings: Settings, environ: Mapping[str, str] | None = None) -> tuple[str, str]:
    env = os.environ if environ is None else environ
    user, password = env.get(USERNAME_ENV, ""), env.get(PASSWORD_ENV, "")
    missing = [name for name, value in ((USERNAME_ENV, user), (PASSWORD_ENV, password)) if not value]
    if missing:
        raise ConfigError(f"kafka.security_protocol is {settings.kafka.security_protocol}: "
                          f"{' and '.join(missing)} must be set in the environment")
    return user, password


def librdkafka_security(settings: Settings, environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Security keys for a confluent-kafka Producer, Consumer or AdminClient (empty for PLAINTEXT)."""
    kafka = settings.kafka
    config: dict[str, Any] = {}
    if kafka.security_protocol == "PLAINTEXT":
        return config
    config["security.protocol"] = kafka.security_protocol
    if uses_sasl(settings):
        user, password = sasl_credentials(settings, environ)
        config.update({"sasl.mechanism": kafka.sasl_mechanism, "sasl.username": user, "sasl.password": password})
    if kafka.ssl_ca_location:
        config["ssl.ca.location"] = kafka.ssl_ca_location
    return config


def client_config(settings: Settings, environ: Mapping[str, str] | None = None, **extra: Any) -> dict[str, Any]:
    """bootstrap.servers plus security: the base of every librdkafka client the pipeline opens."""
    return {"bootstrap.servers": settings.kafka.bootstrap_servers, **librdkafka_security(settings, environ), **extra}


def _jaas_quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def spark_kafka_options(settings: Settings, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """`kafka.`-prefixed options for Spark's Kafka source (empty for PLAINTEXT).

    Spark redacts option values that contain "password" in its logs and UI (spark.redaction.regex), so the JAAS
    line never shows; tests/integration/test_kafka_sasl.py checks the job's output for the password.
    """
    kafka = settings.kafka
    options: dict[str, str] = {}
    if kafka.security_protocol == "PLAINTEXT":
        return options
    options["kafka.security.protocol"] = kafka.security_protocol
    if uses_sasl(settings):
        user, password = sasl_credentials(settings, environ)
        options["kafka.sasl.mechanism"] = kafka.sasl_mechanism
        options["kafka.sasl.jaas.config"] = (f"{JAAS_MODULES[kafka.sasl_mechanism]} required "
                                             f"username={_jaas_quote(user)} password={_jaas_quote(password)};")
    if kafka.ssl_ca_location:
        options["kafka.ssl.truststore.type"] = "PEM"
        options["kafka.ssl.truststore.location"] = kafka.ssl_ca_location
    return options
