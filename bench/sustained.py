"""Whether the live stream kept up with a rate held for minutes: judged from its lag, sampled through the hold.

A short step can pass while the stream falls behind (a 40 s step at 20,000/s ended within two trigger intervals of
events while the stream took 13,500/s), so the sustained figure holds one rate for minutes and samples the lag
(records in the topic - records both trades queries have taken in) every few seconds.
"""
from __future__ import annotations

# The first minute of a hold is not judged: the stream's batches settle on the new rate.
SETTLE_SECONDS = 60


def hold_verdict(samples: list[tuple[float, int]], rate: float, limit_events: int,
                 settle_seconds: float = SETTLE_SECONDS) -> dict:
    """samples: (seconds into the hold, events behind). Kept up when, after the settling minute, the stream was
    never more than `limit_events` behind; the worst lag is also given in seconds of events at `rate`."""
    if rate <= 0 or limit_events < 0:
        raise ValueError("rate must be positive and limit_events not negative")
    judged = [behind for at, behind in samples if at >= settle_seconds]
    worst = max(judged, default=None)
    return {"kept_up": worst is not None and worst <= limit_events, "samples_judged": len(judged),
            "max_lag_events": worst, "limit_events": limit_events,
            "max_lag_seconds": None if worst is None else round(worst / rate, 1)}
