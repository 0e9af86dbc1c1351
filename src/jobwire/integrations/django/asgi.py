"""jobwire inside Django's own ASGI application: one process, one port, one origin.

    # mysite/asgi.py
    import os
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mysite.settings")
    from jobwire.integrations.django.asgi import get_asgi_application
    application = get_asgi_application()

    uvicorn mysite.asgi:application        # or hypercorn, granian: any server with lifespan

Requests under JOBWIRE_PREFIX (`/realtime/`) go to jobwire, which signs them in by the Django
session cookie (`auth.authenticate`); everything else goes to Django. The ASGI lifespan starts
and stops jobwire (Django itself has no lifespan). On one origin the browser's Origin matches
the Host, so cookie sign-ins pass jobwire's cross-site check without configuration; a page on
another origin needs `JOBWIRE_OPTIONS = {"allowed_origins": "https://…"}`.
"""

from __future__ import annotations

from typing import Any

from ...asgi import Jobwire
from . import conf

__all__ = ["JobwireRouter", "get_asgi_application"]


def get_asgi_application(django_app: Any = None, **options: Any) -> JobwireRouter:
    """Django's ASGI application (default: `django.core.asgi.get_asgi_application()`, which
    also sets Django up) with jobwire at JOBWIRE_PREFIX. `options` are keyword settings of
    the mounted `Jobwire`, over JOBWIRE_OPTIONS and the JOBWIRE_SECRET setting."""
    if django_app is None:
        from django.core.asgi import get_asgi_application as django_asgi

        django_app = django_asgi()
    from .auth import authenticate  # needs the app registry, ready only now

    settings = {**conf.options(), **options}
    if conf.secret() and "secret" not in settings:
        settings["secret"] = conf.secret()
    realtime = Jobwire(authenticate=authenticate, **settings)
    return JobwireRouter(django_app, realtime, conf.prefix())


class JobwireRouter:
    """`prefix` and below → `realtime`, the rest → `django_app`; the lifespan → `realtime`."""

    def __init__(self, django_app: Any, realtime: Jobwire, prefix: str = conf.DEFAULT_PREFIX):
        self.django_app = django_app
        self.realtime = realtime
        self.prefix = prefix.rstrip("/")

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            await self._lifespan(receive, send)
            return
        root_path = scope.get("root_path", "")
        path = scope["path"]
        # Servers put root_path in front of path (the ASGI convention Starlette follows).
        route = path[len(root_path):] if root_path and path.startswith(root_path) else path
        if route == self.prefix and kind == "http":
            await _redirect(scope, send, root_path + self.prefix + "/")  # the dashboard
        elif route.startswith(self.prefix + "/"):
            # As a Starlette Mount would call it: jobwire's routes see the rest of the path.
            await self.realtime({**scope, "root_path": root_path + self.prefix}, receive, send)
        elif kind == "http":
            await self.django_app(scope, receive, send)
        elif kind == "websocket":
            # Django answers HTTP only: refuse the handshake rather than fail in it.
            await send({"type": "websocket.close", "code": 1000})
        else:
            raise ValueError(f"unsupported ASGI scope type {kind!r}")

    async def _lifespan(self, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.realtime.start()
                except Exception as exc:  # reported to the server, which then exits
                    await send({"type": "lifespan.startup.failed",
                                "message": f"jobwire did not start: {exc}"})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                try:
                    await self.realtime.stop()
                except Exception as exc:
                    await send({"type": "lifespan.shutdown.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.shutdown.complete"})
                return


async def _redirect(scope: Any, send: Any, location: str) -> None:
    query = scope.get("query_string", b"")
    target = location.encode() + (b"?" + query if query else b"")
    await send({"type": "http.response.start", "status": 307,
                "headers": [(b"location", target), (b"content-length", b"0")]})
    await send({"type": "http.response.body", "body": b""})
