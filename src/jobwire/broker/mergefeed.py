"""The admins' feed on Redis Cluster: every partition's events merged into one id order.

A client keeps one cursor and takes an id at or below it as already seen. Each partition's
events arrive in order, but partitions live on different shards, so an event of partition A
may arrive after a later-numbered one of partition B. Delivering B's at once and A's later
would make a client that resumes from B's id skip A's for ever.

So admins get an event only once no partition can still send an earlier one: every
partition's channel carries its events and, on request, a tick ("all of mine up to here
have been sent"); an event is released when every partition has been heard from up to its
id (the watermark). A resume from any released id therefore misses nothing on any shard.
Pure: the broker feeds it messages and asks which partitions to tick.
"""

from __future__ import annotations

import heapq

from ..cursor import Position
from ..events import Event


class MergedFeed:
    def __init__(self, partitions: int):
        # Per partition: every event up to this position has arrived (None: not yet known).
        self.known: list[Position | None] = [None] * partitions
        self._held: list[tuple[Position, int, Event]] = []
        self._n = 0  # a tie-breaker: the heap never compares events

    @property
    def complete(self) -> bool:
        """Every partition heard from: the watermark means something."""
        return all(k is not None for k in self.known)

    @property
    def watermark(self) -> Position | None:
        """Every event at or below this, of every partition, has arrived."""
        return None if not self.complete else min(self.known)  # type: ignore[type-var]

    @property
    def held(self) -> int:
        return len(self._held)

    def add(self, partition: int, event: Event) -> bool:
        """An event from `partition`'s channel (or its stream, catching up); False if it
        was already had."""
        known = self.known[partition]
        if known is not None and event.pos <= known:
            return False
        self.known[partition] = event.pos
        self._n += 1
        heapq.heappush(self._held, (event.pos, self._n, event))
        return True

    def tick(self, partition: int, pos: Position) -> None:
        known = self.known[partition]
        if known is None or pos > known:
            self.known[partition] = pos

    def release(self) -> list[Event]:
        """The held events no partition can precede any more, in id order."""
        mark = self.watermark
        out: list[Event] = []
        while self._held and mark is not None and self._held[0][0] <= mark:
            out.append(heapq.heappop(self._held)[2])
        return out

    def lagging(self) -> list[int]:
        """Partitions whose silence holds back the oldest held event: to be ticked."""
        if not self._held:
            return []
        oldest = self._held[0][0]
        return [p for p, k in enumerate(self.known) if k is not None and k < oldest]
