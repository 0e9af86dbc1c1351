"""`JobwireClient`: live job status from a jobwire server, over the best transport it offers.

    async with JobwireClient("http://127.0.0.1:3000", token, job_ids=["job_1"]) as client:
        async for item in client:
            if item["type"] == "snapshot":
                ...  # item["jobs"]: current states, on each (re)subscription
            else:
                ...  # a job event: status_update, job_stalled or job_completed

Items, in order:
- one `{"type": "snapshot", "transport", "jobs", "cursor", "resumed", "errors"}` per
  (re)subscription, i.e. after every (re)connection. `jobs` holds the job states (verbatim:
  `type`, `id`, `seq` included) this client has not yielded yet: every visible job on a first
  subscription; on a resume usually none, because jobs that moved since the cursor come as
  replayed events (after `cursor_expired`, or over polling, the states that changed). A client
  started with `last_event_id` gets the jobs unchanged since that cursor here (WebSocket, SSE,
  polling; a long-poll resume has no snapshot). `errors` are the server's `error` messages
  about the subscription: `forbidden` per refused job id (also kept in `client.refused`) and
  `cursor_expired`. `resumed` is true when the server replays what was missed.
- each job event (`status_update`, `job_stalled`, `job_completed`, verbatim) exactly once, in
  id order, whatever the transport and however often the connection is lost or switched.
  Over regular polling only each job's latest state is seen (a `seq` gap).

`client.jobs` holds the latest state of every job; `client.cursor` the resume point (pass it as
`last_event_id` to a later client to pick up where this one stopped); `client.transport` the
transport in use (None while reconnecting). Iteration ends when the client is closed, and raises
`ClientError` (`AuthError`) when retrying cannot help.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable, Sequence
from typing import Any

import httpx

from . import longpoll, poll, sse, ws
from .backoff import Backoff
from .base import Conn, TokenSource
from .fallback import Fallback, Runner
from .state import Tracker

RUNNERS: dict[str, Runner] = {ws.NAME: ws.run, sse.NAME: sse.run, longpoll.NAME: longpoll.run,
                              poll.NAME: poll.run}
TRANSPORTS = ("websocket", "sse", "longpoll", "poll")
_END = object()


class JobwireClient:
    """Follow `job_ids` (None: every job the token may see) on the server at `url`.

    `token`: a string, or a callable (plain or async) returning a fresh token, called for
    every connection and request; with a string, a refused token raises `AuthError`.
    `transports`: the order to try (a list, or "websocket,sse" as the server spells it).
    `last_event_id`: resume from an earlier client's `cursor`. `backoff`: the reconnect pacing
    (default 0.5 s doubling to 30 s, full jitter). A transport that fails `max_failures` times
    in `failure_window` s (not opening, or dying within `stable_after` s) is abandoned for the
    next; on a fallback the better ones are probed again every `probe_interval` s (None: never).
    `open_timeout`: connect and first answer. Any message shows a link alive: a WebSocket or
    SSE stream silent for 2.5 heartbeat intervals (two missed heartbeats), or a long-poll
    answer that late past its wait, is taken for dead and reconnected (with backoff, from the
    cursor). The interval is the server's (`heartbeatSeconds` in `subscribed`) unless
    `heartbeat_seconds` is given; while it is unknown, `idle_timeout` is the silence allowed
    a stream and `open_timeout` the lateness allowed a long-poll. `longpoll_timeout`: each
    long-poll's wait; `max_poll_interval`: the longest wait between polls (the server's
    Retry-After is followed below it); each poll request has `open_timeout`.
    `queue_size`: items buffered for a slow consumer before reading pauses.
    """

    def __init__(self, url: str, token: TokenSource, job_ids: Iterable[str] | None = None,
                 transports: Sequence[str] = TRANSPORTS, *, last_event_id: str | None = None,
                 backoff: Backoff | None = None, max_failures: int = 3,
                 failure_window: float = 60.0, stable_after: float = 5.0,
                 probe_interval: float | None = 300.0, open_timeout: float = 10.0,
                 idle_timeout: float = 45.0, longpoll_timeout: float = 25.0,
                 max_poll_interval: float = 30.0, heartbeat_seconds: float | None = None,
                 queue_size: int = 1000):
        if isinstance(transports, str):  # "sse,longpoll", as JOBWIRE_TRANSPORTS spells it
            transports = [t.strip() for t in transports.split(",") if t.strip()]
        unknown = [t for t in transports if t not in RUNNERS]
        if unknown or not transports:
            raise ValueError(f"transports must be some of {', '.join(TRANSPORTS)}")
        ids = None if job_ids is None else list(dict.fromkeys(job_ids))
        if ids == []:
            raise ValueError("job_ids is empty: pass None for every job")
        if heartbeat_seconds is not None and not heartbeat_seconds > 0:
            raise ValueError("heartbeat_seconds must be a positive number of seconds")
        self._conn = Conn(url, token, ids, open_timeout=open_timeout,
                          idle_timeout=idle_timeout, longpoll_timeout=longpoll_timeout,
                          max_poll_interval=max_poll_interval,
                          heartbeat_seconds=heartbeat_seconds)
        self._tracker = Tracker(last_event_id, queue_size)
        self._fallback = Fallback([(t, RUNNERS[t]) for t in transports],
                                  backoff=backoff or Backoff(), max_failures=max_failures,
                                  failure_window=failure_window, stable_after=stable_after,
                                  probe_interval=probe_interval)
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    @property
    def transport(self) -> str | None:
        return None if self._closed else self._fallback.current

    @property
    def jobs(self) -> dict[str, dict[str, Any]]:
        return self._tracker.jobs

    @property
    def cursor(self) -> str | None:
        return self._tracker.cursor

    @property
    def refused(self) -> dict[str, dict[str, Any]]:
        return self._tracker.refused

    def start(self) -> None:
        if self._closed:
            raise RuntimeError("the client is closed")
        if self._task is None:
            self._conn.client = httpx.AsyncClient(headers={"User-Agent": "jobwire-client"})
            self._task = asyncio.create_task(self._run(), name="jobwire-client")

    async def _run(self) -> None:
        try:
            await self._fallback.run(self._conn, self._tracker)
        except Exception as exc:  # handed to the consumer, raised from __anext__
            await self._tracker.queue.put(exc)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            await self._conn.http.aclose()
        queue = self._tracker.queue
        while not queue.empty():
            queue.get_nowait()
        queue.put_nowait(_END)

    async def __aenter__(self) -> JobwireClient:
        self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def __aiter__(self) -> JobwireClient:
        if not self._closed:
            self.start()
        return self

    async def __anext__(self) -> dict[str, Any]:
        if self._closed and self._tracker.queue.empty():
            raise StopAsyncIteration
        item = await self._tracker.queue.get()
        if item is _END:
            self._tracker.queue.put_nowait(_END)  # every later call ends too
            raise StopAsyncIteration
        if isinstance(item, BaseException):
            self._tracker.queue.put_nowait(_END)  # the run is over: later calls end
            raise item
        return item
