"""Whether the live stream kept pace with a rate held for minutes: judged from its lag, sampled through the hold.

A short step can pass while the stream falls behind (a 40 s step at 20,000/s ended within two trigger intervals of
events while the stream took 13,500/s), so the sustained figure holds one rate for minutes and samples the lag
(records in the topic - records both trades queries have taken in) every few seconds.

Kept pace = the lag does not grow: after the first minute (the batches settle on the new rate), the mean lag of
the hold's last minute is at most the mean lag of its first judged minute plus one trigger interval of events. How
far behind it ran is a separate figure (the most behind, in events and seconds of them): a stream whose batches
take longer than its trigger keeps pace with a lag that swings by a batch or two (at 5,000/s, 30,000 to 100,000
events) without ever staying within two trigger intervals, which the first version of this verdict demanded.
"""
from __future__ import annotations

from statistics import fmean

# The first minute of a hold is not judged: the stream's batches settle on the new rate.
SETTLE_SECONDS = 60
# The lag's mean over this long, at the start of the judged part and at its end, is compared.
WINDOW_SECONDS = 60


def hold_verdict(samples: list[tuple[float, int]], rate: float, tolerance_events: int,
                 settle_seconds: float = SETTLE_SECONDS) -> dict:
    """samples: (seconds into the hold, events behind). Kept pace when the last minute's mean lag is at most the
    first judged minute's plus `tolerance_events`; the worst lag is also given in seconds of events at `rate`."""
    if rate <= 0 or tolerance_events < 0:
        raise ValueError("rate must be positive and tolerance_events not negative")
    judged = [(at, behind) for at, behind in samples if at >= settle_seconds]
    if not judged:
        return {"kept_pace": False, "samples_judged": 0, "first_minute_lag_events": None,
                "last_minute_lag_events": None, "tolerance_events": tolerance_events, "max_lag_events": None,
                "max_lag_seconds": None}
    start, end = judged[0][0], judged[-1][0]
    first = round(fmean(behind for at, behind in judged if at < start + WINDOW_SECONDS))
    last = round(fmean(behind for at, behind in judged if at > end - WINDOW_SECONDS))
    worst = max(behind for _, behind in judged)
    return {"kept_pace": last <= first + tolerance_events, "samples_judged": len(judged),
            "first_minute_lag_events": first, "last_minute_lag_events": last, "tolerance_events": tolerance_events,
            "max_lag_events": worst, "max_lag_seconds": round(worst / rate, 1)}
