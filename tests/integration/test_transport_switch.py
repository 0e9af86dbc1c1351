"""One cursor, four transports: a client moves WebSocket → SSE → long-poll → polling, resuming
from the last id it saw each time, and ends with every event exactly once, in order."""

from __future__ import annotations

import httpx
import orjson
from httpx_sse import aconnect_sse

from tests.conftest import WAIT, connect, publish


def pos(event_id: str) -> tuple[int, int]:
    ms, n = event_id.split("-")
    return int(ms), int(n)


async def test_every_event_once_in_order_across_transports(server, uid):
    user = f"{uid}-u"
    published: list[str] = []

    async def step(job: str, status: str, **fields) -> None:
        published.append((await publish(server, f"{uid}-{job}", user, status, **fields))["id"])

    received: list[dict] = []

    # 1. WebSocket
    ws = await connect(server, server.token(user))
    await ws.subscribe(all=True)
    await step("a", "queued")
    await step("b", "queued")
    received += await ws.recv_until(lambda m: m.get("jobId") == f"{uid}-b")
    await ws.close()

    # Missed while switching.
    await step("a", "processing", progress=10)

    # 2. SSE, resuming from the last WebSocket id
    async with httpx.AsyncClient(base_url=server.url, timeout=WAIT) as http:
        headers = {**server.headers(user), "Last-Event-ID": received[-1]["id"]}
        async with aconnect_sse(http, "GET", "/api/v2/jobs/stream", headers=headers) as source:
            events = source.aiter_sse()
            async for sse in events:
                data = orjson.loads(sse.data)
                if data["type"] == "subscribed":
                    await step("b", "processing", progress=50)
                elif "jobId" in data:
                    assert sse.id == data["id"]
                    received.append(data)
                    if data["jobId"] == f"{uid}-b":
                        break

        # Missed while switching.
        await step("b", "completed", result={"ok": True})

        # 3. Long-polling, from the last SSE id
        r = await http.get("/api/v2/jobs/poll", headers=server.headers(user),
                           params={"last_seen": received[-1]["id"], "timeout": 5})
        body = r.json()
        received += body["events"]
        assert body["cursor"] == received[-1]["id"]
        await step("a", "failed", error="disk full")
        r = await http.get("/api/v2/jobs/poll", headers=server.headers(user),
                           params={"last_seen": body["cursor"], "timeout": 5})
        received += r.json()["events"]

        # 4. Regular polling: the current state agrees with the last event of each job.
        r = await http.get("/api/v2/jobs/status", headers=server.headers(user))
        states = {j["jobId"]: j for j in r.json()["jobs"]}

    ids = [e["id"] for e in received]
    assert ids == published  # every event, once, in publish order
    assert ids == sorted(ids, key=pos)
    for job in ("a", "b"):
        mine = [e for e in received if e["jobId"] == f"{uid}-{job}"]
        assert [e["seq"] for e in mine] == list(range(1, len(mine) + 1))
        assert states[f"{uid}-{job}"]["id"] == mine[-1]["id"]
