"""spark_jobs/stream.py's --trigger and --entity options."""
from __future__ import annotations

import argparse

import pytest

from spark_jobs.stream import parse_args, parse_trigger
from spark_jobs.transforms import QUOTES, TRADES


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
