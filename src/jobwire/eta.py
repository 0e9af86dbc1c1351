"""ETA from a job's recent progress rate: an exponentially weighted rate, pure, time passed in."""

from __future__ import annotations

from dataclasses import dataclass

# Weight of the newest rate sample; lower is smoother.
ALPHA = 0.3
# No estimate until progress has been observed over at least this long.
MIN_SPAN_SECONDS = 1.0


@dataclass(slots=True)
class EtaEstimator:
    first_t: float | None = None
    last_t: float | None = None
    last_p: float | None = None
    rate: float | None = None  # percent per second, smoothed

    def observe(self, progress: float, now: float) -> None:
        if self.last_t is None or self.last_p is None or progress < self.last_p:
            # First sample, or progress reset with a status change: start over.
            self.first_t, self.last_t, self.last_p, self.rate = now, now, progress, None
            return
        dt = now - self.last_t
        if dt <= 0:
            self.last_p = progress
            return
        sample = (progress - self.last_p) / dt
        self.rate = sample if self.rate is None else ALPHA * sample + (1 - ALPHA) * self.rate
        self.last_t, self.last_p = now, progress

    def eta(self, now: float) -> float | None:
        if (self.rate is None or self.rate <= 0 or self.last_p is None or self.first_t is None
                or self.last_t is None or self.last_t - self.first_t < MIN_SPAN_SECONDS):
            return None
        remaining = max(0.0, 100.0 - self.last_p) / self.rate
        # Time already spent since the last report counts against the estimate.
        return round(max(0.0, remaining - (now - self.last_t)), 1)
