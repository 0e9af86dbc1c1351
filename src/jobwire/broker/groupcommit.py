"""Group commit: concurrent publishes share one script call.

A publish commits as soon as nothing else is being committed, with no added wait. Publishes
that arrive while a call is in flight wait for it and then go out together in the next call,
each getting back its own replies. Under many concurrent one-update requests this turns one
Redis round trip per request into one per round trip's worth of requests, which is most of
what a small publish costs both jobwire and Redis. Commits of different publishes are
independent: each is checked against its job's version by the script, so two publishes that
planned the same job from the same state still get one success and one refusal, as when their
calls were separate."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

Run = Callable[[list[Any]], Awaitable[list[Any]]]


class GroupCommit:
    def __init__(self, run: Run):
        self._run = run  # one call: a reply per item, in order
        self._busy = False
        self._waiting: list[tuple[list[Any], asyncio.Future[list[Any]]]] = []
        self.calls = 0  # script calls made, for tests and metrics
        self.drainer: asyncio.Task[None] | None = None

    async def submit(self, items: list[Any]) -> list[Any]:
        if self._busy:
            future: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
            self._waiting.append((items, future))
            return await future
        self._busy = True
        try:
            self.calls += 1
            return await self._run(items)
        finally:
            if self._waiting:
                self.drainer = asyncio.get_running_loop().create_task(self._drain())
            else:
                self._busy = False

    async def _drain(self) -> None:
        """Run what waited, a call per round, until nothing waits."""
        batch: list[tuple[list[Any], asyncio.Future[list[Any]]]] = []
        try:
            while self._waiting:
                batch, self._waiting = self._waiting, []
                items = [item for part, _ in batch for item in part]
                try:
                    self.calls += 1
                    replies = await self._run(items)
                except Exception as exc:
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                start = 0
                for part, future in batch:
                    if not future.done():  # its caller may have been cancelled meanwhile
                        future.set_result(replies[start:start + len(part)])
                    start += len(part)
                batch = []
        finally:
            self._busy = False
            for _, future in batch + self._waiting:  # cancelled (the broker stopping)
                future.cancel()
            self._waiting = []

    async def close(self) -> None:
        """Stop a drain in flight (its callers see their waits cancelled)."""
        if self.drainer is not None and not self.drainer.done():
            self.drainer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.drainer
