"""Retained events for resuming from a cursor: one log per user and one global log (for
admins), each capped by count and age. Pure: time is passed in."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable

from .cursor import START, Position
from .errors import CursorExpired
from .events import Event


class Log:
    __slots__ = ("events", "floor", "maxlen")

    def __init__(self, maxlen: int):
        self.events: deque[tuple[float, Event]] = deque()
        self.maxlen = maxlen
        # Position of the newest event ever dropped: a cursor below it may have missed events.
        self.floor: Position = START

    def append(self, event: Event, now: float) -> None:
        self.events.append((now, event))
        if len(self.events) > self.maxlen:
            self.floor = self.events.popleft()[1].pos

    def trim(self, cutoff: float) -> None:
        events = self.events
        while events and events[0][0] < cutoff:
            self.floor = events.popleft()[1].pos

    def since(self, pos: Position) -> list[Event]:
        if pos < self.floor:
            raise CursorExpired("cursor is older than the retained history")
        out = []
        for _, event in reversed(self.events):
            if event.pos <= pos:
                break
            out.append(event)
        out.reverse()
        return out


def in_scope(event: Event, user_id: str | None, job_ids: frozenset[str] | None) -> bool:
    """Whether `event` belongs to a reader's scope: one user's jobs, some job ids, or all."""
    return ((user_id is None or event.user_id == user_id)
            and (job_ids is None or event.job_id in job_ids))


class History:
    def __init__(self, *, per_user: int = 1000, global_size: int = 10000,
                 ttl_seconds: float = 86400):
        self.per_user = per_user
        self.ttl = ttl_seconds
        self.users: dict[str, Log] = {}
        self.everything = Log(global_size)

    def append(self, event: Event, now: float) -> None:
        log = self.users.get(event.user_id)
        if log is None:
            log = self.users[event.user_id] = Log(self.per_user)
        log.append(event, now)
        self.everything.append(event, now)

    def since(self, pos: Position, user_id: str | None,
              job_ids: Iterable[str] | None = None) -> list[Event]:
        """Events after `pos`, from one user's log or (user_id None) the global one."""
        if user_id is None:
            log = self.everything
        else:
            log = self.users.get(user_id)
            if log is None:
                return []
        events = log.since(pos)
        if job_ids is not None:
            wanted = set(job_ids)
            events = [e for e in events if e.job_id in wanted]
        return events

    def trim(self, now: float) -> None:
        cutoff = now - self.ttl
        self.everything.trim(cutoff)
        for log in self.users.values():
            log.trim(cutoff)
