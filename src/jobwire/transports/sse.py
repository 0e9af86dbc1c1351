"""Server-Sent Events, `GET /api/v2/jobs/stream`: one session per stream, drained into
`id:`/`data:` frames. Starlette's streaming response ends the generator when the client goes
away, and the `finally` releases the session at once."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from ..cursor import parse_resume_point
from ..events import Event
from ..protocol import heartbeat_message
from ..session import Outgoing, Session
from ..stats import Histogram
from .http import reader_of, service_of
from .poll import job_ids_param

RETRY_MS = 2000  # the reconnect delay EventSource should use
HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no", "Connection": "keep-alive"}


def frame(item: Outgoing) -> str:
    """One SSE message. Job events carry their cursor as `id:`, so EventSource resumes with
    `Last-Event-ID`; control messages (subscribed, error, heartbeat) carry none."""
    if isinstance(item, Event):
        return f"id: {item.id}\ndata: {item.text}\n\n"
    return f"data: {item.decode()}\n\n"


async def stream(request: Request) -> Response:
    service = service_of(request)
    principal = await reader_of(request, "sse")
    job_ids = job_ids_param(request, service.settings.max_subscriptions)
    last = request.headers.get("last-event-id") or request.query_params.get("lastEventId")
    after = parse_resume_point(last, "Last-Event-ID") if last else None
    service.limits.connect(principal, request.client.host if request.client else None,
                           time.time())
    wakeup = asyncio.Event()
    session = service.open_session(principal, "sse", wakeup.set)

    def release() -> None:
        service.close_session(session)
        service.limits.disconnect(principal)

    try:
        await service.subscribe(session, job_ids=job_ids, all_jobs=job_ids is None,
                                user_id=None, after=after)
    except BaseException:
        release()
        raise
    return StreamingResponse(_frames(service.settings.heartbeat_seconds, session, wakeup,
                                     release, service.latency),
                             media_type="text/event-stream", headers=HEADERS)


async def _frames(heartbeat: float, session: Session, wakeup: asyncio.Event,
                  release: Callable[[], None], latency: Histogram) -> AsyncIterator[str]:
    expires = session.principal.expires_at
    # The reconnect hint rides in the first message's block (a block without data would
    # be an empty event to some parsers).
    prefix = f"retry: {RETRY_MS}\n"
    try:
        next_beat = time.monotonic() + heartbeat
        while True:
            items = session.drain()
            if items:
                now = time.time()
                for item in items:
                    if isinstance(item, Event):
                        latency.observe(now - item.pos[0] / 1000)
                yield prefix + "".join(map(frame, items))
                prefix = ""
            if session.closed is not None:
                return  # slow or shutting down: the client resumes from its cursor
            if expires is not None and time.time() >= expires:
                return  # the token expired: reconnect with a fresh one
            wait = next_beat - time.monotonic()
            if expires is not None:
                wait = min(wait, expires - time.time())
            try:
                await asyncio.wait_for(wakeup.wait(), max(0.0, wait))
            except TimeoutError:
                if time.monotonic() >= next_beat:
                    session.send(heartbeat_message())
                    next_beat = time.monotonic() + heartbeat
            wakeup.clear()
    finally:
        release()
