"""Regular polling: the current state of jobs, with ETags and a `Retry-After` that follows how
fast the jobs move. Stateless: any instance answers any request."""

from __future__ import annotations

import hashlib
import re
import time
from datetime import datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from ..auth import Principal
from ..broker import Scope
from ..errors import Forbidden, InvalidMessage, NotFound
from ..protocol import ID_PATTERN, dumps, principal_fields
from .http import reader_of, service_of

_ID_RE = re.compile(ID_PATTERN)
START_CURSOR = "0-0"


def job_ids_param(request: Request, limit: int) -> list[str] | None:
    """`?jobIds=a,b` as a list, or None when absent (meaning: every visible job)."""
    raw = request.query_params.get("jobIds")
    if raw is None:
        return None
    ids = list(dict.fromkeys(p for p in raw.split(",") if p))
    if len(ids) > limit:
        raise InvalidMessage(f"at most {limit} jobIds", field="jobIds")
    for job_id in ids:
        if not _ID_RE.fullmatch(job_id):
            raise InvalidMessage(f"invalid job id {job_id[:40]!r}", field="jobIds")
    return ids


def scope_for(principal: Principal, job_ids: list[str] | None, user_id: str | None) -> Scope:
    if job_ids is not None:
        return Scope(job_ids=frozenset(job_ids),
                     owner=None if principal.is_admin else principal.user_id,
                     admin=principal.is_admin)
    if principal.is_admin:
        return Scope(user_id=user_id, admin=True)
    return Scope(user_id=principal.user_id)


def cursor_of(states: list[dict[str, Any]]) -> str:
    """The newest event among the states: resuming from it misses nothing of these jobs."""
    if not states:
        return START_CURSOR
    newest = max(states, key=lambda s: tuple(int(x) for x in s["id"].split("-")))
    return newest["id"]


def retry_after(states: list[dict[str, Any]], now: float) -> int:
    """Seconds until a poll is worth making: soon for jobs that just moved, later for quiet
    ones, and long when nothing is running."""
    ages = [now - _epoch(s.get("timestamp")) for s in states
            if s.get("status") in ("queued", "processing")]
    if not ages:
        return 30
    youngest = min(ages)
    return 1 if youngest < 10 else (5 if youngest < 120 else 15)


def _epoch(timestamp: Any) -> float:
    try:
        return datetime.fromisoformat(timestamp).timestamp()
    except (TypeError, ValueError):
        return 0.0


def cached_json(request: Request, body: dict[str, Any], retry: int) -> Response:
    raw = dumps(body)
    etag = '"' + hashlib.blake2b(raw, digest_size=12).hexdigest() + '"'
    headers = {"ETag": etag, "Retry-After": str(retry), "Cache-Control": "no-cache"}
    if etag in [t.strip() for t in request.headers.get("if-none-match", "").split(",")]:
        return Response(status_code=304, headers=headers)
    return Response(raw, media_type="application/json", headers=headers)


async def jobs_status(request: Request) -> Response:
    principal = await reader_of(request, "poll")
    service = service_of(request)
    job_ids = job_ids_param(request, service.settings.max_subscriptions)
    user_id = request.query_params.get("userId")
    if user_id is not None and not principal.is_admin and user_id != principal.user_id:
        raise Forbidden("userId must be your own", field="userId")
    view = await service.broker.view(scope_for(principal, job_ids, user_id), None)
    body = {"jobs": view.states, "cursor": cursor_of(view.states),
            "principal": principal_fields(principal)}
    return cached_json(request, body, retry_after(view.states, time.time()))


async def job_status(request: Request) -> Response:
    principal = await reader_of(request, "poll")
    state = await service_of(request).broker.job(request.path_params["job_id"])
    if state is None or not principal.may_see(state["userId"]):
        raise NotFound("no such job")
    return cached_json(request, state, retry_after([state], time.time()))

