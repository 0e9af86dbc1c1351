"""The Python client against a silent partition: a relay between it and a real `jobwire
serve` stops forwarding without closing anything (no FIN, no RST). The client must notice
from the missing heartbeats (a long-poll: from its overdue answer), reconnect, and once the
link is back receive what was published meanwhile exactly once."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import orjson
import pytest
from httpx_sse import aconnect_sse

from jobwire.client import Backoff, JobwireClient
from tests.conftest import WAIT, Server, connect, eventually, publish, start_server
from tests.integration.test_client import collect, is_snapshot
from tests.relay import Relay

HEARTBEAT = 0.5
LONGPOLL_WAIT = 1.0


@pytest.fixture(scope="module")
def beating_server() -> Iterator[Server]:
    srv = start_server(heartbeat_seconds=HEARTBEAT)
    yield srv
    srv.stop()


def client_for(transport: str, url: str, token: str) -> JobwireClient:
    # One transport only, so that the failures of the outage cannot move the client to
    # another. The backoff is the usual one: its jitter is part of what is measured.
    options: dict = {"transports": [transport], "backoff": Backoff(),
                     "open_timeout": 3 * WAIT}
    if transport == "longpoll":
        # Long-polling hears no heartbeats: the client is told the interval.
        options.update(longpoll_timeout=LONGPOLL_WAIT, heartbeat_seconds=HEARTBEAT)
    return JobwireClient(url, token, **options)


@pytest.mark.parametrize("transport", ["websocket", "sse", "longpoll"])
async def test_a_silent_partition_is_noticed_and_nothing_is_lost(beating_server, uid,
                                                                 transport):
    server, user, job = beating_server, f"{uid}-u", f"{uid}-job"
    await publish(server, job, user, "queued")
    with Relay(server.port) as relay:
        url = f"http://127.0.0.1:{relay.port}"
        async with client_for(transport, url, server.token(user)) as client:
            await collect(client, is_snapshot)
            assert client.transport == transport
            before = await publish(server, job, user, "processing", progress=10)
            await collect(client, lambda i: i.get("id") == before["id"])

            relay.blackhole()
            cut = time.monotonic()
            # Noticed: the connection is given up (the reconnect then waits in the relay).
            await eventually(lambda: client.transport is None, timeout=4 * WAIT)
            noticed = time.monotonic() - cut
            during = [await publish(server, f"{job}-{n}", user, "queued") for n in (2, 3)]
            relay.forward()
            items = await collect(client, lambda i: i.get("id") == during[-1]["id"],
                                  timeout=6 * WAIT)

    events = [i["id"] for i in items if not is_snapshot(i)]
    assert events == [a["id"] for a in during], "each event of the outage, once, in order"
    # About two missed heartbeats (2.5 intervals of silence); a long-poll: its wait plus
    # that margin. The bound leaves room for a loaded machine.
    expected = 2.5 * HEARTBEAT + (LONGPOLL_WAIT if transport == "longpoll" else 0)
    print(f"\n{transport}: silent link noticed after {noticed:.2f} s "
          f"(limit {expected:.2f} s after the last message)")
    assert noticed < expected + 2 * HEARTBEAT


async def test_streams_are_told_the_heartbeat_interval(beating_server, uid):
    """`subscribed` carries `heartbeatSeconds`, on the WebSocket and over SSE."""
    server, token = beating_server, beating_server.token(f"{uid}-u")
    client = await connect(server, token)
    assert (await client.subscribe(all=True))["heartbeatSeconds"] == HEARTBEAT
    await client.close()
    async with httpx.AsyncClient(base_url=server.url, timeout=WAIT) as http, aconnect_sse(
            http, "GET", "/api/v2/jobs/stream", headers={"Authorization": f"Bearer {token}"}
    ) as stream:
        first = orjson.loads((await anext(stream.aiter_sse())).data)
    assert first["type"] == "subscribed" and first["heartbeatSeconds"] == HEARTBEAT
