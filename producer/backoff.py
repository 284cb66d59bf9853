"""Exponential backoff with jitter, for reconnecting to a source and for waiting out rate limits; and the
interruptible wait the sources share."""
from __future__ import annotations

import random
from typing import Callable


class Backoff:
    """The n-th delay (n = 0, 1, ...) is uniformly within [step/2, step], step = min(maximum, initial * 2**n).

    Half the step is fixed so a retry storm still spreads out and never retries at once; the other half is
    random so many clients that failed together do not retry together. reset() after a success.
    """

    def __init__(self, initial: float, maximum: float, rand: Callable[[], float] = random.random):
        if not 0 < initial <= maximum:
            raise ValueError(f"backoff needs 0 < initial <= maximum, got {initial} and {maximum}")
        self.initial = initial
        self.maximum = maximum
        self.attempts = 0
        self._rand = rand

    def step(self, attempt: int) -> float:
        """The upper bound of the attempt-th delay."""
        # Cap the exponent: 2**attempt overflows a float long after the step has reached maximum.
        return min(self.maximum, self.initial * 2 ** min(attempt, 64))

    def next_delay(self) -> float:
        step = self.step(self.attempts)
        self.attempts += 1
        return step / 2 + self._rand() * step / 2

    def reset(self) -> None:
        self.attempts = 0


def sleep_until(due: float, *, clock: Callable[[], float], sleep: Callable[[float], None],
                should_stop: Callable[[], bool], step: float = 1.0,
                serve: Callable[[], object] = lambda: None) -> bool:
    """Sleep until clock() reaches due, in steps of at most `step` seconds so a stop request is honoured
    promptly; serve() runs before each step (e.g. Kafka delivery callbacks). False if asked to stop first."""
    while not should_stop():
        left = due - clock()
        if left <= 0:
            return True
        serve()
        sleep(min(left, step))
    return False
