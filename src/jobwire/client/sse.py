"""Server-Sent Events transport, `/api/v2/jobs/stream`: resumes with `Last-Event-ID`; the
first data is `subscribed` (after an `error` per refused job id), then job events and
heartbeats; a stream that misses its heartbeats is taken for dead."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import httpx

from .base import Conn, Replies, check, http_failure
from .errors import TransportFailure
from .state import Tracker

NAME = "sse"
PATH = "/api/v2/jobs/stream"


async def run(conn: Conn, tracker: Tracker) -> None:
    headers = {**await conn.headers(), "Accept": "text/event-stream",
               "Cache-Control": "no-cache"}
    resume = tracker.cursor
    if resume is not None:
        headers["Last-Event-ID"] = resume
    # Once the stream is open, silence is timed per message (Replies.read), not per read.
    timeout = httpx.Timeout(conn.open_timeout, read=None)
    try:
        async with contextlib.AsyncExitStack() as stack:
            try:
                async with asyncio.timeout(conn.open_timeout):
                    response = await stack.enter_async_context(conn.http.stream(
                        "GET", conn.endpoint(PATH), headers=headers, params=conn.job_params(),
                        timeout=timeout))
                    if response.status_code != 200:
                        await response.aread()
                        check(response)
                        raise TransportFailure(f"HTTP {response.status_code}")
            except TimeoutError:
                raise TransportFailure("no answer to the stream request") from None
            await _session(response, conn, tracker, resume)
    except httpx.HTTPError as exc:
        raise http_failure(exc) from exc
    # The server ended it (token expired, too slow, shutting down): resume at once.
    raise TransportFailure("stream ended", immediate=True, counts=False)


async def _session(response: httpx.Response, conn: Conn, tracker: Tracker,
                   resume: str | None) -> None:
    stream = messages(response.aiter_lines())
    try:
        await Replies(conn, tracker, NAME, resume).read(stream.__anext__)
    except StopAsyncIteration:
        return
    finally:
        await stream.aclose()


async def messages(lines: AsyncIterator[str]) -> AsyncIterator[str]:
    """The `data` of each SSE message (`id:`, `retry:`, `event:` and comments are not
    needed: every job event carries its id inside the JSON)."""
    data: list[str] = []
    async for line in lines:
        if not line:
            if data:
                yield "\n".join(data)
                data = []
        elif line.startswith("data:"):
            value = line[5:]
            data.append(value[1:] if value.startswith(" ") else value)
    # A message not ended by a blank line when the stream stops is incomplete: dropped.
