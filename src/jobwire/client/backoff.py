"""Reconnection pacing, free of I/O: exponential backoff with full jitter, and a sliding
window that tells when a transport has failed too often to keep trying it.

Both take their randomness and time from the caller, so they are deterministic under test.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Callable


def ceiling(attempt: int, base: float, cap: float, factor: float = 2.0) -> float:
    """The largest delay allowed before retry number `attempt` (0-based): base·factor^attempt,
    capped at `cap`."""
    if attempt < 0:
        raise ValueError("attempt must be >= 0")
    try:
        return min(cap, base * factor ** attempt)
    except OverflowError:
        return cap


def full_jitter(attempt: int, base: float, cap: float, rand: float,
                factor: float = 2.0) -> float:
    """A delay drawn uniformly from [0, ceiling(attempt)), given `rand` in [0, 1)."""
    return rand * ceiling(attempt, base, cap, factor)


class Backoff:
    """Full-jitter exponential backoff: the n-th consecutive failure waits a random time in
    [0, min(cap, base·factor^n)); `reset()` after a success starts again from `base`."""

    def __init__(self, base: float = 0.5, cap: float = 30.0, factor: float = 2.0,
                 rand: Callable[[], float] = random.random):
        if not 0 < base <= cap or factor < 1:
            raise ValueError("need 0 < base <= cap and factor >= 1")
        self.base, self.cap, self.factor = base, cap, factor
        self.rand = rand
        self.attempt = 0

    def next_delay(self) -> float:
        delay = full_jitter(self.attempt, self.base, self.cap, self.rand(), self.factor)
        self.attempt += 1
        return delay

    def reset(self) -> None:
        self.attempt = 0


class FailureWindow:
    """Counts failures in the last `window` seconds; `record()` says whether `limit` is
    reached (the transport should then be abandoned for the next one)."""

    def __init__(self, limit: int = 3, window: float = 60.0):
        if limit < 1 or window <= 0:
            raise ValueError("need limit >= 1 and window > 0")
        self.limit, self.window = limit, window
        self.times: deque[float] = deque()

    def record(self, now: float) -> bool:
        self.times.append(now)
        while self.times and self.times[0] <= now - self.window:
            self.times.popleft()
        return len(self.times) >= self.limit

    def clear(self) -> None:
        self.times.clear()
