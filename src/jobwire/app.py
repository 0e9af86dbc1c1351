"""Wiring: routes, lifespan, settings → objects. The only module that knows every transport."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from starlette.websockets import WebSocket

from . import metrics, openapi
from .auth import AuthenticateHook
from .config import Settings
from .errors import JobwireError
from .service import Service
from .transports import longpoll, poll, publish, sse
from .transports.frames import Flusher
from .transports.http import (
    JSONResponse,
    http_error_handler,
    jobwire_error_handler,
    service_of,
)
from .transports.uvicorn_fast_path import websocket_protocol
from .transports.websocket import WS_PATH, ExposeServerSend, websocket_endpoint

STATIC = Path(__file__).parent / "static"

Hook = Callable[[Service], Any]


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok", "websocket": request.app.state.websocket_path})


async def readyz(request: Request) -> Response:
    ready = service_of(request).broker.ready()
    return JSONResponse({"status": "ready" if ready else "broker unavailable"},
                        status_code=200 if ready else 503)


async def metrics_endpoint(request: Request) -> Response:
    return Response(metrics.render(service_of(request)), media_type=CONTENT_TYPE_LATEST)


async def index(request: Request) -> Response:
    return FileResponse(STATIC / "index.html")


def create_app(settings: Settings, *, on_start: Hook | None = None,
               service: Service | None = None,
               authenticate: AuthenticateHook | None = None) -> Starlette:
    """The jobwire ASGI app. `authenticate` is the application's own sign-in for requests
    without a jobwire token (else JOBWIRE_AUTHENTICATE's): see jobwire.auth.Credentials."""
    service = service or Service(settings, authenticate=authenticate)
    enabled = settings.transport_list

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await service.broker.start()
        task = on_start(service) if on_start is not None else None
        beats = asyncio.create_task(service.send_heartbeats())
        try:
            yield
        finally:
            service.shutdown_sessions()
            beats.cancel()
            if task is not None:
                task.cancel()
            await service.broker.stop()
            if service.sessions_store is not None:
                await service.sessions_store.close()

    routes: list[Any] = [
        Route("/", index),
        Route("/healthz", healthz),
        Route("/readyz", readyz),
        Route("/metrics", metrics_endpoint),
        Route("/openapi.json", openapi.endpoint),
        Route("/api/v2/jobs/status", publish.publish_batch, methods=["POST"]),
        Route("/api/v2/jobs/{job_id}/status", publish.publish_one, methods=["POST"]),
    ]
    # Fixed paths before /api/v2/jobs/{job_id}, which would otherwise match them.
    if "sse" in enabled:
        routes.append(Route("/api/v2/jobs/stream", sse.stream, methods=["GET"]))
    if "longpoll" in enabled:
        routes.append(Route("/api/v2/jobs/poll", longpoll.long_poll, methods=["GET"]))
    if "poll" in enabled:
        routes += [Route("/api/v2/jobs/status", poll.jobs_status, methods=["GET"]),
                   Route("/api/v2/jobs/{job_id}", poll.job_status, methods=["GET"])]
    if "websocket" in enabled:
        routes.append(WebSocketRoute(WS_PATH, websocket_endpoint))
    routes.append(Mount("/static", StaticFiles(directory=STATIC), name="static"))

    middleware = [Middleware(ExposeServerSend)]
    if settings.origin_list:
        # Cross-origin HTTP only for the configured origins; none configured: same origin only.
        middleware.append(Middleware(
            CORSMiddleware, allow_origins=list(settings.origin_list), allow_credentials=True,
            allow_methods=["GET", "POST"], expose_headers=["ETag", "Retry-After"],
            allow_headers=["Authorization", "Content-Type", "If-None-Match", "Last-Event-ID"]))
    app = JobwireApp(routes=routes, lifespan=lifespan, middleware=middleware,
                     exception_handlers={JobwireError: jobwire_error_handler,
                                         HTTPException: http_error_handler})
    app.state.service = service
    app.state.ws_flusher = Flusher()
    app.state.websocket_path = "asgi"  # until websocket_server_protocol chooses the fast path
    app.direct_websockets = "websocket" in enabled
    return app


def websocket_server_protocol(app: Starlette) -> Any:
    """uvicorn's `ws` setting for serving `app`: the fast path when it is on and this uvicorn
    passes its check (transports/uvicorn_fast_path.py), else uvicorn's standard WebSockets.
    Runs the check and logs the outcome once; /healthz reports the path."""
    ws, fast = websocket_protocol(app.state.service.settings.ws_fast_path == "on")
    app.state.websocket_path = "fast" if fast else "asgi"
    return ws


class JobwireApp(Starlette):
    """Starlette, with WebSocket connections to /ws/jobs handed straight to their endpoint.
    A connection's task awaits through every layer it entered for as long as it is open:
    the middleware stack and router are eight suspended frames, about 4 KiB per idle
    connection, and none of them does anything for this route (the endpoint handles its own
    errors; CORS does not apply to WebSockets)."""

    direct_websockets = False

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if (scope["type"] == "websocket" and self.direct_websockets
                and scope["path"] == WS_PATH and not scope.get("root_path")):
            scope["app"] = self
            scope["jobwire.server_send"] = send
            await websocket_endpoint(WebSocket(scope, receive, send))
            return
        await super().__call__(scope, receive, send)
