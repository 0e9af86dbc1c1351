"""On a server whose WebSocket connections cannot be written to directly (here uvicorn's
legacy `websockets` implementation), messages go out through plain ASGI sends, and closes
still carry their codes. The app runs in this test's own event loop."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator

import httpx
import orjson
import pytest
import uvicorn
import websockets

from jobwire.app import create_app
from jobwire.auth import JwtAuth
from jobwire.config import Settings
from tests.conftest import WAIT, eventually, free_port

# Being phased out by uvicorn, which is why it serves here: it is not websockets-sansio.
pytestmark = pytest.mark.filterwarnings("ignore:The `websockets` implementation is deprecated")


@contextlib.asynccontextmanager
async def legacy_server() -> AsyncIterator[tuple[str, JwtAuth]]:
    secret, port = secrets.token_urlsafe(32), free_port()
    app = create_app(Settings.load({}, {"secret": secret, "port": port}))
    config = uvicorn.Config(app, host="127.0.0.1", port=port, ws="websockets",
                            ws_per_message_deflate=False, log_level="warning")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        await eventually(lambda: server.started)  # uvicorn offers no event for "listening"
        yield f"127.0.0.1:{port}", JwtAuth(secret=secret)
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, WAIT)


async def receive(ws: websockets.ClientConnection) -> dict:
    return orjson.loads(await asyncio.wait_for(ws.recv(), WAIT))


async def test_events_are_delivered_through_asgi_sends():
    async with legacy_server() as (host, auth):
        token = auth.mint("ann", "user")
        async with websockets.connect(f"ws://{host}/ws/jobs?token={token}") as ws:
            assert (await receive(ws))["type"] == "authenticated"
            await ws.send(orjson.dumps({"type": "subscribe", "all": True}).decode())
            assert (await receive(ws))["type"] == "subscribed"
            async with httpx.AsyncClient(base_url=f"http://{host}", timeout=WAIT) as http:
                headers = {"Authorization": f"Bearer {auth.mint('w', 'publisher')}"}
                for progress in (10, 100):
                    status = "processing" if progress < 100 else "completed"
                    r = await http.post("/api/v2/jobs/j1/status", headers=headers,
                                        json={"userId": "ann", "status": status,
                                              "progress": progress})
                    assert r.status_code == 202, r.text
            first, last = await receive(ws), await receive(ws)
            assert (first["seq"], first["progress"]) == (1, 10)
            assert (last["type"], last["seq"]) == ("job_completed", 2)


async def test_an_expiring_token_still_closes_with_4401():
    async with legacy_server() as (host, auth):
        token = auth.mint("ann", "user", ttl=1)
        async with websockets.connect(f"ws://{host}/ws/jobs?token={token}") as ws:
            assert (await receive(ws))["type"] == "authenticated"
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await asyncio.wait_for(ws.recv(), WAIT)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401
