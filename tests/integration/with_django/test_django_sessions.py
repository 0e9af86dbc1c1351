"""jobwire inside the Django site, signed in by the Django session cookie: every transport,
users kept apart, staff as admin, foreign Origins refused, sessions that end, `jobwire serve`
beside the site, and the router's prefix."""

from __future__ import annotations

import asyncio
import os
import secrets
from datetime import timedelta
from typing import Any

import httpx
import orjson
import pytest
import websockets

from tests.conftest import (
    WAIT,
    start_server,
)
from tests.integration.with_django.site import (
    EXAMPLE,
    ROOT,
    Site,
    login,
    publish,
    session_of,
    ws_connect,
)

# --- signed in by the Django session cookie, on every transport ----------------------------

async def test_session_cookie_signs_in_on_every_transport_and_isolates_users(site):
    alice, bob = site.uid("alice"), site.uid("bob")
    job = "dj-" + secrets.token_hex(4)
    await publish(site, job, alice, progress=40, currentOperation="page 2/5")
    async with login(site, "alice") as http, login(site, "bob") as other:
        session = http.cookies["sessionid"]

        # WebSocket: the handshake's cookie signs it in at once, no in-band auth.
        client = await ws_connect(site, session)
        hello = await client.recv()
        assert hello["type"] == "authenticated" and hello["userId"] == alice
        assert hello["role"] == "user"
        subscribed = await client.subscribe(jobIds=[job])
        assert [j["progress"] for j in subscribed["jobs"]] == [40]
        await publish(site, job, alice, progress=60)
        live = await client.recv_until(lambda m: m.get("progress") == 60)
        assert live[-1]["jobId"] == job

        # SSE: the stream opens with the snapshot.
        async with http.stream("GET", "/realtime/api/v2/jobs/stream",
                               params={"jobIds": job}, headers={"Origin": site.url}) as stream:
            assert stream.status_code == 200
            first = await _first_sse_data(stream, "subscribed")
        assert first["jobs"][0]["jobId"] == job and first["jobs"][0]["userId"] == alice

        # Long-poll: the current state at once without last_seen, then a live event.
        polled = (await http.get("/realtime/api/v2/jobs/poll", params={"jobIds": job})).json()
        assert [j["progress"] for j in polled["jobs"]] == [60]
        waiting = asyncio.create_task(http.get("/realtime/api/v2/jobs/poll", params={
            "jobIds": job, "last_seen": polled["cursor"], "timeout": 3 * WAIT}))
        await publish(site, job, alice, "completed", result={"pages": 5})
        events = (await waiting).json()["events"]
        assert [e["status"] for e in events] == ["completed"]

        # Poll.
        state = await http.get(f"/realtime/api/v2/jobs/{job}")
        assert state.status_code == 200 and state.json()["status"] == "completed"

        # Bob, signed in too, sees nothing of it on any transport.
        assert (await other.get(f"/realtime/api/v2/jobs/{job}")).status_code == 404
        visible = (await other.get("/realtime/api/v2/jobs/status")).json()["jobs"]
        assert job not in [j["jobId"] for j in visible]
        assert all(j["userId"] == bob for j in visible)  # his own (other tests'), if any
        spy = await ws_connect(site, other.cookies["sessionid"])
        assert (await spy.recv())["userId"] == bob
        await spy.send({"type": "subscribe", "jobIds": [job]})
        answers = await spy.recv_until(lambda m: m["type"] == "subscribed")
        refused = answers[0]
        assert (refused["type"], refused["code"], refused["jobId"]) == ("error", "forbidden", job)
        assert answers[-1]["jobIds"] == []
        everything = await spy.subscribe(all=True)
        assert everything["all"] is True
        assert all(j["userId"] == bob for j in everything["jobs"])
        await spy.close()
        await client.close()

    # No cookie: nobody.
    async with httpx.AsyncClient(base_url=site.url, timeout=WAIT) as anonymous:
        assert (await anonymous.get(f"/realtime/api/v2/jobs/{job}")).status_code == 401


async def _first_sse_data(stream: httpx.Response, kind: str) -> dict[str, Any]:
    async with asyncio.timeout(WAIT):
        async for line in stream.aiter_lines():
            if line.startswith("data: "):
                message = orjson.loads(line[6:])
                if message.get("type") == kind:
                    return message
    raise AssertionError(f"the stream ended before a {kind} message")


async def test_staff_session_is_admin_and_sees_every_job(site):
    job = "dj-" + secrets.token_hex(4)
    await publish(site, job, site.uid("alice"))
    async with login(site, "carol") as http:
        client = await ws_connect(site, http.cookies["sessionid"])
        hello = await client.recv()
        assert (hello["userId"], hello["role"]) == (site.uid("carol"), "admin")
        assert job in [j["jobId"] for j in (await client.subscribe(jobIds=[job]))["jobs"]]
        await client.close()
        # Admin or not, a session only reads: publishing takes a publisher token.
        answer = await http.post(f"/realtime/api/v2/jobs/{job}/status",
                                 json={"userId": site.uid("alice"), "status": "cancelled"})
        assert answer.status_code == 401


async def test_cookie_from_a_foreign_origin_is_refused(site):
    async with login(site, "alice") as http:
        client = await ws_connect(site, http.cookies["sessionid"], origin="https://evil.example")
        assert await client.expect_close() == 1008
        answer = await http.get("/realtime/api/v2/jobs/stream",
                                headers={"Origin": "https://evil.example"})
        assert answer.status_code == 403
        # The same cookie from the site's own pages works.
        client = await ws_connect(site, http.cookies["sessionid"])
        assert (await client.recv())["type"] == "authenticated"
        await client.close()


# --- sessions that end ----------------------------------------------------------------------

async def test_logged_out_expired_and_password_changed_sessions_are_refused(site):
    from asgiref.sync import sync_to_async
    from django.contrib.sessions.models import Session
    from django.utils import timezone

    def expire(session: str, seconds: float) -> Any:
        return sync_to_async(Session.objects.filter(session_key=session).update)(
            expire_date=timezone.now() + timedelta(seconds=seconds))

    # Signed out with Django's logout view.
    async with login(site, "alice") as http:
        logged_out = http.cookies["sessionid"]
        assert (await http.get("/realtime/api/v2/jobs/status")).status_code == 200
        answer = await http.post("/accounts/logout/",
                                 data={"csrfmiddlewaretoken": http.cookies["csrftoken"]})
        assert answer.status_code == 302
    # Expired: the session row says so.
    expired = await session_of(site, "alice")
    await expire(expired, -1)
    # A password change ends the sessions signed in before it (the session auth hash).
    changed = await session_of(site, "dave")
    dave = site.users["dave"]
    dave.set_password("another-password-2")
    await sync_to_async(dave.save)()
    # An inactive user is refused, whatever the session says.
    inactive = await session_of(site, "bob")
    bob = site.users["bob"]
    bob.is_active = False
    await sync_to_async(bob.save)()
    # The session's expiry ends an open WebSocket with 4401.
    ending = await session_of(site, "alice")
    await expire(ending, 1.5)
    client = await ws_connect(site, ending)
    assert (await client.recv())["type"] == "authenticated"
    try:
        # Each refusal waits out the 1 s auth timeout on its WebSocket: all at once.
        await asyncio.gather(*(_refused(site, s) for s in (logged_out, expired, changed,
                                                             inactive)))
        assert await client.expect_close(timeout=3 * WAIT) == 4401
    finally:
        bob.is_active = True
        await sync_to_async(bob.save)()


async def _refused(site: Site, session: str) -> None:
    """A session cookie opens neither a poll nor a WebSocket."""
    async with httpx.AsyncClient(base_url=site.url, timeout=WAIT,
                                 cookies={"sessionid": session}) as http:
        assert (await http.get("/realtime/api/v2/jobs/status")).status_code == 401
        assert (await http.get("/realtime/api/v2/jobs/poll")).status_code == 401
    client = await ws_connect(site, session)
    assert await client.expect_close(timeout=3 * WAIT) == 4401  # after the 1 s auth timeout


async def test_jobwire_serve_beside_the_site_signs_in_with_its_sessions(site):
    """The hook outside the Django process: `jobwire serve` with JOBWIRE_AUTHENTICATE, the
    site's settings and database, and the same Redis."""
    env = {**site.env, "PYTHONPATH": os.pathsep.join([str(EXAMPLE), str(ROOT)])}
    server = start_server(secret=site.secret, redis_url=env["REDIS_URL"], env=env,
                          authenticate="jobwire.integrations.django.auth:authenticate")
    try:
        job = "dj-" + secrets.token_hex(4)
        await publish(site, job, site.uid("alice"), progress=10)  # through the site's jobwire
        session = await session_of(site, "alice")
        async with httpx.AsyncClient(base_url=server.url, timeout=WAIT,
                                     cookies={"sessionid": session}) as http:
            answer = await http.get(f"/api/v2/jobs/{job}")
            assert answer.status_code == 200 and answer.json()["progress"] == 10
            http.cookies.clear()
            assert (await http.get(f"/api/v2/jobs/{job}")).status_code == 401
    finally:
        server.stop()


async def test_router_serves_jobwire_under_its_prefix_only(site):
    async with httpx.AsyncClient(base_url=site.url, timeout=WAIT) as http:
        bare = await http.get("/realtime?x=1")
        assert (bare.status_code, bare.headers["location"]) == (307, "/realtime/?x=1")
        script = await http.get("/realtime/static/jobwire.js")
        assert script.status_code == 200 and "Jobwire" in script.text
        assert (await http.get("/realtimeX/healthz")).status_code == 404  # Django's
    with pytest.raises(websockets.InvalidStatus) as refused:  # Django has no WebSockets
        await websockets.connect(site.url.replace("http", "ws", 1) + "/ws/jobs",
                                 open_timeout=WAIT)
    assert refused.value.response.status_code == 403
