"""bench/sustained.py: whether a held rate was kept pace with, from the lag sampled through the hold."""
from __future__ import annotations

import pytest

from bench.sustained import hold_verdict


def test_a_lag_that_swings_but_does_not_grow_kept_pace():
    # Far behind while settling (first minute, not judged), then swinging by a batch around 60,000.
    samples = [(5.0, 400_000), (55.0, 150_000), (60.0, 100_000), (90.0, 20_000), (180.0, 140_000),
               (250.0, 30_000), (300.2, 90_000)]
    assert hold_verdict(samples, rate=10_000, tolerance_events=50_000) == {
        "kept_pace": True, "samples_judged": 5, "first_minute_lag_events": 60_000, "last_minute_lag_events": 60_000,
        "tolerance_events": 50_000, "max_lag_events": 140_000, "max_lag_seconds": 14.0}


def test_a_lag_that_grows_by_more_than_the_tolerance_is_falling_behind():
    samples = [(60.0, 50_000), (100.0, 70_000), (180.0, 150_000), (260.0, 200_000), (300.0, 230_001)]
    verdict = hold_verdict(samples, rate=20_000, tolerance_events=154_999)
    assert (verdict["first_minute_lag_events"], verdict["last_minute_lag_events"]) == (60_000, 215_000)
    assert verdict["kept_pace"] is False
    assert (verdict["max_lag_events"], verdict["max_lag_seconds"]) == (230_001, 11.5)
    # Grown by exactly the tolerance: still pace.
    assert hold_verdict(samples, rate=20_000, tolerance_events=155_000)["kept_pace"] is True


def test_a_hold_with_no_sample_after_the_settling_minute_did_not_keep_pace():
    verdict = hold_verdict([(5.0, 0), (59.9, 0)], rate=5_000, tolerance_events=25_000)
    assert verdict == {"kept_pace": False, "samples_judged": 0, "first_minute_lag_events": None,
                       "last_minute_lag_events": None, "tolerance_events": 25_000, "max_lag_events": None,
                       "max_lag_seconds": None}


@pytest.mark.parametrize("rate, tolerance", [(0, 10), (-5, 10), (100, -1)])
def test_a_rate_or_tolerance_that_cannot_be_judged_is_refused(rate, tolerance):
    with pytest.raises(ValueError, match="rate must be positive"):
        hold_verdict([(60.0, 0)], rate=rate, tolerance_events=tolerance)
