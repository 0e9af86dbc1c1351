"""App sessions kept in Redis authenticate like tokens, on every transport."""

from __future__ import annotations

import httpx
import orjson
import pytest
import redis
import websockets
from httpx_sse import aconnect_sse

from tests.conftest import WAIT, Client, publish, start_redis, start_server


@pytest.fixture(scope="module")
def app():
    store = start_redis()
    server = start_server(redis_url=store.url, session_prefix="app:session:")
    r = redis.Redis(port=store.port)
    r.set("app:session:s-alice", orjson.dumps({"userId": "alice", "role": "user"}), ex=60)
    r.set("app:session:s-admin", orjson.dumps({"userId": "root", "role": "admin"}))
    r.set("app:session:s-short", orjson.dumps({"userId": "alice"}), px=1500)
    r.set("app:session:s-bad", b"{not json")
    r.set("app:session:s-role", orjson.dumps({"userId": "x", "role": "superuser"}))
    yield server
    r.close()
    server.stop()
    store.stop()


async def test_session_id_as_bearer_query_and_cookie(app):
    await publish(app, "sj", "alice", "queued")
    async with httpx.AsyncClient(base_url=app.url, timeout=WAIT) as http:
        for kwargs in ({"headers": {"Authorization": "Bearer s-alice"}},
                       {"params": {"token": "s-alice"}},
                       {"headers": {"Cookie": "sessionid=s-alice"}}):
            r = await http.get("/api/v2/jobs/sj", **kwargs)
            assert r.status_code == 200 and r.json()["userId"] == "alice"
        r = await http.get("/api/v2/jobs/status", headers={"Authorization": "Bearer s-admin"})
        assert any(j["jobId"] == "sj" for j in r.json()["jobs"])
        async with aconnect_sse(http, "GET", "/api/v2/jobs/stream",
                                params={"token": "s-alice"}) as sse:
            first = orjson.loads((await anext(sse.aiter_sse())).data)
            assert first["type"] == "subscribed"


@pytest.mark.parametrize("session", ["s-nobody", "s-bad", "s-role", "x" * 600])
async def test_unknown_or_broken_sessions_are_refused(app, session):
    async with httpx.AsyncClient(base_url=app.url, timeout=WAIT) as http:
        r = await http.get("/api/v2/jobs/status", headers={"Authorization": f"Bearer {session}"})
        assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"
    ws = await websockets.connect(f"{app.ws_url}?token={session}", open_timeout=WAIT)
    assert await Client(ws).expect_close() == 4401


async def test_websocket_by_session_cookie_and_session_expiry(app):
    ws = await websockets.connect(app.ws_url, open_timeout=WAIT, origin=app.url,
                                  additional_headers={"Cookie": "sessionid=s-short"})
    client = Client(ws)
    assert (await client.recv())["userId"] == "alice"
    await client.subscribe(all=True)
    assert await client.expect_close(timeout=3 * WAIT) == 4401  # the session's TTL ran out
    foreign = await websockets.connect(app.ws_url, open_timeout=WAIT,
                                       origin="http://evil.example",
                                       additional_headers={"Cookie": "sessionid=s-alice"})
    assert await Client(foreign).expect_close() == 1008
