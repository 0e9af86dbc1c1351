"""Rate and concurrency limits hit, answered as contracted, and recovered from."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from tests.conftest import WAIT, connect, metric, start_server, wait_for_sessions

REFUSALS = "jobwire_rate_limited_total"


@pytest.fixture(scope="module")
def tight():
    server = start_server(max_messages_per_second=5, max_connections_per_second_per_user=1,
                          max_connections_per_user=3, max_longpolls_per_user=2,
                          max_publishes_per_second=10)
    yield server
    server.stop()


async def test_websocket_message_rate(tight):
    refused = await metric(tight, REFUSALS)
    client = await connect(tight, tight.token("chatty"))
    for _ in range(11):  # one more than the burst (2x the rate)
        await client.send({"type": "ping"})
    replies = [await client.recv() for _ in range(11)]
    kinds = [r["type"] if r["type"] != "error" else r["code"] for r in replies]
    assert kinds.count("pong") == 10 and kinds.count("rate_limited") == 1
    await client.send({"type": "ping"})  # still connected, and refused until it refills
    assert (await client.recv())["code"] == "rate_limited"
    assert await metric(tight, REFUSALS) == refused + 2
    await client.close()


async def test_a_client_that_keeps_hammering_is_closed_4429(tight):
    refused = await metric(tight, REFUSALS)
    client = await connect(tight, tight.token("hammer"))
    for _ in range(40):
        await client.send({"type": "ping"})
    assert await client.expect_close() == 4429
    # Closed only after more refusals in a row than the burst (10) holds.
    assert await metric(tight, REFUSALS) >= refused + 11
    # The message rate is per connection: a calm client of the same user is served at once.
    calm = await connect(tight, tight.token("hammer"))
    await calm.send({"type": "ping"})
    assert (await calm.recv())["type"] == "pong"
    await calm.close()


async def test_new_and_concurrent_connections_per_user(tight):
    user = "crowd"
    refused = await metric(tight, REFUSALS)
    clients = [await connect(tight, tight.token(user)) for _ in range(3)]  # burst of 10
    over = await connect(tight, tight.token(user), valid=False)
    assert await over.expect_close() == 4429  # a fourth open connection
    async with httpx.AsyncClient(base_url=tight.url, timeout=WAIT) as http:
        r = await http.get("/api/v2/jobs/stream", headers=tight.headers(user))
        assert r.status_code == 429 and r.headers["retry-after"]
        assert r.json()["error"]["code"] == "rate_limited"
    assert await metric(tight, REFUSALS) == refused + 2
    for c in clients:
        await c.close()


async def test_publishes_per_publisher(tight):
    refused = await metric(tight, REFUSALS)
    async with httpx.AsyncClient(base_url=tight.url, timeout=WAIT) as http:
        headers = tight.headers("busy-worker", "publisher")
        batch = [{"jobId": f"lim-{i}", "userId": "u", "status": "queued"} for i in range(20)]
        assert (await http.post("/api/v2/jobs/status", json=batch, headers=headers)
                ).status_code == 202
        r = await http.post("/api/v2/jobs/lim-x/status", json={"userId": "u",
                                                               "status": "queued"},
                            headers=headers)
        assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
        state = await http.get("/api/v2/jobs/lim-x", headers=tight.headers("u"))
        assert state.status_code == 404  # refused, so nothing changed
        other = tight.headers("other-worker", "publisher")
        r = await http.post("/api/v2/jobs/lim-y/status", json={"userId": "u",
                                                               "status": "queued"},
                            headers=other)
        assert r.status_code == 202  # per publisher
    assert await metric(tight, REFUSALS) == refused + 1


async def test_long_polls_per_user(tight):
    refused = await metric(tight, REFUSALS)
    async with httpx.AsyncClient(base_url=tight.url, timeout=3 * WAIT) as http:
        headers = tight.headers("poller")
        params = {"last_seen": "0-0", "timeout": 3}
        waiting = [asyncio.create_task(http.get("/api/v2/jobs/poll", headers=headers,
                                                params=params)) for _ in range(2)]
        await wait_for_sessions(tight, "longpoll", 2)
        r = await http.get("/api/v2/jobs/poll", headers=headers, params=params)
        assert r.status_code == 429 and r.json()["error"]["code"] == "rate_limited"
        assert all(a.status_code == 200 for a in await asyncio.gather(*waiting))
    assert await metric(tight, REFUSALS) == refused + 1
