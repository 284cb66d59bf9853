"""bench/sustained.py: whether a held rate was kept up with, from the lag sampled through the hold."""
from __future__ import annotations

import pytest

from bench.sustained import hold_verdict


def test_a_stream_never_too_far_behind_after_the_first_minute_kept_up():
    # Far behind while settling (first minute), then within two intervals of events at 10,000/s (100,000).
    samples = [(5.0, 400_000), (55.0, 150_000), (60.0, 100_000), (120.0, 60_000), (300.2, 20_000)]
    assert hold_verdict(samples, rate=10_000, limit_events=100_000) == {
        "kept_up": True, "samples_judged": 3, "max_lag_events": 100_000, "limit_events": 100_000,
        "max_lag_seconds": 10.0}


def test_a_lag_that_grows_past_the_limit_even_once_is_falling_behind():
    samples = [(60.0, 50_000), (180.0, 100_001), (300.0, 90_000)]
    verdict = hold_verdict(samples, rate=20_000, limit_events=100_000)
    assert verdict["kept_up"] is False
    assert (verdict["max_lag_events"], verdict["max_lag_seconds"]) == (100_001, 5.0)


def test_a_hold_with_no_sample_after_the_settling_minute_is_not_kept_up():
    verdict = hold_verdict([(5.0, 0), (59.9, 0)], rate=5_000, limit_events=50_000)
    assert verdict == {"kept_up": False, "samples_judged": 0, "max_lag_events": None, "limit_events": 50_000,
                       "max_lag_seconds": None}


@pytest.mark.parametrize("rate, limit", [(0, 10), (-5, 10), (100, -1)])
def test_a_rate_or_limit_that_cannot_be_judged_is_refused(rate, limit):
    with pytest.raises(ValueError, match="rate must be positive"):
        hold_verdict([(60.0, 0)], rate=rate, limit_events=limit)
