"""Publishing over HTTP: one update, or a batch. Publisher and admin tokens only."""

from __future__ import annotations

import time
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from ..auth import Principal
from ..errors import Forbidden, InvalidUpdate, JobwireError, PayloadTooLarge
from ..jobs import Ack
from ..protocol import JobUpdate, loads, parse_update
from .http import JSONResponse, principal_of, read_body, service_of


async def _publisher(request: Request) -> Principal:
    principal = await principal_of(request)
    if not principal.can_publish:
        raise Forbidden("only publisher and admin tokens may publish")
    return principal


async def publish_one(request: Request) -> Response:
    principal = await _publisher(request)
    service = service_of(request)
    service.limits.publish(principal, 1, time.time())
    body = await read_body(request, service.settings.max_message_bytes)
    update = parse_update(loads(body), job_id=request.path_params["job_id"])
    ack = await service.broker.publish(update)
    return JSONResponse(ack.to_wire(), status_code=202)


async def publish_batch(request: Request) -> Response:
    principal = await _publisher(request)
    service = service_of(request)
    items = loads(await read_body(request, service.settings.max_batch_bytes))
    if not isinstance(items, list):
        raise InvalidUpdate("a batch must be a JSON array of updates")
    if len(items) > service.settings.max_batch_items:
        raise PayloadTooLarge(f"a batch holds at most {service.settings.max_batch_items} updates")
    service.limits.publish(principal, len(items), time.time())
    results: list[dict[str, Any] | None] = [None] * len(items)
    valid: list[tuple[int, JobUpdate]] = []
    for i, item in enumerate(items):
        try:
            valid.append((i, parse_update(item)))
        except JobwireError as exc:
            results[i] = _refusal(item, exc)
    outcomes = await service.broker.publish_many([u for _, u in valid])
    for (i, update), outcome in zip(valid, outcomes, strict=True):
        results[i] = (outcome.to_wire() if isinstance(outcome, Ack)
                      else _refusal({"jobId": update.jobId}, outcome))
    return JSONResponse({"results": results}, status_code=202)


def _refusal(item: Any, exc: JobwireError) -> dict[str, Any]:
    job_id = item.get("jobId") if isinstance(item, dict) else None
    return {"jobId": job_id if isinstance(job_id, str) else None, "status": exc.http_status,
            **exc.to_body()}
