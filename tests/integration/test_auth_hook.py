"""The application's authenticate hook (JOBWIRE_AUTHENTICATE) on every transport: who it
accepts, what it refuses, expiry on open connections, the Origin rule, and tokens beside it.
The hook is tests/integration/hook_app.py, loaded by a real `jobwire serve`, sync and async."""

from __future__ import annotations

import subprocess
import sys
import time

import httpx
import orjson
import pytest
import websockets
from httpx_sse import aconnect_sse

from tests.conftest import WAIT, Client, publish, start_server
from tests.integration.hook_app import expiring_in

FOREIGN = "http://evil.example"


@pytest.fixture(scope="module", params=["authenticate", "authenticate_async"])
def app(request):
    server = start_server(authenticate=f"tests.integration.hook_app:{request.param}",
                          auth_timeout_seconds=1)
    yield server
    server.stop()


def cookie(session: str) -> dict[str, str]:
    return {"Cookie": f"app_session={session}"}


async def open_ws(app, session: str | None, origin: str | None = None) -> Client:
    headers = cookie(session) if session else {}
    ws = await websockets.connect(app.ws_url, open_timeout=WAIT, origin=origin,
                                  additional_headers=headers)
    return Client(ws)


async def first_sse_message(http: httpx.AsyncClient, **kwargs) -> dict:
    async with aconnect_sse(http, "GET", "/api/v2/jobs/stream", **kwargs) as sse:
        assert sse.response.status_code == 200, await sse.response.aread()
        return orjson.loads((await anext(sse.aiter_sse())).data)


async def test_the_hook_signs_in_on_every_transport(app, uid):
    job = f"{uid}-job"
    ack = await publish(app, job, "alice", "queued")
    client = await open_ws(app, "s-alice")
    greeting = await client.recv()
    assert greeting == {"type": "authenticated", "userId": "alice", "role": "user",
                        "expiresAt": None}
    await client.subscribe(jobIds=[job])
    later = await publish(app, job, "alice", "processing", progress=20)  # not conflated
    events = await client.recv_until(lambda m: m.get("id") == later["id"])
    assert events[-1]["progress"] == 20
    await client.close()
    async with httpx.AsyncClient(base_url=app.url, timeout=WAIT, headers=cookie("s-alice")) \
            as http:
        # A page signed in by cookie learns who it is from each transport's snapshot.
        alice = {"userId": "alice", "role": "user", "expiresAt": None}
        subscribed = await first_sse_message(http, params={"jobIds": job})
        assert subscribed["type"] == "subscribed" and subscribed["principal"] == alice
        r = await http.get("/api/v2/jobs/poll", params={"jobIds": job})
        assert r.json()["principal"] == alice and r.json()["jobs"][0]["progress"] == 20
        r = await http.get("/api/v2/jobs/poll", params={"last_seen": ack["id"], "timeout": 5})
        assert r.status_code == 200 and [e["id"] for e in r.json()["events"]] == [later["id"]]
        r = await http.get("/api/v2/jobs/status", params={"jobIds": job})
        assert r.json()["principal"] == alice
        r = await http.get(f"/api/v2/jobs/{job}")
        assert r.status_code == 200 and r.json()["progress"] == 20


async def test_the_hook_is_told_the_transport(app, uid):
    """`only-sse` is a session the hook accepts on SSE alone."""
    async with httpx.AsyncClient(base_url=app.url, timeout=WAIT,
                                 headers=cookie("only-sse")) as http:
        assert (await first_sse_message(http))["type"] == "subscribed"
        for path in ("/api/v2/jobs/status", "/api/v2/jobs/poll?timeout=0"):
            r = await http.get(path)
            assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"
    async with httpx.AsyncClient(base_url=app.url, timeout=WAIT,
                                 headers=cookie("only-poll")) as http:
        assert (await http.get("/api/v2/jobs/status")).status_code == 200


async def test_users_see_their_own_jobs_and_admins_all(app, uid):
    job = f"{uid}-private"
    await publish(app, job, "alice", "queued")
    async with httpx.AsyncClient(base_url=app.url, timeout=WAIT) as http:
        r = await http.get(f"/api/v2/jobs/{job}", headers=cookie("s-bob"))
        assert r.status_code in (403, 404)
        r = await http.get("/api/v2/jobs/status", headers=cookie("s-bob"))
        assert r.status_code == 200 and job not in [j["jobId"] for j in r.json()["jobs"]]
        r = await http.get("/api/v2/jobs/status", headers=cookie("s-root"))
        assert job in [j["jobId"] for j in r.json()["jobs"]]
    admin = await open_ws(app, "s-root")
    assert (await admin.recv())["role"] == "admin"
    await admin.close()


@pytest.mark.parametrize(("session", "status", "message"), [
    (None, 401, "a token is required"),
    ("s-nobody", 401, "a token is required"),
    ("s-banned", 401, "banned"),
    ("s-badid", 401, "invalid hook user"),
    ("exp-1000", 401, "session expired"),
    ("s-boom", 503, "authentication is unavailable"),
    ("s-wrong", 503, "authentication is unavailable"),
])
async def test_refusals_over_http(app, session, status, message):
    headers = cookie(session) if session else {}
    async with httpx.AsyncClient(base_url=app.url, timeout=WAIT, headers=headers) as http:
        for method, path in (("GET", "/api/v2/jobs/status"), ("GET", "/api/v2/jobs/poll"),
                             ("GET", "/api/v2/jobs/stream"), ("GET", "/api/v2/jobs/any-job"),
                             ("POST", "/api/v2/jobs/any-job/status")):
            r = await http.request(method, path, json={"userId": "alice", "status": "queued"})
            assert (r.status_code, r.json()["error"]["message"]) == (status, message), path


@pytest.mark.parametrize(("session", "code", "reason"), [
    ("s-banned", 4401, "banned"),
    ("exp-1000", 4401, "session expired"),
    ("s-boom", 1013, "authentication is unavailable"),
])
async def test_refusals_over_websocket(app, session, code, reason):
    client = await open_ws(app, session)
    assert await client.expect_close() == code
    assert client.close_reason == reason


async def test_a_websocket_the_hook_does_not_know_may_still_send_a_token(app):
    client = await open_ws(app, "s-nobody")
    await client.send({"type": "auth", "token": app.token("carol")})
    assert (await client.recv())["userId"] == "carol"
    await client.close()
    silent = await open_ws(app, None)  # neither: the in-band auth times out (1 s here)
    assert await silent.expect_close(timeout=3 * WAIT) == 4401
    assert silent.close_reason == "authentication timed out"


async def test_the_hooks_expiry_ends_open_connections(app, uid):
    client = await open_ws(app, expiring_in(1.5))
    greeting = await client.recv()
    assert greeting["userId"] == "alice" and greeting["expiresAt"] > time.time()
    await client.subscribe(all=True)
    assert await client.expect_close(timeout=3 * WAIT) == 4401
    assert client.close_reason == "token expired"
    session = expiring_in(1.5)
    async with httpx.AsyncClient(base_url=app.url, timeout=3 * WAIT,
                                 headers=cookie(session)) as http:
        async with aconnect_sse(http, "GET", "/api/v2/jobs/stream") as sse:
            # The stream ends when the session does; the client's reconnect is then refused.
            messages = [orjson.loads(m.data) async for m in sse.aiter_sse() if m.data]
        assert messages[0]["type"] == "subscribed"
        r = await http.get("/api/v2/jobs/stream")
        assert (r.status_code, r.json()["error"]["message"]) == (401, "session expired")


async def test_a_foreign_origin_is_refused_for_what_the_hook_accepts(app, uid):
    client = await open_ws(app, "s-alice", origin=FOREIGN)
    assert await client.expect_close() == 1008
    assert client.close_reason == "origin not allowed"
    headers = {**cookie("s-alice"), "Origin": FOREIGN}
    async with httpx.AsyncClient(base_url=app.url, timeout=WAIT, headers=headers) as http:
        for method, path in (("GET", "/api/v2/jobs/stream"), ("GET", "/api/v2/jobs/poll"),
                             ("GET", "/api/v2/jobs/status"),
                             ("POST", f"/api/v2/jobs/{uid}/status")):
            r = await http.request(method, path, json={"userId": "alice", "status": "queued"})
            assert (r.status_code, r.json()["error"]["message"]) == (403, "origin not allowed")
    same_site = await open_ws(app, "s-alice", origin=app.url)
    assert (await same_site.recv())["userId"] == "alice"
    await same_site.close()
    # A token the page put in the header is not the browser's doing: no Origin rule.
    async with httpx.AsyncClient(base_url=app.url, timeout=WAIT) as http:
        r = await http.get("/api/v2/jobs/status",
                           headers={**app.headers("alice"), "Origin": FOREIGN})
        assert r.status_code == 200


async def test_tokens_work_beside_the_hook(app, uid):
    ack = await publish(app, f"{uid}-t", "dave", "queued")  # a publisher token
    async with httpx.AsyncClient(base_url=app.url, timeout=WAIT) as http:
        r = await http.get(f"/api/v2/jobs/{uid}-t", headers=app.headers("dave"))
        assert r.status_code == 200 and r.json()["id"] == ack["id"]
        # A bad JWT is judged as a token, not handed to the hook.
        r = await http.get("/api/v2/jobs/status", headers={**cookie("s-alice"),
                                                          "Authorization": "Bearer a.b.c"})
        assert (r.status_code, r.json()["error"]["message"]) == (401, "invalid token")


@pytest.mark.parametrize(("path", "complaint"), [
    ("tests.integration.hook_app", "use package.module:function"),
    ("tests.integration.no_such_module:fn", "cannot import"),
    ("tests.integration.hook_app:missing", "has no missing"),
    ("tests.integration.hook_app:FIXED", "is not callable"),
])
def test_a_bad_hook_path_stops_the_server_with_a_message(path, complaint):
    result = subprocess.run([sys.executable, "-m", "jobwire.cli", "serve", "--port", "0",
                             "--secret", "x" * 32, "--authenticate", path],
                            capture_output=True, text=True, timeout=3 * WAIT)
    assert result.returncode == 2
    assert complaint in result.stderr
