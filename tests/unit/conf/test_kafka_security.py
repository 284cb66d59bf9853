"""Kafka client security: the same settings reach librdkafka (producer, admin) and Spark's Java client."""
from __future__ import annotations

import pytest

from conf.kafka_security import client_config, librdkafka_security, spark_kafka_options
from conf.settings import ConfigError, load_settings
from producer.kafka_sink import producer_config

SASL = {"STOCKLAKE_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "STOCKLAKE_KAFKA_BOOTSTRAP_SERVERS": "b:9094"}
CREDENTIALS = {"KAFKA_SASL_USERNAME": "lake", "KAFKA_SASL_PASSWORD": 'p"w\\d'}  # pragma: allowlist secret


def test_plaintext_adds_nothing():
    settings = load_settings({})
    assert librdkafka_security(settings, {}) == {}
    assert spark_kafka_options(settings, {}) == {}
    assert client_config(settings, {}) == {"bootstrap.servers": "127.0.0.1:19092"}


def test_sasl_scram_reaches_librdkafka_and_spark():
    settings = load_settings(SASL)
    assert client_config(settings, CREDENTIALS, **{"client.id": "x"}) == {
        "bootstrap.servers": "b:9094", "security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "lake", "sasl.password": 'p"w\\d', "client.id": "x"}
    # Quotes and backslashes in the password are escaped for the JAAS line.
    assert spark_kafka_options(settings, CREDENTIALS) == {
        "kafka.security.protocol": "SASL_PLAINTEXT",
        "kafka.sasl.mechanism": "SCRAM-SHA-512",
        "kafka.sasl.jaas.config": 'org.apache.kafka.common.security.scram.ScramLoginModule required '
                                  'username="lake" password="p\\"w\\\\d";'}  # pragma: allowlist secret


def test_sasl_ssl_with_a_ca_file(tmp_path):
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    settings = load_settings({**SASL, "STOCKLAKE_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
                              "STOCKLAKE_KAFKA_SASL_MECHANISM": "SCRAM-SHA-256",
                              "STOCKLAKE_KAFKA_SSL_CA_LOCATION": str(ca)})
    assert librdkafka_security(settings, CREDENTIALS)["ssl.ca.location"] == str(ca)
    options = spark_kafka_options(settings, CREDENTIALS)
    assert (options["kafka.ssl.truststore.type"], options["kafka.ssl.truststore.location"]) == ("PEM", str(ca))
    assert options["kafka.sasl.mechanism"] == "SCRAM-SHA-256"


def test_the_producer_config_carries_the_security_settings():
    settings = load_settings(SASL)
    with pytest.MonkeyPatch.context() as patch:
        for key, value in CREDENTIALS.items():
            patch.setenv(key, value)
        config = producer_config(settings, "p1")
    assert (config["security.protocol"], config["sasl.username"], config["enable.idempotence"]) == (
        "SASL_PLAINTEXT", "lake", True)


@pytest.mark.parametrize("env, message", [
    ({}, "kafka.security_protocol is SASL_PLAINTEXT: KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD must be set"),
    ({"KAFKA_SASL_USERNAME": "lake"}, "KAFKA_SASL_PASSWORD must be set in the environment"),
])
def test_sasl_without_credentials_names_the_missing_variable(env, message):
    with pytest.raises(ConfigError, match=message):
        librdkafka_security(load_settings(SASL), env)
    with pytest.raises(ConfigError, match=message):
        spark_kafka_options(load_settings(SASL), env)


@pytest.mark.parametrize("env, message", [
    ({"STOCKLAKE_KAFKA_SECURITY_PROTOCOL": "SASL"}, "kafka.security_protocol: must be one of PLAINTEXT"),
    ({"STOCKLAKE_KAFKA_SASL_MECHANISM": "GSSAPI"}, "kafka.sasl_mechanism: must be one of SCRAM-SHA-512"),
    ({**SASL, "STOCKLAKE_KAFKA_SASL_MECHANISM": "PLAIN"}, "kafka.sasl_mechanism: PLAIN sends the password"),
    ({"STOCKLAKE_KAFKA_SSL_CA_LOCATION": "/nonexistent/ca.pem"}, "kafka.ssl_ca_location: no such file"),
])
def test_bad_security_settings_fail_at_load(env, message):
    with pytest.raises(ConfigError, match=message):
        load_settings(env)
