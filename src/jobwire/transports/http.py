"""Shared pieces of the HTTP endpoints: who is asking, bounded bodies, error responses."""

from __future__ import annotations

from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from ..auth import Principal, Transport
from ..errors import Forbidden, JobwireError, PayloadTooLarge, RateLimited, Unauthorized
from ..protocol import dumps
from ..service import Service
from .identify import identify


class JSONResponse(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return dumps(content)


def service_of(request: Request) -> Service:
    return request.app.state.service


async def principal_of(request: Request, transport: Transport = "publish") -> Principal:
    principal = await identify(request, service_of(request), transport)
    if principal is None:
        raise Unauthorized("a token is required")
    return principal


async def reader_of(request: Request, transport: Transport) -> Principal:
    principal = await principal_of(request, transport)
    if not principal.can_read:
        raise Forbidden("publishers cannot read job status")
    return principal


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 as soon as it passes `limit` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"body is larger than {limit} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"body is larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def error_response(exc: JobwireError) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if exc.http_status == 401 else None
    if isinstance(exc, RateLimited):
        headers = {"Retry-After": str(exc.retry_after)}
    return JSONResponse(exc.to_body(), status_code=exc.http_status, headers=headers)


async def jobwire_error_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, JobwireError)
    return error_response(exc)


async def http_error_handler(request: Request, exc: Exception) -> Response:
    """Routing errors (unknown path, wrong method) in the same JSON shape as ours."""
    assert isinstance(exc, HTTPException)
    codes = {404: "not_found", 405: "method_not_allowed"}
    body = {"error": {"code": codes.get(exc.status_code, "http_error"), "message": exc.detail}}
    return JSONResponse(body, status_code=exc.status_code, headers=exc.headers)
