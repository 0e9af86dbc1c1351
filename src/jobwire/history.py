"""Retained events for resuming from a cursor: one log per user and one global log (for
admins), each capped by count and age. Pure: time is passed in."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable

from .cursor import START, Position
from .errors import CursorExpired
from .events import Event

# A retained event as a plain tuple of strings and numbers: (time kept, position, job id,
# user id, seq, encoded text, progress-only). The garbage collector stops tracking such
# tuples, so hundreds of thousands of retained events add nothing to its full collections,
# which otherwise grow with the heap and stall delivery for hundreds of milliseconds.
Retained = tuple[float, Position, str, str, int, str, bool]


def retained(event: Event, now: float) -> Retained:
    return (now, event.pos, event.job_id, event.user_id, event.seq, event.text,
            event.progress_only)


def revived(entry: Retained) -> Event:
    _, pos, job_id, user_id, seq, text, progress_only = entry
    return Event(pos, job_id, user_id, seq, None, progress_only, text)


class Log:
    __slots__ = ("events", "floor", "maxlen")

    def __init__(self, maxlen: int):
        self.events: deque[Retained] = deque()
        self.maxlen = maxlen
        # Position of the newest event ever dropped: a cursor below it may have missed events.
        self.floor: Position = START

    def append(self, event: Event, now: float) -> None:
        self.keep(retained(event, now))

    def keep(self, entry: Retained) -> None:
        self.events.append(entry)
        if len(self.events) > self.maxlen:
            self.floor = self.events.popleft()[1]

    def trim(self, cutoff: float) -> None:
        events = self.events
        while events and events[0][0] < cutoff:
            self.floor = events.popleft()[1]

    def since(self, pos: Position) -> list[Event]:
        if pos < self.floor:
            raise CursorExpired("cursor is older than the retained history")
        out = []
        for entry in reversed(self.events):
            if entry[1] <= pos:
                break
            out.append(revived(entry))
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
        entry = retained(event, now)  # one tuple shared by both logs
        log.keep(entry)
        self.everything.keep(entry)

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
