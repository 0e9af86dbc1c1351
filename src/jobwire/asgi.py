"""jobwire inside another ASGI application: mounted under a prefix in FastAPI or Starlette,
started and stopped with the host app, publishing from the host's own code without an HTTP hop.

    realtime = Jobwire(secret=SECRET, authenticate=current_user)
    app = FastAPI(lifespan=realtime.lifespan)      # or `async with realtime.running():` in yours
    app.mount("/realtime", realtime)
    await realtime.publish("job_1", "42", "processing", progress=45)

Starlette sends lifespan events to the outermost app only, never to a mounted one: the host
must start jobwire, which is what `lifespan`, `running()` and `start()`/`stop()` are for. Until
then every request answers 503."""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator, Mapping
from typing import Any

from .app import create_app
from .auth import AuthenticateHook
from .config import Settings
from .errors import BrokerUnavailable
from .publisher import BrokerPublisher
from .service import Service
from .tokens import Tokens

__all__ = ["Jobwire"]

NOT_STARTED = (b'{"error":{"code":"unavailable","message":"jobwire is not started: use '
               b'Jobwire.lifespan, running() or start() in the host application"}}')


class Jobwire:
    def __init__(self, settings: Settings | None = None, *,
                 authenticate: AuthenticateHook | None = None,
                 env: Mapping[str, str] | None = None, **overrides: Any):
        """`settings`, or the JOBWIRE_* variables of `env` (default: the process environment)
        with keyword overrides on top: `Jobwire(secret=..., redis_url=...)`."""
        if settings is None:
            settings = Settings.load(os.environ if env is None else env, overrides)
        elif overrides:
            raise TypeError("pass settings or keyword settings, not both")
        self.settings = settings
        self.app = create_app(settings, authenticate=authenticate)
        self.service: Service = self.app.state.service
        self.tokens = Tokens.from_settings(settings)
        self.publisher = BrokerPublisher(self.service.broker)
        self._running: contextlib.AbstractAsyncContextManager[Any] | None = None

    @property
    def started(self) -> bool:
        return self._running is not None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":  # served on its own, not mounted
            await self.app(scope, receive, send)
            return
        if self._running is None:
            await _refuse(scope, send)
            return
        await self.app(scope, receive, send)

    async def start(self) -> None:
        """Connect the broker and start heartbeats. Once; a second call is an error."""
        if self._running is not None:
            raise RuntimeError("jobwire is already started")
        running = self.app.router.lifespan_context(self.app)
        await running.__aenter__()
        self._running = running

    async def stop(self) -> None:
        """End every connection (clients resume elsewhere) and disconnect the broker."""
        running, self._running = self._running, None
        if running is not None:
            await running.__aexit__(None, None, None)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[Jobwire]:
        await self.start()
        try:
            yield self
        finally:
            await self.stop()

    @contextlib.asynccontextmanager
    async def lifespan(self, app: Any) -> AsyncIterator[None]:
        """For `FastAPI(lifespan=realtime.lifespan)` or `Starlette(lifespan=...)`. Yields
        nothing: a value would become the host's lifespan state."""
        async with self.running():
            yield

    async def publish(self, job_id: str, user_id: str, status: str,
                      progress: float | None = None, current_operation: str | None = None,
                      **extra: Any) -> dict[str, Any]:
        """One update, validated and committed like an HTTP publish: returns
        {"jobId", "id", "seq"}; raises the same jobwire.errors for bad input or a refused
        transition (InvalidUpdate, Conflict, ...)."""
        if self._running is None:
            raise BrokerUnavailable("jobwire is not started")
        return await self.publisher.update(job_id, user_id, status, progress,
                                           current_operation, **extra)


async def _refuse(scope: Any, send: Any) -> None:
    if scope["type"] == "websocket":
        await send({"type": "websocket.close", "code": 1013, "reason": "not started"})
        return
    await send({"type": "http.response.start", "status": 503,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(NOT_STARTED)).encode())]})
    await send({"type": "http.response.body", "body": NOT_STARTED})
