"""The reconnect loop: one transport at a time, in order of preference, with backoff.

- A transport the server does not offer (refused handshake, 404/405) is abandoned at once.
- A transport that fails `max_failures` times within `failure_window` seconds (a failure
  here: it could not open, or it died less than `stable_after` seconds after opening) is
  abandoned for the next; after the last one the chain starts over from the first.
- An unreachable server is not the transport's fault: backoff, same transport.
- Close 1012 (server restarting), 1001 and 4000 (too slow) reconnect at once.
- `401`/`4401` reconnect with a fresh token when the token is a callable; else `AuthError`.
- On a fallback transport, every `probe_interval` seconds the preferred transports are tried
  once more (an upgrade probe); a probe that fails goes straight back down.
Every (re)connection resumes from the tracker's cursor, so nothing is lost or repeated.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence

from .backoff import Backoff, FailureWindow
from .base import Conn
from .errors import AuthError, ClientError, TransportFailure, Unauthorized, Unsupported
from .state import Tracker

Runner = Callable[[Conn, Tracker], Awaitable[None]]
MIN_LIFE_FOR_IMMEDIATE = 1.0  # a connection that dies faster than this gets backoff anyway


class Fallback:
    def __init__(self, transports: Sequence[tuple[str, Runner]], *, backoff: Backoff,
                 max_failures: int = 3, failure_window: float = 60.0,
                 stable_after: float = 5.0, probe_interval: float | None = 300.0,
                 max_auth_failures: int = 3,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep):
        if not transports:
            raise ValueError("at least one transport is needed")
        self.transports = list(transports)
        self.backoff = backoff
        self.windows = [FailureWindow(max_failures, failure_window) for _ in self.transports]
        self.stable_after = stable_after
        self.probe_interval = probe_interval
        self.max_auth_failures = max_auth_failures
        self.clock, self.sleep = clock, sleep
        self.index = 0
        self.current: str | None = None  # the transport in use once subscribed
        self.opened = False
        self.probe_home: int | None = None  # the fallback to return to if a probe fails
        self.auth_failures = 0
        self.unsupported_run = 0  # consecutive transports found not offered

    def _on_open(self) -> None:
        self.opened = True
        self.current = self.transports[self.index][0]
        self.backoff.reset()
        self.auth_failures = 0
        self.unsupported_run = 0
        self.probe_home = None

    async def run(self, conn: Conn, tracker: Tracker) -> None:
        tracker.on_open = self._on_open
        while True:
            name, runner = self.transports[self.index]
            self.opened = False
            started = self.clock()
            probe_due = (self.probe_interval if self.index > 0 and self.probe_home is None
                         else None)
            try:
                async with asyncio.timeout(probe_due) as deadline:
                    await runner(conn, tracker)
                failure = TransportFailure(f"{name} ended")
            except TimeoutError:
                if not deadline.expired():
                    raise
                self.probe_home, self.index = self.index, 0  # time to try the better ones
                continue
            except TransportFailure as exc:
                failure = exc
            except (ValueError, KeyError, TypeError) as exc:  # a malformed answer
                failure = TransportFailure(f"{name}: unexpected message: {exc!r}")
            self.current = None
            await self.sleep(self._after(failure, self.clock() - started, conn))

    def _after(self, failure: TransportFailure, lived: float, conn: Conn) -> float:
        """Decide the next transport (self.index) and how long to wait before it."""
        if self.probe_home is not None and not self.opened:
            self.index += 1  # a failed upgrade probe: straight back down
            if self.index >= self.probe_home:
                self.index, self.probe_home = self.probe_home, None
            return 0.0
        if isinstance(failure, Unsupported):
            self.unsupported_run += 1
            if self.unsupported_run >= len(self.transports):
                raise ClientError(f"no transport available: {failure}")
            return self._abandon()
        self.unsupported_run = 0
        if isinstance(failure, Unauthorized):
            self.auth_failures += 1
            if not conn.refreshable or self.auth_failures >= self.max_auth_failures:
                raise AuthError(f"token refused ({failure})")
            return 0.0 if self.auth_failures == 1 else self.backoff.next_delay()
        if failure.counts and (not self.opened or lived < self.stable_after):
            if self.windows[self.index].record(self.clock()):
                return self._abandon()
        if failure.immediate and lived >= MIN_LIFE_FOR_IMMEDIATE:
            return 0.0
        return self.backoff.next_delay()

    def _abandon(self) -> float:
        self.windows[self.index].clear()
        self.index += 1
        if self.index < len(self.transports):
            return 0.0  # the next transport, at once
        self.index = 0  # all abandoned: start over, paced
        return self.backoff.next_delay()
