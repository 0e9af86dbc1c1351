"""The client's memory across connections: the resume cursor, the latest state of each job,
and the de-duplication that makes every event come out once, in order.

Event ids are `<ms>-<n>` and ordered for each principal, on every transport and instance, so
an id at or below the cursor (or below the job's latest known id) was already delivered. `seq`
is not used to drop events: the in-process broker forgets jobs on restart and starts their
`seq` at 1 again, while ids keep growing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from typing import Any

Item = dict[str, Any]


def pos(event_id: str) -> tuple[int, int]:
    ms, _, n = event_id.partition("-")
    return int(ms), int(n or 0)


class Tracker:
    def __init__(self, cursor: str | None = None, queue_size: int = 1000):
        self.cursor = cursor  # resume point: the newest id delivered (or the server's cursor)
        self.jobs: dict[str, Item] = {}  # latest state delivered per job
        self.refused: dict[str, Item] = {}  # job id -> its `forbidden` error
        self.queue: asyncio.Queue[Any] = asyncio.Queue(queue_size)
        self.on_open: Callable[[], None] = lambda: None

    def _newer(self, item: Item) -> bool:
        held = self.jobs.get(item["jobId"])
        return held is None or pos(item["id"]) > pos(held["id"])

    def _advance(self, cursor: str | None) -> None:
        if cursor and (self.cursor is None or pos(cursor) > pos(self.cursor)):
            self.cursor = cursor

    async def subscribed(self, transport: str, states: Iterable[Item], cursor: str | None,
                         *, errors: Iterable[Item] = (), replay: bool = False) -> None:
        """A (re)subscription was answered. Yields one `snapshot` item with the states that
        are news to the caller. With `replay` (a resume the server honoured) events after
        the cursor follow, so the cursor stays where it is until they come."""
        errors = list(errors)
        fresh = sorted((s for s in states if s.get("jobId") and s.get("id") and self._newer(s)),
                       key=lambda s: pos(s["id"]))
        item = {"type": "snapshot", "transport": transport, "jobs": fresh, "cursor": cursor,
                "resumed": replay, "errors": errors}
        await self.queue.put(item)
        for state in fresh:
            self.jobs[state["jobId"]] = state
        for error in errors:
            if error.get("code") == "forbidden" and error.get("jobId"):
                self.refused[error["jobId"]] = error
        if not replay:
            self._advance(cursor)
        self.on_open()

    async def event(self, event: Item) -> None:
        """A job event: passed on unless it was delivered before."""
        if self.cursor is not None and pos(event["id"]) <= pos(self.cursor):
            return
        if not self._newer(event):
            return
        await self.queue.put(event)
        self.jobs[event["jobId"]] = event
        self.cursor = event["id"]
