"""One per connected client, whatever the transport: what it is subscribed to, the cursor it
has reached, and a bounded outbox. Pure: the transport drains the outbox and does the I/O."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from enum import Enum
from typing import Protocol

from .auth import Principal
from .cursor import START, Position
from .events import Event

Outgoing = Event | bytes  # a job event, or a control message already encoded


class CloseReason(Enum):
    SLOW = "slow"  # could not keep up even after shedding: close 4000, resume from cursor
    EXPIRED = "expired"  # token expired: close 4401
    SHUTDOWN = "shutdown"  # server restarting: close 1012
    RATE_LIMITED = "rate_limited"  # kept sending over the message rate: close 4429


_serials = itertools.count()


class DirectWriter(Protocol):
    def write_heartbeat(self, message: bytes) -> bool:
        """Write `message` out now if the connection can take it; False if it cannot."""


class Session:
    __slots__ = ("_buffer", "_wake", "all_of", "allowance", "closed", "direct", "floor",
                 "job_ids", "max_outbox", "outbox", "principal", "serial", "shed", "syncing",
                 "watch_all")

    def __init__(self, principal: Principal, *, max_outbox: int = 1000,
                 wake: Callable[[], None] | None = None):
        self.principal = principal
        # In order of creation: spreads work done for every session (heartbeats) evenly.
        self.serial = next(_serials)
        self.job_ids: set[str] = set()
        self.all_of: set[str] = set()  # users whose every job is subscribed
        self.watch_all = False  # an admin's subscription to every job
        self.outbox: list[Outgoing] = []  # a list, not a deque: 56 bytes, not 600, when empty
        self.max_outbox = max_outbox
        # Room above max_outbox for a replay not yet written: history already held in memory,
        # bounded by its size, and no sign of a slow reader. Counting it closed a resume
        # longer than the outbox as slow, and its retry the same way, for ever.
        self.allowance = 0
        self.floor: Position = START  # newest position handed to the outbox
        self.syncing = False
        self._buffer: list[Event] = []
        self._wake = wake
        # A transport that can write a heartbeat at once, cheaper than a trip through the
        # outbox (the WebSocket fast path).
        self.direct: DirectWriter | None = None
        self.closed: CloseReason | None = None
        self.shed = 0  # events dropped by shedding, for metrics

    # --- subscriptions ------------------------------------------------------------------

    @property
    def subscription_count(self) -> int:
        return len(self.job_ids) + len(self.all_of) + int(self.watch_all)

    def matches(self, event: Event) -> bool:
        return (self.watch_all or event.user_id in self.all_of
                or event.job_id in self.job_ids) and self.principal.may_see(event.user_id)

    # --- delivery -----------------------------------------------------------------------

    def deliver(self, event: Event) -> None:
        """Called by the hub for each live event this session may receive."""
        if self.closed is not None:
            return
        if self.syncing:
            self._buffer.append(event)
            return
        if event.pos <= self.floor:
            return  # already covered by a snapshot or replay
        self.floor = event.pos
        self._push(event)

    def send(self, message: bytes) -> None:
        """A control message (error, subscribed, heartbeat): never shed."""
        if self.closed is None:
            self._push(message)

    def heartbeat(self, message: bytes) -> None:
        """A heartbeat: written out at once by the transport when nothing waits to go out
        before it and the connection can take it, else queued as a control message."""
        if self.closed is None and (self.direct is None or self.outbox
                                    or not self.direct.write_heartbeat(message)):
            self._push(message)

    def begin_sync(self) -> None:
        """Hold live events while a snapshot or replay is read from the broker."""
        self.syncing = True

    def end_sync(self, head: Position, prefix: list[bytes], replay: list[Event],
                 already_matched: Callable[[Event], bool] | None = None) -> None:
        """Queue `prefix` messages, then the replayed events, then the live events held
        since `begin_sync` that are newer than `head` (older ones are in the snapshot)."""
        self.syncing = False
        held, self._buffer = self._buffer, []
        self.allowance += len(prefix) + len(replay)
        for message in prefix:
            self.send(message)
        for event in replay:
            # Skip what earlier subscriptions of this session already delivered.
            if already_matched is not None and event.pos <= self.floor and already_matched(event):
                continue
            self._push(event)
        self.floor = max(self.floor, head, *(e.pos for e in replay[-1:]))
        for event in held:
            self.deliver(event)

    def _push(self, item: Outgoing) -> None:
        if self.closed is not None:
            return
        outbox = self.outbox
        outbox.append(item)
        limit = self.max_outbox + self.allowance
        if len(outbox) > limit:
            self._shed()
            if len(self.outbox) > limit:
                self.close(CloseReason.SLOW)
                return
        if self._wake is not None:
            self._wake()

    def _shed(self) -> None:
        """Drop intermediate progress: per job, keep only what no later event supersedes."""
        seen: set[str] = set()
        kept: list[Outgoing] = []
        for item in reversed(self.outbox):
            if isinstance(item, Event):
                if item.progress_only and item.job_id in seen:
                    continue
                seen.add(item.job_id)
            kept.append(item)
        kept.reverse()
        self.shed += len(self.outbox) - len(kept)
        self.outbox = kept

    def drain(self) -> list[Outgoing]:
        items, self.outbox = self.outbox, []
        self.allowance = 0
        return items

    def close(self, reason: CloseReason) -> None:
        if self.closed is None:
            self.closed = reason
            if reason is not CloseReason.SHUTDOWN:
                # Slow: the backlog is what overflowed; expired: no longer authorised.
                # Shutting down keeps it, so a waiting poll answers what it has.
                self.outbox.clear()
            self._buffer = []
            if self._wake is not None:
                self._wake()
