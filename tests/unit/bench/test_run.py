"""bench/run.py's options: refused before any service is touched, each with the reason."""
from __future__ import annotations

import pytest

from bench.run import WARM_UP_EVENTS, parse_args


def test_the_defaults_fit_together():
    args = parse_args([])
    assert args.step_rates == [5000, 10000, 20000, 40000]
    assert args.latency_events == 300_000 and WARM_UP_EVENTS + args.latency_events <= args.events


@pytest.mark.parametrize("argv, message", [
    (["--events", "0"], "--events and every --steps rate must be positive"),
    (["--steps", "5000,-1"], "--events and every --steps rate must be positive"),
    (["--record-costs-events", "3000000"], "--record-costs-events must be positive and at most --events"),
    (["--hold-seconds", "10"], "--hold-seconds must be 0 (no hold) or more than the"),
    (["--events", "100000", "--latency-rate", "5000", "--latency-seconds", "60", "--record-costs-events", "1000"],
     "--latency-rate x --latency-seconds must be positive and, with the 20,000 warm-up events, fit in the backlog"),
])
def test_bad_options_exit_2_naming_the_option(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_:
        parse_args(argv)
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err
