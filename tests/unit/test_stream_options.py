"""spark_jobs/stream.py's --trigger option."""
from __future__ import annotations

import argparse

import pytest

from spark_jobs.stream import parse_trigger


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
