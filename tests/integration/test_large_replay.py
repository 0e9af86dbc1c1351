"""A resume whose replay is longer than a connection's outbox: the replay is history already
held in memory, not a backlog of a slow reader, so it is delivered whole. Counting it against
the outbox closed the connection as slow (4000) on every resume: a loop, never a catch-up."""

from __future__ import annotations

import httpx
import orjson
import pytest

from tests.conftest import connect, publish, start_server, wait_for_sessions

JOBS = 40  # five times the outbox below; distinct jobs, so nothing may be shed


@pytest.fixture(scope="module")
def server():
    srv = start_server(max_outbox=8)
    yield srv
    srv.stop()


async def test_a_websocket_resume_longer_than_the_outbox_is_delivered_whole(server, uid):
    user = f"{uid}-u"
    first = await publish(server, f"{uid}-0", user, "queued")
    for n in range(1, JOBS):
        await publish(server, f"{uid}-{n}", user, "queued")
    client = await connect(server, server.token(user))
    await client.subscribe(all=True, lastEventId=first["id"])
    events = await client.recv_until(lambda m: m.get("jobId") == f"{uid}-{JOBS - 1}")
    assert [m["jobId"] for m in events] == [f"{uid}-{n}" for n in range(1, JOBS)]
    # Still open, and live events keep coming after the replay.
    await publish(server, f"{uid}-live", user, "queued")
    (live,) = await client.recv_until(lambda m: m.get("jobId") == f"{uid}-live")
    assert live["status"] == "queued"
    await client.close()
    await wait_for_sessions(server, "websocket", 0)


async def test_an_sse_resume_longer_than_the_outbox_is_delivered_whole(server, uid):
    user = f"{uid}-u"
    first = await publish(server, f"{uid}-0", user, "queued")
    for n in range(1, JOBS):
        await publish(server, f"{uid}-{n}", user, "queued")
    seen: list[str] = []
    async with httpx.AsyncClient(timeout=10) as http, http.stream(
            "GET", f"{server.url}/api/v2/jobs/stream", headers={
                **server.headers(user), "Last-Event-ID": first["id"]}) as stream:
        async for line in stream.aiter_lines():
            if line.startswith("data:"):
                msg = orjson.loads(line[5:])
                if "jobId" in msg:
                    seen.append(msg["jobId"])
                    if msg["jobId"] == f"{uid}-{JOBS - 1}":
                        break
    assert seen == [f"{uid}-{n}" for n in range(1, JOBS)]
