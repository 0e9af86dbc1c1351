"""The in-process broker: the default when no Redis is configured. A real broker for one
process, not a test double: it keeps job state and history in memory and fans out through
its listeners synchronously."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence
from typing import Any

from ..cursor import Position
from ..history import History
from ..jobs import Ack, JobBook
from ..protocol import JobUpdate, now_iso
from .base import Broker, Scope, View

SWEEP_SECONDS = 1.0


class MemoryBroker(Broker):
    def __init__(self, *, history_size: int = 1000, global_history_size: int = 10000,
                 history_ttl_seconds: float = 86400, max_updates_per_second: float = 10.0,
                 stalled_after_seconds: float = 60.0):
        super().__init__()
        self.book = JobBook(max_updates_per_second=max_updates_per_second)
        self.history = History(per_user=history_size, global_size=global_history_size,
                               ttl_seconds=history_ttl_seconds)
        self.stalled_after = stalled_after_seconds
        self.published = 0
        self._sweeper: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._sweeper = asyncio.create_task(self._sweep(), name="jobwire-memory-sweep")

    async def stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None

    def ready(self) -> bool:
        return True

    async def publish(self, update: JobUpdate) -> Ack:
        return self.publish_now(update)

    def publish_now(self, update: JobUpdate) -> Ack:
        """Synchronous publish, for code already on the event loop."""
        now = time.time()
        ack, event = self.book.accept(update, now, update.timestamp or now_iso())
        if event is not None:
            self._deliver(event, now)
        if ack.flush_at is not None:
            asyncio.get_running_loop().call_later(
                max(0.0, ack.flush_at - now), self._flush, update.jobId)
        return ack

    def _flush(self, job_id: str) -> None:
        now = time.time()
        event = self.book.flush(job_id, now)
        if event is not None:
            self._deliver(event, now)

    def _deliver(self, event: Any, now: float) -> None:
        self.published += 1
        self.history.append(event, now)
        self._fan_out(event)

    async def owners(self, job_ids: Sequence[str]) -> dict[str, str]:
        jobs = self.book.jobs
        return {j: jobs[j].user_id for j in job_ids if j in jobs}

    async def view(self, scope: Scope, after: Position | None,
                   with_states: bool = True) -> View:
        jobs = self.book.jobs
        if scope.job_ids is not None:
            selected = (jobs.get(j) for j in sorted(scope.job_ids))
            states = [j.state() for j in selected
                      if j is not None and (scope.owner is None or j.user_id == scope.owner)]
        elif scope.user_id is not None:
            states = [j.state() for j in jobs.values() if j.user_id == scope.user_id]
        else:
            states = [j.state() for j in jobs.values()]
        events = []
        if after is not None:
            log_user = scope.owner if scope.owner is not None else scope.user_id
            events = self.history.since(after, log_user, scope.job_ids)
        return View([s for s in states if s is not None], events, self.book.clock.last)

    async def job(self, job_id: str) -> dict[str, Any] | None:
        job = self.book.jobs.get(job_id)
        return job.state() if job is not None else None

    async def _sweep(self) -> None:
        """Stalled-job detection and retention, once a second."""
        while True:
            await asyncio.sleep(min(SWEEP_SECONDS, self.stalled_after / 4))
            now = time.time()
            for event in self.book.stalled(now, self.stalled_after):
                self._deliver(event, now)
            self.history.trim(now)
            self.book.forget_finished(now, self.history.ttl)
