"""HTTP long-polling, `GET /api/v2/jobs/poll`: a short-lived session per request. Pending
events after `last_seen` are answered at once; otherwise the request parks on the hub (no
broker round-trip while it waits) until an event arrives or the timeout ends."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from ..cursor import format_id, parse_resume_point
from ..errors import InvalidMessage
from ..events import Event
from ..protocol import dumps, principal_fields
from ..session import Session
from .http import JSONResponse, reader_of, service_of
from .poll import job_ids_param, scope_for

MAX_TIMEOUT = 60.0
DEFAULT_TIMEOUT = 30.0
BATCH_WINDOW = 0.02  # after the first event, wait this long so a burst is one answer


def timeout_param(request: Request) -> float:
    raw = request.query_params.get("timeout")
    if raw is None:
        return DEFAULT_TIMEOUT
    try:
        value = float(raw)
    except ValueError:
        raise InvalidMessage("timeout must be a number of seconds", field="timeout") from None
    if not 0 <= value < float("inf"):
        raise InvalidMessage("timeout must be a number of seconds", field="timeout")
    return min(value, MAX_TIMEOUT)


async def long_poll(request: Request) -> Response:
    principal = await reader_of(request, "longpoll")
    service = service_of(request)
    job_ids = job_ids_param(request, service.settings.max_subscriptions)
    timeout = timeout_param(request)
    last_seen = request.query_params.get("last_seen")
    if last_seen is None:
        view = await service.broker.view(scope_for(principal, job_ids, None), None)
        return JSONResponse({"events": [], "jobs": view.states, "cursor": format_id(view.head),
                             "principal": principal_fields(principal)})
    after = parse_resume_point(last_seen, "last_seen")

    service.limits.enter_longpoll(principal)
    wakeup = asyncio.Event()
    # Short-lived, drained at once: room for a whole replay from history.
    session = service.open_session(principal, "longpoll", wakeup.set,
                                   max_outbox=service.settings.global_history_size + 100)
    try:
        sub = await service.subscribe(session, job_ids=job_ids, all_jobs=job_ids is None,
                                      user_id=None, after=after, announce=False)
        body: dict[str, Any] = {}
        refused = [e.to_message() for e in sub.errors if not sub.cursor_expired]
        if refused:
            body["errors"] = refused
        if sub.cursor_expired:
            # Too old to replay: the current state instead, and a fresh cursor.
            return JSONResponse({**body, "events": [], "jobs": sub.answer["jobs"],
                                 "cursor": sub.answer["cursor"],
                                 "principal": sub.answer["principal"],
                                 "error": sub.errors[-1].to_body()["error"]})
        events = await _collect(session, wakeup, timeout)
        now = time.time()
        for event in events:
            service.latency.observe(now - event.pos[0] / 1000)
        cursor = events[-1].id if events else last_seen
        return Response(_encode(body, events, cursor), media_type="application/json")
    finally:
        service.close_session(session)
        service.limits.longpolls.leave(principal.user_id)


async def _collect(session: Session, wakeup: asyncio.Event, timeout: float) -> list[Event]:
    if not session.outbox and session.closed is None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(wakeup.wait(), timeout)
        if session.outbox and session.closed is None:
            await asyncio.sleep(BATCH_WINDOW)
    return [item for item in session.drain() if isinstance(item, Event)]


def _encode(body: dict[str, Any], events: list[Event], cursor: str) -> str:
    """The answer, with each event's already-encoded text spliced in, not re-encoded."""
    head = dumps({**body, "cursor": cursor}).decode()
    return f'{{"events":[{",".join(e.text for e in events)}],{head[1:]}'

