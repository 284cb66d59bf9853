"""spark_jobs/stream.py's --trigger and --entity options, and its Kafka source's options."""
from __future__ import annotations

import argparse

import pytest

from conf.settings import ConfigError, load_settings
from spark_jobs.lib.stream_io import kafka_source_options
from spark_jobs.stream import parse_args, parse_trigger
from spark_jobs.lib.transforms import QUOTES, TRADES


@pytest.mark.parametrize("text, trigger", [
    ("available-now", {"availableNow": True}),
    ("processing-time", {"processingTime": None}),  # None: the interval from conf (stream.trigger_interval)
    ("processing-time=10 seconds", {"processingTime": "10 seconds"}),
])
def test_trigger_forms(text, trigger):
    assert parse_trigger(text) == trigger


@pytest.mark.parametrize("text, message", [
    ("continuous", "unknown trigger 'continuous'"),
    ("processing-time=soon", "not an interval: 'soon'"),
])
def test_bad_trigger_is_a_clear_error(text, message):
    with pytest.raises(argparse.ArgumentTypeError, match=message):
        parse_trigger(text)


@pytest.mark.parametrize("argv, entities", [
    ([], [TRADES, QUOTES]),  # all of them by default
    (["--entity", "quotes"], [QUOTES]),
    (["--entity", "quotes", "--entity", "trades"], [QUOTES, TRADES]),
    (["--entity", "trades", "--entity", "trades"], [TRADES]),  # once: two queries would share a checkpoint
])
def test_entity_selection(argv, entities):
    assert parse_args(argv).entities == entities


def test_unknown_entity_is_refused(capsys):
    with pytest.raises(SystemExit):
        parse_args(["--entity", "options"])
    assert "argument --entity: invalid choice: 'options'" in capsys.readouterr().err


def test_the_kafka_source_reads_the_entitys_topic_and_never_waits_long_at_the_end_of_a_partition():
    settings = load_settings({"STOCKLAKE_KAFKA_QUOTES_TOPIC": "q.topic"})
    options = kafka_source_options(settings, QUOTES)
    assert {key: options[key] for key in ("subscribe", "startingOffsets", "maxOffsetsPerTrigger",
                                          "kafka.fetch.max.wait.ms", "failOnDataLoss")} == {
        "subscribe": "q.topic", "startingOffsets": "earliest", "maxOffsetsPerTrigger": "200000",
        "kafka.fetch.max.wait.ms": "10", "failOnDataLoss": "true"}
    assert kafka_source_options(settings, TRADES, fail_on_data_loss=False)["failOnDataLoss"] == "false"
    tuned = load_settings({"STOCKLAKE_STREAM_KAFKA_FETCH_MAX_WAIT_MS": "100"})
    assert kafka_source_options(tuned, TRADES)["kafka.fetch.max.wait.ms"] == "100"
    with pytest.raises(ConfigError, match="stream.kafka_fetch_max_wait_ms: must be greater than 0"):
        load_settings({"STOCKLAKE_STREAM_KAFKA_FETCH_MAX_WAIT_MS": "0"})
