"""Counting and summarising what the clients received (pure: no I/O, no clock)."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

_ts_cache: dict[str, float] = {}


def ts_seconds(ts: str) -> float:
    """Unix seconds of an ISO 8601 timestamp; many events share one, so it is cached."""
    value = _ts_cache.get(ts)
    if value is None:
        if len(_ts_cache) > 100_000:
            _ts_cache.clear()
        value = _ts_cache[ts] = datetime.fromisoformat(ts).timestamp()
    return value


def percentile(sorted_values: list[float], p: float) -> float | None:
    """Nearest-rank percentile of already sorted values; None for none."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(p / 100 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def summary(values: Iterable[float], scale: float = 1.0,
            points: tuple[int, ...] = (50, 95, 99)) -> dict[str, Any]:
    """{"p50", "p95", "p99", "max", "n"} of `values` times `scale`, rounded to 0.001."""
    ordered = sorted(v * scale for v in values)

    def r(v: float | None) -> float | None:
        return None if v is None else round(v, 3)

    out: dict[str, Any] = {f"p{p}": r(percentile(ordered, p)) for p in points}
    out["max"] = r(ordered[-1] if ordered else None)
    out["n"] = len(ordered)
    return out


@dataclass
class Tally:
    """What the clients of one transport received. `delivered` counts events received, and for
    polling also the intermediate states a newer state superseded (polling reads states, not
    events: `superseded` of them were never seen, by design)."""

    latencies: list[float] = field(default_factory=list)  # seconds, publish to receipt
    connect_times: list[float] = field(default_factory=list)  # seconds, first connection
    reconnect_times: list[float] = field(default_factory=list)  # forced drop to resubscribed
    delivered: int = 0
    received: int = 0  # events (or new states) actually received
    superseded: int = 0  # polling: states not seen because a newer one was
    gaps: int = 0  # events missing according to the per-job seq
    duplicates: int = 0  # an event whose seq is not above the last one (polling: below)
    foreign: int = 0  # events of another user: must be 0
    errors: int = 0  # `error` messages received (cursor_expired included)
    drops: int = 0  # connections lost, not closed by us (then resumed)
    connect_failures: int = 0  # clients that gave up connecting (or reconnecting)
    samples: list[str] = field(default_factory=list)  # the first few problems, as text
    rate_limited: int = 0  # connection attempts refused with 429/4429 (then retried)
    cursor_expired: int = 0
    snapshot_states: int = 0  # newer states found in a snapshot on a resume: events missed
    connected: int = 0  # clients that connected at least once
    forced: int = 0  # forced disconnects
    reconnected: int = 0  # forced disconnects followed by a resubscribe

    def note(self, counter: str, text: str) -> None:
        """Count a problem in `counter`, keeping the first few as samples."""
        setattr(self, counter, getattr(self, counter) + 1)
        if len(self.samples) < 10:
            self.samples.append(text)

    def event(self, seqs: dict[str, int], msg: dict[str, Any], user: str,
              t: float | None) -> None:
        """A job event received at wall time t (None: from a snapshot, no latency)."""
        job, seq = msg["jobId"], msg["seq"]
        last = seqs.get(job, 0)
        if seq <= last:
            self.duplicates += 1
            return
        if seq > last + 1:
            self.gaps += seq - last - 1
        seqs[job] = seq
        self.delivered += 1
        self.received += 1
        if t is not None:
            self.latencies.append(t - ts_seconds(msg["timestamp"]))
        if msg["userId"] != user:
            self.foreign += 1

    def snapshot(self, seqs: dict[str, int], msg: dict[str, Any]) -> None:
        """A job's state in a stream's snapshot (`subscribed`). On a resume every newer event
        should come replayed, so a state newer than the last event received means the events
        up to it were missed (the state itself is not counted as delivered)."""
        job, seq = msg["jobId"], msg["seq"]
        last = seqs.get(job, 0)
        if seq > last:
            seqs[job] = seq
            self.gaps += seq - last
            self.snapshot_states += 1

    def state(self, seqs: dict[str, int], msg: dict[str, Any], user: str, t: float) -> None:
        """A job's state read by polling at wall time t: every event up to its seq is covered,
        the ones before it superseded."""
        job, seq = msg["jobId"], msg["seq"]
        last = seqs.get(job, 0)
        if seq < last:
            self.duplicates += 1  # an older state than one already read
        if seq <= last:
            return
        seqs[job] = seq
        self.delivered += seq - last
        self.superseded += seq - last - 1
        self.received += 1
        self.latencies.append(t - ts_seconds(msg["timestamp"]))
        if msg["userId"] != user:
            self.foreign += 1


def tally_fields(t: Tally) -> dict[str, Any]:
    """A tally as plain data (to cross a process boundary as JSON): Tally(**fields) again."""
    return dict(vars(t))


def merge_parts(parts: Iterable[dict[str, Any]], order: Iterable[str]
                ) -> dict[str, Tally]:
    """The per-transport tallies of several reader groups (their `finish` answers: a
    {"tallies": {transport: fields}} each) added up, one per transport of `order`, in that
    order (an empty one for a transport no group reported)."""
    by: dict[str, list[Tally]] = {t: [] for t in order}
    for part in parts:
        for transport, fields in part["tallies"].items():
            by.setdefault(transport, []).append(Tally(**fields))
    return {t: merge(tallies) for t, tallies in by.items()}


def merge(tallies: Iterable[Tally]) -> Tally:
    """One tally adding up several (the lists concatenated)."""
    out = Tally()
    for t in tallies:
        for name, value in vars(t).items():
            setattr(out, name, getattr(out, name) + value)
    return out
