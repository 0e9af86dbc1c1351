"""The Python client (`jobwire.client`) and `jobwire watch`, against real servers: every event
once and in order, over whichever transport the server offers, across restarts and resumes."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Callable
from typing import Any

import pytest

from jobwire.client import AuthError, Backoff, JobwireClient
from tests.conftest import WAIT, Server, publish, start_server

Item = dict[str, Any]


async def collect(client: JobwireClient, until: Callable[[Item], bool],
                  timeout: float = WAIT) -> list[Item]:
    """Items up to and including the first that satisfies `until` (bounded)."""
    items: list[Item] = []
    async with asyncio.timeout(timeout):
        async for item in client:
            items.append(item)
            if until(item):
                return items
    raise AssertionError(f"iteration ended early after {items}")


def is_snapshot(item: Item) -> bool:
    return item["type"] == "snapshot"


class Feed:
    """Publishes updates and waits until the client yields each one."""

    def __init__(self, server: Server, client: JobwireClient, user: str):
        self.server, self.client, self.user = server, client, user
        self.published: list[str] = []
        self.received: list[Item] = []

    async def step(self, job: str, status: str, **fields: Any) -> None:
        ack = await publish(self.server, job, self.user, status, **fields)
        assert ack["id"] is not None, "held by conflation: publish a status change"
        self.published.append(ack["id"])
        self.received += await collect(self.client, lambda i: i.get("id") == ack["id"])

    @property
    def events(self) -> list[Item]:
        return [i for i in self.received if not is_snapshot(i)]


def fast_backoff() -> Backoff:
    return Backoff(base=0.05, cap=0.5)


async def test_websocket_snapshot_then_every_event_once_in_order(server, uid):
    user, a, b = f"{uid}-u", f"{uid}-a", f"{uid}-b"
    first = await publish(server, a, user, "queued")
    async with JobwireClient(server.url, server.token(user)) as client:
        snapshot = (await collect(client, is_snapshot))[-1]
        assert snapshot["transport"] == client.transport == "websocket"
        assert [j["id"] for j in snapshot["jobs"]] == [first["id"]]
        assert snapshot["resumed"] is False and snapshot["errors"] == []
        feed = Feed(server, client, user)
        await feed.step(a, "processing", progress=40, currentOperation="page 4/10")
        await feed.step(b, "queued")
        await feed.step(a, "completed", result={"pages": 10})
    assert [e["id"] for e in feed.events] == feed.published
    assert [e["type"] for e in feed.events] == ["status_update", "status_update", "job_completed"]
    assert [e["seq"] for e in feed.events if e["jobId"] == a] == [2, 3]
    assert client.jobs[a]["result"] == {"pages": 10} and client.jobs[b]["status"] == "queued"
    assert client.cursor == feed.published[-1]


async def test_job_ids_and_refused_jobs(server, uid):
    user, mine, theirs = f"{uid}-u", f"{uid}-mine", f"{uid}-theirs"
    await publish(server, theirs, f"{uid}-other", "queued")
    async with JobwireClient(server.url, server.token(user), job_ids=[mine, theirs]) as client:
        snapshot = (await collect(client, is_snapshot))[-1]
        assert snapshot["jobs"] == []
        assert [(e["code"], e["jobId"]) for e in snapshot["errors"]] == [("forbidden", theirs)]
        assert set(client.refused) == {theirs}
        feed = Feed(server, client, user)
        await publish(server, f"{uid}-elsewhere", user, "queued")  # not subscribed
        await feed.step(mine, "queued")
    assert [e["jobId"] for e in feed.events] == [mine]


@pytest.mark.parametrize("transport", ["sse", "longpoll", "poll"])
async def test_resumes_from_a_cursor_over_each_http_transport(server, uid, transport):
    user, a, b, c = f"{uid}-u", f"{uid}-a", f"{uid}-b", f"{uid}-c"
    a1 = (await publish(server, a, user, "queued"))["id"]
    b1 = (await publish(server, b, user, "queued"))["id"]
    # Missed while no client was connected (status changes: never conflated).
    missed = [(await publish(server, a, user, "processing"))["id"],
              (await publish(server, c, user, "queued"))["id"]]
    async with JobwireClient(server.url, server.token(user), transports=[transport],
                             last_event_id=b1, max_poll_interval=0.1) as client:
        items = await collect(client, lambda i: missed[-1] in
                              [i.get("id"), *(j["id"] for j in i.get("jobs", []))])
        feed = Feed(server, client, user)
        await feed.step(a, "completed")
        await feed.step(b, "cancelled")
    assert client.transport is None  # closed
    snapshot, events = items[0], items[1:]
    assert snapshot["type"] == "snapshot" and snapshot["transport"] == transport
    in_snapshot = [j["id"] for j in snapshot["jobs"]]
    if transport == "poll":  # no replay: every current state, once
        assert in_snapshot == [b1, *missed] and events == []
    else:
        # Replayed: what was missed. Listed: the job unchanged since the cursor (SSE), none
        # on a long-poll resume (it has no snapshot).
        assert snapshot["resumed"] is True
        assert in_snapshot == ([] if transport == "longpoll" else [b1])
        assert [e["id"] for e in events] == missed
    assert a1 not in in_snapshot + [e["id"] for e in events]
    assert [e["id"] for e in feed.events] == feed.published


@pytest.mark.parametrize(("transports", "expected"), [("sse,longpoll,poll", "sse"),
                                                      ("longpoll,poll", "longpoll"),
                                                      ("poll", "poll")])
async def test_falls_back_to_the_transport_the_server_offers(uid, transports, expected):
    srv = await asyncio.to_thread(start_server, transports=transports,
                                  max_updates_per_job_per_second=0)  # no conflation
    try:
        user, job = f"{uid}-u", f"{uid}-j"
        first = await publish(srv, job, user, "queued")
        async with JobwireClient(srv.url, srv.token(user), max_poll_interval=0.1,
                                 backoff=fast_backoff()) as client:
            snapshot = (await collect(client, is_snapshot))[-1]
            assert snapshot["transport"] == client.transport == expected
            assert [j["id"] for j in snapshot["jobs"]] == [first["id"]]
            feed = Feed(srv, client, user)
            await feed.step(job, "processing", progress=30)
            await feed.step(job, "processing", progress=60)
            await feed.step(job, "failed", error="disk full")
        assert [e["id"] for e in feed.events] == feed.published
        assert [e["seq"] for e in feed.events] == [2, 3, 4]
        assert all(i["transport"] == expected for i in feed.received if is_snapshot(i))
    finally:
        await asyncio.to_thread(srv.stop)


async def test_reconnects_across_a_server_restart_with_every_event_once(uid):
    srv = await asyncio.to_thread(start_server)
    user, job = f"{uid}-u", f"{uid}-j"
    token = srv.token(user)  # same secret after the restart: still valid
    gate = asyncio.Event()  # holds the client's reconnection until we open it
    gate.set()

    async def gated_token() -> str:
        await gate.wait()
        return token

    try:
        async with JobwireClient(srv.url, gated_token, backoff=fast_backoff()) as client:
            await collect(client, is_snapshot)
            feed = Feed(srv, client, user)
            await feed.step(job, "queued")
            await feed.step(job, "processing", progress=10)
            gate.clear()
            await asyncio.to_thread(srv.stop)  # closes the WebSocket with 1012
            srv = await asyncio.to_thread(start_server, secret=srv.secret, port=srv.port)
            # Published before the client is back: it must resume, not start afresh. (The
            # in-process broker forgot the job, so its seq starts at 1 again; ids still grow.)
            later = [(await publish(srv, job, user, "processing", progress=50))["id"],
                     (await publish(srv, job, user, "completed"))["id"]]
            gate.set()
            items = await collect(client, lambda i: i.get("id") == later[-1], 3 * WAIT)
            assert client.transport == "websocket"
        resumes = [i for i in items if is_snapshot(i)]
        assert resumes and all(s["resumed"] and s["transport"] == "websocket" for s in resumes)
        events = feed.events + [i for i in items if not is_snapshot(i)]
        assert [e["id"] for e in events] == feed.published + later
        assert [e["seq"] for e in events] == [1, 2, 1, 2]
    finally:
        await asyncio.to_thread(srv.stop)


async def test_refreshes_an_expired_token_and_resumes(server, uid):
    user, job = f"{uid}-u", f"{uid}-j"
    minted = 0

    def token() -> str:
        nonlocal minted
        minted += 1
        return server.token(user, ttl=2)

    async with JobwireClient(server.url, token, backoff=fast_backoff()) as client:
        await collect(client, is_snapshot)
        feed = Feed(server, client, user)
        await feed.step(job, "queued")
        # The token expires: 4401, a fresh token, a resumed subscription.
        resumed = (await collect(client, is_snapshot, 3 * WAIT))[-1]
        assert resumed["resumed"] is True and minted >= 2
        await feed.step(job, "completed")
    assert [e["id"] for e in feed.events] == feed.published


async def test_a_refused_static_token_ends_iteration_with_auth_error(server, uid):
    async with JobwireClient(server.url, server.token(f"{uid}-u", ttl=-10)) as client:
        with pytest.raises(AuthError):
            await collect(client, lambda i: False)


async def watch(server: Server, user: str, *args: str) -> asyncio.subprocess.Process:
    env = {**os.environ, "JOBWIRE_TOKEN": server.token(user)}
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "jobwire.cli", "watch", *args, "--url", server.url, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)


@pytest.mark.parametrize(("ending", "code"), [("completed", 0), ("failed", 1), ("cancelled", 2)])
async def test_watch_exits_with_the_outcome(server, uid, ending, code):
    user, job, other = f"{uid}-u", f"{uid}-j", f"{uid}-k"
    await publish(server, job, user, "queued")
    await publish(server, other, user, "processing", progress=10)
    proc = await watch(server, user, job, other)
    try:
        line = await asyncio.wait_for(proc.stdout.readline(), 2 * WAIT)
        assert b"watching over websocket" in line  # subscribed: the rest arrives live
        await publish(server, other, user, "completed")
        await publish(server, job, user, "processing", progress=50,
                      currentOperation="page 5/10")
        await publish(server, job, user, ending)
        out, err = await asyncio.wait_for(proc.communicate(), WAIT)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == code, (out, err)
    assert f"{job}: {ending}".encode() in out and f"{other}: completed".encode() in out


async def test_watch_without_a_token_fails(server):
    env = {k: v for k, v in os.environ.items() if k != "JOBWIRE_TOKEN"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "jobwire.cli", "watch", "x", "--url", server.url, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, _ = await asyncio.wait_for(proc.communicate(), WAIT)
    assert proc.returncode == 3 and b"token" in out
