"""Server-Sent Events, parsed by independent clients (httpx-sse, and curl)."""

from __future__ import annotations

import asyncio
import subprocess

import httpx
import orjson
import pytest
from httpx_sse import aconnect_sse

from tests.conftest import WAIT, publish, start_server, wait_for_sessions

STREAM = "/api/v2/jobs/stream"


async def read_until(source, predicate, timeout=WAIT):
    """(sse, data) pairs up to and including the first whose data satisfies `predicate`."""
    out = []
    async with asyncio.timeout(timeout):
        async for sse in source:
            data = orjson.loads(sse.data)
            if data["type"] == "heartbeat":
                continue
            out.append((sse, data))
            if predicate(data):
                return out
    raise AssertionError("stream ended")


@pytest.fixture
async def http(server):
    async with httpx.AsyncClient(base_url=server.url, timeout=WAIT) as client:
        yield client


async def test_stream_frames_snapshot_then_events_with_ids(http, server, uid):
    user = f"{uid}-u"
    await publish(server, f"{uid}-a", user, "processing", progress=5)
    async with aconnect_sse(http, "GET", STREAM, headers=server.headers(user)) as source:
        r = source.response
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        assert r.headers["cache-control"] == "no-cache"
        assert r.headers["x-accel-buffering"] == "no"
        events = source.aiter_sse()
        ((first, sub),) = await read_until(events, lambda d: d["type"] == "subscribed")
        assert first.retry == 2000 and first.id == ""
        assert sub["all"] is True and [j["jobId"] for j in sub["jobs"]] == [f"{uid}-a"]
        ack = await publish(server, f"{uid}-a", user, "completed", result={"pages": 1})
        ((sse, data),) = await read_until(events, lambda d: "jobId" in d)
        assert sse.id == data["id"] == ack["id"]
        assert (data["type"], data["seq"], data["result"]) == ("job_completed", 2, {"pages": 1})


async def test_resume_by_last_event_id(http, server, uid):
    user = f"{uid}-u"
    async with aconnect_sse(http, "GET", STREAM, headers=server.headers(user)) as source:
        events = source.aiter_sse()
        await read_until(events, lambda d: d["type"] == "subscribed")
        await publish(server, f"{uid}-j", user, "queued")
        ((sse, _),) = await read_until(events, lambda d: "jobId" in d)
        last = sse.id
    await publish(server, f"{uid}-j", user, "processing", progress=1)
    await publish(server, f"{uid}-k", user, "queued")
    for how in ("header", "query"):
        headers, params = server.headers(user), {}
        if how == "header":
            headers["Last-Event-ID"] = last
        else:
            params["lastEventId"] = last
        async with aconnect_sse(http, "GET", STREAM, headers=headers, params=params) as source:
            got = await read_until(source.aiter_sse(), lambda d: d.get("jobId") == f"{uid}-k")
            assert got[0][1]["type"] == "subscribed"
            assert [(d["jobId"], d["seq"]) for _, d in got[1:]] == [
                (f"{uid}-j", 2), (f"{uid}-k", 1)]


async def test_refused_job_ids_and_isolation(http, server, uid):
    alice, bob = f"{uid}-alice", f"{uid}-bob"
    await publish(server, f"{uid}-bobs", bob, "queued")
    params = {"jobIds": f"{uid}-bobs,{uid}-mine"}
    async with aconnect_sse(http, "GET", STREAM, headers=server.headers(alice),
                            params=params) as source:
        events = source.aiter_sse()
        got = await read_until(events, lambda d: d["type"] == "subscribed")
        assert got[0][1] == {"type": "error", "code": "forbidden",
                                          "message": "not your job", "jobId": f"{uid}-bobs"}
        assert got[1][1]["jobIds"] == [f"{uid}-mine"]
        await publish(server, f"{uid}-bobs", bob, "processing", progress=9)
        await publish(server, f"{uid}-mine", alice, "queued")
        ((_, data),) = await read_until(events, lambda d: "jobId" in d)
        assert data["jobId"] == f"{uid}-mine"


async def test_unauthorised_and_bad_requests(http, server):
    r = await http.get(STREAM)
    assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"
    r = await http.get(STREAM, headers={"Authorization": "Bearer forged"})
    assert r.status_code == 401
    r = await http.get(STREAM, headers=server.headers("w", "publisher"))
    assert r.status_code == 403
    r = await http.get(STREAM, headers={**server.headers("u"), "Last-Event-ID": "garbage"})
    assert r.status_code == 400 and r.json()["error"]["field"] == "Last-Event-ID"
    r = await http.get(STREAM, headers=server.headers("u"), params={"jobIds": "a,b c"})
    assert r.status_code == 400


async def test_vanished_client_releases_its_session():
    srv = start_server()
    try:
        async with httpx.AsyncClient(base_url=srv.url, timeout=WAIT) as http:
            async with aconnect_sse(http, "GET", STREAM, headers=srv.headers("u")) as source:
                await read_until(source.aiter_sse(), lambda d: d["type"] == "subscribed")
                await wait_for_sessions(srv, "sse", 1)
        await wait_for_sessions(srv, "sse", 0)
    finally:
        srv.stop()


async def test_heartbeats():
    interval, intervals = 0.2, 10
    srv = start_server(heartbeat_seconds=interval)
    try:
        async with httpx.AsyncClient(base_url=srv.url, timeout=WAIT) as http:
            async with aconnect_sse(http, "GET", STREAM, headers=srv.headers("u")) as source:
                events = source.aiter_sse()
                await read_until(events, lambda d: d["type"] == "subscribed")
                beats = 0
                # The stream must stay open over the whole window: ending early fails here.
                with pytest.raises(TimeoutError):
                    async with asyncio.timeout(interval * intervals):
                        async for sse in events:
                            assert orjson.loads(sse.data)["type"] == "heartbeat"
                            beats += 1
                        raise AssertionError(f"stream ended after {beats} heartbeats")
    finally:
        srv.stop()
    # One each interval, never more often; under load a few may come late.
    assert intervals // 2 <= beats <= intervals + 1


async def test_curl_sees_the_same_frames(server, uid):
    user = f"{uid}-u"
    url = f"{server.url}{STREAM}?token={server.token(user)}&jobIds={uid}-j"
    curl = await asyncio.create_subprocess_exec(
        "curl", "-sN", "--max-time", str(WAIT), url, stdout=subprocess.PIPE)
    try:
        assert curl.stdout is not None
        async with asyncio.timeout(WAIT):
            while b"subscribed" not in await curl.stdout.readline():
                pass
        ack = await publish(server, f"{uid}-j", user, "queued")
        lines: list[bytes] = []
        async with asyncio.timeout(WAIT):
            while len(lines) < 2:
                line = await curl.stdout.readline()
                if line.strip():
                    lines.append(line)
        assert lines[0] == f"id: {ack['id']}\n".encode()
        assert lines[1].startswith(b"data: {") and b'"seq":1' in lines[1]
    finally:
        curl.kill()
        await curl.wait()


async def test_sigterm_ends_streams():
    srv = start_server()
    async with httpx.AsyncClient(base_url=srv.url, timeout=WAIT) as http:
        async with aconnect_sse(http, "GET", STREAM, headers=srv.headers("u")) as source:
            events = source.aiter_sse()
            await read_until(events, lambda d: d["type"] == "subscribed")
            srv.process.terminate()
            async with asyncio.timeout(WAIT):
                async for _ in events:
                    pass  # the stream ends well before the shutdown timeout
    # uvicorn re-raises the signal once drained: ended by SIGTERM, on time.
    assert srv.process.wait(WAIT) in (0, -15)
