"""Redis faults at exact points, through the test relay: a resume never answers an empty
replay with a newer cursor, and /readyz reports a silently dead link."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import httpx
import orjson
import pytest

from jobwire.client import Backoff, JobwireClient
from tests.conftest import (
    WAIT,
    RedisServer,
    Server,
    connect,
    eventually,
    publish,
    start_redis,
    start_server,
)
from tests.relay import Relay


@pytest.fixture(scope="module")
def redis() -> Iterator[RedisServer]:
    server = start_redis()
    yield server
    server.stop()


@pytest.fixture
def relay(redis) -> Iterator[Relay]:
    with Relay(redis.port) as relay:
        yield relay


@pytest.fixture
def publisher(redis) -> Iterator[Server]:
    """An instance on Redis directly: it publishes while the one under test is cut off."""
    server = start_server(redis_url=redis.url)
    yield server
    server.stop()


@pytest.fixture
def behind_relay(relay, publisher, uid) -> Iterator[tuple[Server, str, str]]:
    """Two events, then the instance under test, whose every Redis connection goes through
    the relay: (that instance, the user, the first event's id, a cursor that misses the
    second). Started after the events, its resumes from that cursor are read from Redis."""
    user = f"{uid}-u"
    first = run(publish(publisher, f"{uid}-j", user, "queued"))
    run(publish(publisher, f"{uid}-j", user, "processing", progress=50))
    server = start_server(redis_url=f"redis://127.0.0.1:{relay.port}/0",
                          secret=publisher.secret)
    yield server, user, first["id"]
    server.stop()


async def until_ready(http: httpx.AsyncClient, server: Server) -> None:
    await eventually(lambda: readyz_is(http, server, 200), timeout=3 * WAIT)


def run(coroutine):
    """A coroutine from a sync fixture (pytest-asyncio runs tests, not sync fixtures, on a
    loop)."""
    return asyncio.run(coroutine)


# --- a resume whose replay cannot be read ---------------------------------------------------
# The relay resets every Redis connection, and refuses new ones, the moment the instance asks
# for the stream's length (XINFO): after the snapshot was read, before the replay is.

@pytest.mark.parametrize("transport", ["sse", "longpoll"])
async def test_http_resume_during_a_redis_failure_is_unavailable(transport, relay,
                                                                behind_relay):
    server, user, cursor = behind_relay
    tripped = relay.trip_on(b"XINFO", "down")
    async with httpx.AsyncClient(timeout=3 * WAIT) as http:
        if transport == "sse":
            request = http.build_request("GET", f"{server.url}/api/v2/jobs/stream",
                                         headers={**server.headers(user),
                                                  "Last-Event-ID": cursor})
        else:
            request = http.build_request("GET", f"{server.url}/api/v2/jobs/poll",
                                         headers=server.headers(user),
                                         params={"last_seen": cursor, "timeout": 1})
        response = await http.send(request, stream=True)
        body = b""
        async for chunk in response.aiter_bytes():
            body += chunk
            break  # an SSE stream's first block is enough: the snapshot or the error
        await response.aclose()
    assert tripped.is_set()
    assert response.status_code == 503, body
    assert orjson.loads(body)["error"]["code"] == "unavailable"
    # Once Redis is back, the same cursor replays what was missed.
    relay.forward()
    async with httpx.AsyncClient(timeout=3 * WAIT) as http:
        await until_ready(http, server)
        answer = (await http.get(f"{server.url}/api/v2/jobs/poll", headers=server.headers(user),
                                 params={"last_seen": cursor, "timeout": 1})).json()
    assert [e["seq"] for e in answer["events"]] == [2]


async def test_websocket_resume_during_a_redis_failure_is_unavailable(relay, behind_relay):
    server, user, cursor = behind_relay
    client = await connect(server, server.token(user))
    tripped = relay.trip_on(b"XINFO", "down")
    await client.send({"type": "subscribe", "all": True, "lastEventId": cursor})
    (answer,) = await client.recv_until(lambda m: m["type"] in ("error", "subscribed"),
                                        timeout=3 * WAIT)
    assert tripped.is_set(), answer
    assert (answer["type"], answer.get("code")) == ("error", "unavailable"), answer
    relay.forward()
    async with httpx.AsyncClient(timeout=WAIT) as http:
        await until_ready(http, server)
    subscribed = await client.subscribe(all=True, lastEventId=cursor)
    assert subscribed["jobs"] == []  # the job moved since the cursor: its replay tells it
    (replayed,) = await client.recv_until(lambda m: "jobId" in m)
    assert replayed["seq"] == 2
    await client.close()


async def test_the_python_client_retries_a_subscribe_refused_as_unavailable(relay,
                                                                           behind_relay):
    server, user, cursor = behind_relay
    tripped = relay.trip_on(b"XINFO", "down")

    async def heal() -> None:
        assert await asyncio.to_thread(tripped.wait, 3 * WAIT), "the resume never asked"
        relay.forward()

    healer = asyncio.create_task(heal())
    client = JobwireClient(server.url, server.token(user), transports=["websocket"],
                           last_event_id=cursor, backoff=Backoff(base=0.05, cap=0.5))
    items = []
    async with client, asyncio.timeout(6 * WAIT):
        async for item in client:  # a refusal would end iteration with ClientError
            items.append(item)
            if item.get("seq") == 2:
                break
    await healer
    assert [i["seq"] for i in items if "seq" in i] == [2]
    assert {i["transport"] for i in items if i["type"] == "snapshot"} == {"websocket"}


async def test_a_refused_subscribe_adds_nothing_so_its_retry_replays_everything(
        relay, publisher, behind_relay, uid):
    server, user, cursor = behind_relay
    client = await connect(server, server.token(user))
    await client.subscribe(jobIds=[f"{uid}-other"])  # a session with a subscription already
    tripped = relay.trip_on(b"XINFO", "down")
    await client.send({"type": "subscribe", "all": True, "lastEventId": cursor})
    (refused,) = await client.recv_until(lambda m: m["type"] in ("error", "subscribed"),
                                         timeout=3 * WAIT)
    assert tripped.is_set() and refused.get("code") == "unavailable", refused
    relay.forward()
    async with httpx.AsyncClient(timeout=WAIT) as http:
        await until_ready(http, server)
    # A later event, seen routed by the instance (through a second client there), must not
    # have reached the first: its subscribe was refused.
    witness = await connect(server, server.token(user))
    await witness.subscribe(all=True)
    later = await publish(publisher, f"{uid}-j", user, "processing", progress=80)
    await witness.recv_until(lambda m: m.get("id") == later["id"])
    await client.send({"type": "subscribe", "all": True, "lastEventId": cursor})
    got = await client.recv_until(lambda m: m.get("id") == later["id"])
    assert got[0]["type"] == "subscribed", got
    assert [m.get("seq") for m in got[1:]] == [2, 3]  # the replay, none of it skipped
    await witness.close()
    await client.close()


# --- a silently dead link -------------------------------------------------------------------

async def readyz_is(http: httpx.AsyncClient, server: Server, status: int) -> bool:
    return (await http.get(f"{server.url}/readyz")).status_code == status


async def test_readyz_reports_a_silently_dead_link_and_delivery_catches_up(
        relay, publisher, behind_relay):
    server, user, _ = behind_relay
    client = await connect(server, server.token(user))
    await client.subscribe(all=True)
    async with httpx.AsyncClient(timeout=WAIT) as http:
        assert await readyz_is(http, server, 200)
        relay.blackhole()  # no RST, no FIN: every Redis connection just goes quiet
        cut = time.monotonic()
        await eventually(lambda: readyz_is(http, server, 503), timeout=4 * WAIT, interval=0.1)
        detected = time.monotonic() - cut
        # Published elsewhere while this instance cannot hear it.
        missed = await publish(publisher, f"{user}-late", user, "queued")
        relay.forward()
        healed = time.monotonic()
        await eventually(lambda: readyz_is(http, server, 200), timeout=4 * WAIT, interval=0.1)
        recovered = time.monotonic() - healed
    (event,) = await client.recv_until(lambda m: "jobId" in m, timeout=3 * WAIT)
    assert event["id"] == missed["id"]
    print(f"dead link: /readyz 503 after {detected:.2f} s, 200 again {recovered:.2f} s "
          "after the link was back")
    assert detected < 2 * WAIT
    await client.close()
