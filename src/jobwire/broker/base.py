"""The broker interface: publish, fan out, history, snapshots. Every implementation has the
same semantics; the in-process one is the default and the reference."""

from __future__ import annotations

import abc
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from ..cursor import Position
from ..errors import JobwireError
from ..events import Event
from ..jobs import Ack
from ..protocol import JobUpdate


@dataclass(frozen=True, slots=True)
class Scope:
    """What a reader looks at: some job ids, or every job of one user, or (both None, admins
    only) every job. `owner` restricts job-id scopes of non-admins to their own jobs."""

    job_ids: frozenset[str] | None = None
    user_id: str | None = None
    owner: str | None = None
    admin: bool = False  # read for an admin (a broker may order admins' feed differently)


@dataclass(slots=True)
class View:
    """A consistent read: current states, the events after a cursor, and the head position
    that separates what this read covers from the live stream."""

    states: list[dict[str, Any]]
    events: list[Event]
    head: Position


Listener = Callable[[Event], None]

EVERYONE = "*"  # the follow() key of an admin: every user (never a user id, not an Ident)


class Broker(abc.ABC):
    # True: events reach admins' sessions through their own listeners (add_admin_listener),
    # in an order of their own, and the other listeners serve everyone else.
    split_audience = False

    def __init__(self) -> None:
        self._listeners: list[Listener] = []
        self._admin_listeners: list[Listener] = []

    def add_listener(self, listener: Listener) -> None:
        """`listener` is called synchronously with every event, in order."""
        self._listeners.append(listener)

    def add_admin_listener(self, listener: Listener) -> None:
        """With `split_audience`: called with every event, in id order, for admins."""
        self._admin_listeners.append(listener)

    def _fan_out(self, event: Event) -> None:
        for listener in self._listeners:
            listener(event)

    def _fan_out_admins(self, event: Event) -> None:
        for listener in self._admin_listeners:
            listener(event)

    async def follow(self, keys: Iterable[str]) -> None:  # noqa: B027 - optional hook
        """Deliver the events of these user ids (or "*": everyone's) to this instance from
        now on; returns once they flow. Brokers that deliver everything anyway ignore it."""

    def unfollow(self, keys: Iterable[str]) -> None:  # noqa: B027 - optional hook
        """Undo one `follow` of each key."""

    async def start(self) -> None:  # noqa: B027 - optional hook
        """Connect and start background work."""

    async def stop(self) -> None:  # noqa: B027 - optional hook
        """Stop background work and release connections."""

    @abc.abstractmethod
    def ready(self) -> bool:
        """Whether publishes can be stored right now."""

    @abc.abstractmethod
    async def publish(self, update: JobUpdate) -> Ack:
        """Store and deliver one validated update. Raises Conflict or BrokerUnavailable."""

    async def publish_many(self, updates: Sequence[JobUpdate]) -> list[Ack | JobwireError]:
        """A batch: one result per update, in order; a refused update does not stop the rest."""
        results: list[Ack | JobwireError] = []
        for update in updates:
            try:
                results.append(await self.publish(update))
            except JobwireError as exc:
                if exc.http_status == 503:
                    raise
                results.append(exc)
        return results

    @abc.abstractmethod
    async def owners(self, job_ids: Sequence[str]) -> dict[str, str]:
        """The owner of each known job among `job_ids`."""

    @abc.abstractmethod
    async def view(self, scope: Scope, after: Position | None,
                   with_states: bool = True) -> View:
        """States in `scope` and, if `after` is given, the events after it (oldest first).
        Raises CursorExpired when `after` is older than the retained history. With
        `with_states` false the caller needs only the events (states may be left out)."""

    @abc.abstractmethod
    async def job(self, job_id: str) -> dict[str, Any] | None:
        """The current state of one job, or None."""
