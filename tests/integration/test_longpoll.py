"""HTTP long-polling: immediate, parked, timed out, batched, by time, isolated, at scale."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from tests.conftest import WAIT, publish, start_server, wait_for_sessions

POLL = "/api/v2/jobs/poll"


@pytest.fixture
async def http(server):
    async with httpx.AsyncClient(base_url=server.url, timeout=3 * WAIT) as client:
        yield client


async def test_without_last_seen_answers_the_snapshot_at_once(http, server, uid):
    user = f"{uid}-u"
    ack = await publish(server, f"{uid}-j", user, "processing", progress=3)
    r = await http.get(POLL, headers=server.headers(user))
    body = r.json()
    assert r.status_code == 200 and body["events"] == []
    assert [(j["jobId"], j["id"]) for j in body["jobs"]] == [(f"{uid}-j", ack["id"])]
    assert not body["cursor"].isdigit()


async def test_pending_events_answer_immediately(http, server, uid):
    user = f"{uid}-u"
    first = await publish(server, f"{uid}-j", user, "queued")
    second = await publish(server, f"{uid}-j", user, "processing", progress=1)
    started = time.monotonic()
    r = await http.get(POLL, headers=server.headers(user),
                       params={"last_seen": first["id"], "timeout": 30})
    assert time.monotonic() - started < 1
    body = r.json()
    assert [e["id"] for e in body["events"]] == [second["id"]] and body["cursor"] == second["id"]


async def test_parked_poll_answers_on_the_next_event(server, uid):
    srv = start_server()  # a private server, so the session count is this test's alone
    try:
        user = f"{uid}-u"
        first = await publish(srv, f"{uid}-j", user, "queued")
        async with httpx.AsyncClient(base_url=srv.url, timeout=3 * WAIT) as http:
            poll = asyncio.create_task(http.get(POLL, headers=srv.headers(user),
                                                params={"last_seen": first["id"],
                                                        "timeout": 30}))
            await wait_for_sessions(srv, "longpoll", 1)
            started = time.monotonic()
            ack = await publish(srv, f"{uid}-j", user, "processing", progress=7)
            body = (await asyncio.wait_for(poll, WAIT)).json()
            assert time.monotonic() - started < 1  # well inside the 30 s timeout
            assert [e["id"] for e in body["events"]] == [ack["id"]]
        await wait_for_sessions(srv, "longpoll", 0)
    finally:
        srv.stop()


async def test_timeout_answers_empty_with_the_cursor_unchanged(http, server, uid):
    user = f"{uid}-u"
    first = await publish(server, f"{uid}-j", user, "queued")
    started = time.monotonic()
    r = await http.get(POLL, headers=server.headers(user),
                       params={"last_seen": first["id"], "timeout": 0.3})
    assert 0.3 <= time.monotonic() - started < 0.3 + WAIT
    assert r.json() == {"events": [], "cursor": first["id"]}


async def test_a_burst_comes_back_as_one_answer(http, server, uid):
    user = f"{uid}-u"
    first = await publish(server, f"{uid}-a", user, "queued")
    poll = asyncio.create_task(http.get(POLL, headers=server.headers(user),
                                        params={"last_seen": first["id"], "timeout": 10}))
    await wait_for_sessions(server, "longpoll", 1)
    batch = [{"jobId": f"{uid}-b{i}", "userId": user, "status": "queued"} for i in range(5)]
    await http.post("/api/v2/jobs/status", json=batch, headers=server.headers("w", "publisher"))
    body = (await asyncio.wait_for(poll, WAIT)).json()
    assert [e["jobId"] for e in body["events"]] == [f"{uid}-b{i}" for i in range(5)]
    assert body["cursor"] == body["events"][-1]["id"]


@pytest.mark.parametrize("unit", ["s", "ms"])
async def test_last_seen_as_unix_time(http, server, uid, unit):
    user = f"{uid}-u"
    await publish(server, f"{uid}-old", user, "queued")
    await asyncio.sleep(0.01)
    boundary_ms = int(time.time() * 1000)
    await asyncio.sleep(0.01)
    new = await publish(server, f"{uid}-new", user, "queued")
    value = str(boundary_ms) if unit == "ms" else f"{boundary_ms // 1000}"
    r = await http.get(POLL, headers=server.headers(user),
                       params={"last_seen": value, "timeout": 0})
    ids = [e["id"] for e in r.json()["events"]]
    assert new["id"] in ids
    if unit == "ms":
        assert [e["jobId"] for e in r.json()["events"]] == [f"{uid}-new"]


async def test_isolation_and_refused_job_ids(http, server, uid):
    alice, bob = f"{uid}-alice", f"{uid}-bob"
    bobs = await publish(server, f"{uid}-bobs", bob, "queued")
    await publish(server, f"{uid}-bobs", bob, "processing", progress=1)
    r = await http.get(POLL, headers=server.headers(alice),
                       params={"last_seen": bobs["id"], "timeout": 0.2,
                               "jobIds": f"{uid}-bobs"})
    body = r.json()
    assert body["events"] == []
    assert body["errors"] == [{"type": "error", "code": "forbidden", "message": "not your job",
                               "jobId": f"{uid}-bobs"}]
    # By `all` (no jobIds) alice's poll sees her own events and none of bob's.
    await publish(server, f"{uid}-mine", alice, "queued")
    r = await http.get(POLL, headers=server.headers(alice),
                       params={"last_seen": "0-0", "timeout": 0})
    assert [e["jobId"] for e in r.json()["events"]] == [f"{uid}-mine"]


async def test_bad_requests(http, server):
    user = server.headers("u")
    cases = [({"timeout": "soon"}, "timeout"), ({"timeout": "-1"}, "timeout"),
             ({"timeout": "nan"}, "timeout"), ({"last_seen": "yesterday"}, "last_seen"),
             ({"jobIds": "ok,not ok"}, "jobIds")]
    for params, field in cases:
        r = await http.get(POLL, headers=user, params=params)
        assert r.status_code == 400 and r.json()["error"]["field"] == field
    assert (await http.get(POLL)).status_code == 401
    assert (await http.get(POLL, headers=server.headers("w", "publisher"))).status_code == 403


async def test_expired_cursor_answers_error_and_snapshot():
    srv = start_server(history_size=2)
    try:
        first = await publish(srv, "j0", "u", "queued")
        for i in range(1, 4):
            await publish(srv, f"j{i}", "u", "queued")
        async with httpx.AsyncClient(base_url=srv.url, timeout=WAIT) as http:
            body = (await http.get(POLL, headers=srv.headers("u"),
                                   params={"last_seen": first["id"]})).json()
        assert body["error"]["code"] == "cursor_expired"
        assert body["events"] == [] and len(body["jobs"]) == 4 and body["cursor"] != first["id"]
    finally:
        srv.stop()


async def test_500_parked_polls_all_answer_on_the_next_event(uid):
    srv = start_server()
    try:
        user = f"{uid}-u"
        first = await publish(srv, f"{uid}-j", user, "queued")
        limits = httpx.Limits(max_connections=600, max_keepalive_connections=600)
        async with httpx.AsyncClient(base_url=srv.url, timeout=6 * WAIT, limits=limits) as http:
            # Five admins (at most 100 waiting long-polls each, by default) watching all jobs.
            watchers = [srv.headers(f"{uid}-admin{i}", "admin") for i in range(5)]
            polls = [asyncio.create_task(http.get(POLL, headers=watchers[n % 5], params={
                "last_seen": first["id"], "timeout": 60})) for n in range(500)]
            await wait_for_sessions(srv, "longpoll", 500, timeout=6 * WAIT)
            ack = await publish(srv, f"{uid}-j", user, "processing", progress=1)
            answers = await asyncio.wait_for(asyncio.gather(*polls), 6 * WAIT)
        assert all([e["id"] for e in a.json()["events"]] == [ack["id"]] for a in answers)
    finally:
        srv.stop()


async def test_sigterm_answers_waiting_polls():
    srv = start_server()
    first = await publish(srv, "j", "u", "queued")
    async with httpx.AsyncClient(base_url=srv.url, timeout=3 * WAIT) as http:
        poll = asyncio.create_task(http.get(POLL, headers=srv.headers("u"),
                                            params={"last_seen": first["id"], "timeout": 60}))
        await wait_for_sessions(srv, "longpoll", 1)
        srv.process.terminate()
        r = await asyncio.wait_for(poll, WAIT)
    assert r.status_code == 200 and r.json() == {"events": [], "cursor": first["id"]}
    srv.process.wait(WAIT)
