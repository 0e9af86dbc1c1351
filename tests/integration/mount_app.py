"""Host applications with jobwire mounted at /realtime, served by uvicorn in the tests:
`MOUNT_HOST=fastapi` (FastAPI(lifespan=realtime.lifespan)), `starlette` (the host's own
lifespan around `realtime.running()`), `unstarted` (mounted, never started). The secret comes
from JOBWIRE_SECRET, as for `jobwire serve`."""

from __future__ import annotations

import contextlib
import os

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from starlette.applications import Starlette
from starlette.routing import Mount

from jobwire.asgi import Jobwire
from jobwire.errors import JobwireError

realtime = Jobwire(heartbeat_seconds=30)
HOST = os.environ.get("MOUNT_HOST", "fastapi")


def fastapi_host() -> FastAPI:
    host = FastAPI(lifespan=realtime.lifespan)

    @host.get("/hello")
    async def hello() -> dict[str, str]:
        return {"hello": "from the host"}

    @host.post("/work/{job_id}")
    async def work(job_id: str, user: str, status: str, progress: float | None = None):
        """A handler of the host app updating a job in-process: no HTTP hop to jobwire."""
        try:
            return await realtime.publish(job_id, user, status, progress=progress,
                                          current_operation=f"step {progress}")
        except JobwireError as exc:
            return JSONResponse(exc.to_body(), status_code=exc.http_status)

    host.mount("/realtime", realtime)
    return host


@contextlib.asynccontextmanager
async def own_lifespan(app: Starlette):
    async with realtime.running():
        yield


if HOST == "fastapi":
    app = fastapi_host()
elif HOST == "starlette":
    app = Starlette(routes=[Mount("/realtime", app=realtime)], lifespan=own_lifespan)
else:
    app = Starlette(routes=[Mount("/realtime", app=realtime)])
