"""WebSocket transport over real sockets against a real `jobwire serve` process, every test
on both paths: frames written straight to uvicorn's connections, and plain ASGI sends."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Iterator

import jwt
import pytest
import websockets
from websockets.frames import Close, Frame, Opcode
from websockets.streams import StreamReader

from tests.conftest import WAIT, Server, connect, publish, start_server_on


@pytest.fixture(scope="module", params=["fast", "asgi"])
def ws_path(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture(scope="module")
def server(ws_path: str) -> Iterator[Server]:
    """A server shared by this module's tests on one path (they isolate themselves with
    unique user and job ids)."""
    srv = start_server_on(ws_path, heartbeat_seconds=30, auth_timeout_seconds=1,
                          max_message_bytes=4096)
    yield srv
    srv.stop()


def parse_frames(data: bytes) -> list[Frame]:
    """The frames a server sent, parsed by the websockets library (unmasked, as a client
    receives them); a truncated last frame fails the test."""
    stream = StreamReader()
    stream.feed_data(data)
    frames = []
    while stream.buffer:
        parser = Frame.parse(stream.read_exact, mask=False)
        try:
            next(parser)
        except StopIteration as parsed:
            frames.append(parsed.value)
        else:
            raise AssertionError(f"a truncated frame at the end of {bytes(stream.buffer)!r}")
    return frames


async def test_publish_over_http_receive_over_ws_in_order(server, uid):
    user = f"{uid}-alice"
    client = await connect(server, server.token(user))
    sub = await client.subscribe(all=True)
    assert sub["all"] is True and sub["jobs"] == [] and not sub["cursor"].isdigit()
    sent = []
    for job in ("a", "b"):
        sent.append(await publish(server, f"{uid}-{job}", user, "queued"))
    for progress in range(1, 6):
        # A status change each time is never conflated: every update is an event.
        status = "processing" if progress < 5 else "completed"
        if progress > 1 and progress < 5:
            await publish(server, f"{uid}-a", user, "processing", progress=progress * 20,
                          currentOperation=f"page {progress}")
        elif progress == 1:
            await publish(server, f"{uid}-a", user, "processing", progress=10)
        else:
            await publish(server, f"{uid}-a", user, status, result={"pages": 5})
    events = await client.recv_until(lambda m: m["type"] == "job_completed")
    assert [e["jobId"] for e in events[:2]] == [f"{uid}-a", f"{uid}-b"]
    a_events = [e for e in events if e["jobId"] == f"{uid}-a"]
    assert [e["seq"] for e in a_events] == list(range(1, len(a_events) + 1))
    ids = [e["id"] for e in events]
    assert ids == sorted(ids, key=lambda i: tuple(map(int, i.split("-"))))
    assert events[-1]["result"] == {"pages": 5} and events[-1]["progress"] == 100
    assert {k for k in events[-1]} >= {"type", "id", "seq", "jobId", "userId", "status",
                                       "progress", "currentOperation", "timestamp",
                                       "workerId", "etaSeconds", "result", "error"}
    await client.close()


async def test_subscribed_snapshot_carries_latest_event_of_each_job(server, uid):
    user = f"{uid}-u"
    ack = await publish(server, f"{uid}-j", user, "processing", progress=40)
    client = await connect(server, server.token(user))
    sub = await client.subscribe(jobIds=[f"{uid}-j", f"{uid}-unknown"])
    assert sub["jobIds"] == [f"{uid}-j", f"{uid}-unknown"]
    (state,) = sub["jobs"]
    assert (state["id"], state["seq"], state["progress"]) == (ack["id"], 1, 40)
    # The job not yet known may be subscribed; its owner's events flow when it appears.
    await publish(server, f"{uid}-unknown", user, "queued")
    (event,) = await client.recv_until(lambda m: m["type"] == "status_update")
    assert event["jobId"] == f"{uid}-unknown"
    await client.close()


async def test_user_cannot_see_another_users_job(server, uid):
    alice, bob = f"{uid}-alice", f"{uid}-bob"
    await publish(server, f"{uid}-bobs", bob, "processing", progress=1)
    client = await connect(server, server.token(alice))
    sub = await client.subscribe(jobIds=[f"{uid}-bobs", f"{uid}-mine"])
    assert client.errors == [{"type": "error", "code": "forbidden", "message": "not your job",
                              "jobId": f"{uid}-bobs"}]
    assert sub["jobIds"] == [f"{uid}-mine"] and sub["jobs"] == []
    # Probing by userId and by `all` yields nothing of bob's either.
    await client.send({"type": "subscribe", "all": True, "userId": bob})
    err = await client.recv()
    assert (err["type"], err["code"], err.get("field")) == ("error", "forbidden", "userId")
    await client.subscribe(all=True)
    await publish(server, f"{uid}-bobs", bob, "processing", progress=50)
    # Bob's job, created under a job id alice subscribed before it existed: still nothing.
    await publish(server, f"{uid}-mine", bob, "queued")
    await publish(server, f"{uid}-own", alice, "queued")
    (event,) = await client.recv_until(lambda m: "jobId" in m)
    assert event["jobId"] == f"{uid}-own"
    await client.close()


async def test_admin_sees_every_users_jobs(server, uid):
    admin = await connect(server, server.token(f"{uid}-root", "admin"))
    await admin.subscribe(all=True)
    await publish(server, f"{uid}-1", f"{uid}-alice", "queued")
    await publish(server, f"{uid}-2", f"{uid}-bob", "queued")
    seen = await admin.recv_until(lambda m: m.get("jobId") == f"{uid}-2")
    assert {m["userId"] for m in seen if m.get("jobId", "").startswith(uid)} == {
        f"{uid}-alice", f"{uid}-bob"}
    # An admin may also name one user.
    one = await connect(server, server.token(f"{uid}-root", "admin"))
    sub = await one.subscribe(all=True, userId=f"{uid}-bob")
    assert [j["jobId"] for j in sub["jobs"]] == [f"{uid}-2"]
    await admin.close()
    await one.close()


async def test_publisher_reads_nothing(server, uid):
    client = await connect(server, server.token(f"{uid}-w", "publisher"))
    await client.send({"type": "subscribe", "all": True})
    err = await client.recv()
    assert (err["type"], err["code"]) == ("error", "forbidden")
    await client.close()


def _forge(claims: dict, alg: str = "none") -> str:
    def b64(obj: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()
    return f"{b64({'alg': alg, 'typ': 'JWT'})}.{b64(claims)}."


@pytest.mark.parametrize("kind", ["none", "forged", "expired", "alg_none", "garbage"])
async def test_bad_tokens_are_closed_with_4401(server, kind):
    tokens = {
        "none": None,
        "forged": jwt.encode({"sub": "x", "exp": 4102444800}, "another-secret-of-32-characters!",
                             algorithm="HS256"),
        "expired": server.token("x", ttl=-10),
        "alg_none": _forge({"sub": "x", "role": "admin", "exp": 4102444800}),
        "garbage": "not.a.token",
    }
    client = await connect(server, tokens[kind], valid=False)
    if kind == "none":
        await client.send({"type": "subscribe", "all": True})  # not auth: refused
    assert await client.expect_close() == 4401


async def test_silent_unauthenticated_connection_closed_after_auth_timeout(server):
    client = await connect(server)
    assert await client.expect_close(timeout=WAIT) == 4401


async def test_in_band_auth(server, uid):
    client = await connect(server)
    await client.send({"type": "auth", "token": server.token(f"{uid}-u")})
    greeting = await client.recv()
    assert (greeting["type"], greeting["userId"], greeting["role"]) == (
        "authenticated", f"{uid}-u", "user")
    sub = await client.subscribe(all=True)
    assert sub["type"] == "subscribed"
    await client.close()


@pytest.mark.parametrize("raw, field", [
    ("{not json", None),
    ('"a string"', None),
    ('{"type": "launch_missiles"}', "type"),
    ('{"type": "subscribe"}', "jobIds"),
    ('{"type": "subscribe", "jobIds": ["bad id!"]}', "jobIds"),
    ('{"type": "subscribe", "jobIds": "j1"}', "jobIds"),
    ('{"type": "subscribe", "all": "yes"}', "all"),
    ('{"type": "subscribe", "all": true, "lastEventId": "yesterday"}', "lastEventId"),
])
async def test_bad_messages_get_an_error_and_keep_the_connection(server, uid, raw, field):
    client = await connect(server, server.token(f"{uid}-u"))
    await client.send(raw)
    err = await client.recv()
    assert (err["type"], err["code"]) == ("error", "invalid_message")
    assert err.get("field") == field
    await client.send({"type": "ping"})
    assert (await client.recv())["type"] == "pong"
    await client.close()


async def test_oversized_message_closes_with_1009(server, uid):
    client = await connect(server, server.token(f"{uid}-u"))
    await client.send({"type": "ping", "pad": "x" * 5000})
    assert await client.expect_close() == 1009


async def test_unsubscribe_stops_delivery(server, uid):
    user = f"{uid}-u"
    client = await connect(server, server.token(user))
    await client.subscribe(jobIds=[f"{uid}-a", f"{uid}-b"])
    await client.send({"type": "unsubscribe", "jobIds": [f"{uid}-a"]})
    assert (await client.recv()) == {"type": "unsubscribed", "jobIds": [f"{uid}-a"]}
    await publish(server, f"{uid}-a", user, "queued")
    await publish(server, f"{uid}-b", user, "queued")
    (event,) = await client.recv_until(lambda m: "jobId" in m)
    assert event["jobId"] == f"{uid}-b"
    await client.close()


async def test_reconnect_with_last_event_id_gets_exactly_the_missed_events(server, uid):
    user = f"{uid}-u"
    client = await connect(server, server.token(user))
    await client.subscribe(all=True)
    await publish(server, f"{uid}-still", user, "queued")
    await publish(server, f"{uid}-j", user, "queued")
    await publish(server, f"{uid}-j", user, "processing", progress=10)
    seen = await client.recv_until(lambda m: m.get("seq") == 2)
    last_id = seen[-1]["id"]
    await client.close()

    await publish(server, f"{uid}-j", user, "processing", progress=20, currentOperation="a")
    await publish(server, f"{uid}-k", user, "queued")
    await asyncio.sleep(0.15)  # past the conflation interval: the next progress goes out
    await publish(server, f"{uid}-j", user, "processing", progress=30)

    again = await connect(server, server.token(user))
    sub = await again.subscribe(all=True, lastEventId=last_id)
    # Jobs that moved since the cursor come as events, not in the snapshot: nothing twice.
    assert [j["jobId"] for j in sub["jobs"]] == [f"{uid}-still"]
    missed = await again.recv_until(lambda m: m.get("jobId") == f"{uid}-j" and m["seq"] == 4)
    # j's seq 3 was conflated and went out a moment later, possibly after k's first event.
    assert sorted((m["jobId"], m["seq"]) for m in missed) == [
        (f"{uid}-j", 3), (f"{uid}-j", 4), (f"{uid}-k", 1)]
    ids = [tuple(map(int, m["id"].split("-"))) for m in missed]
    assert ids == sorted(ids)
    # ...and then the live stream, with nothing repeated.
    await publish(server, f"{uid}-k", user, "processing", progress=1)
    (live,) = await again.recv_until(lambda m: "jobId" in m)
    assert (live["jobId"], live["seq"]) == (f"{uid}-k", 2)
    await again.close()


async def test_resume_point_as_unix_time(server, uid):
    user = f"{uid}-u"
    first = await publish(server, f"{uid}-j", user, "queued")
    ms = int(first["id"].split("-")[0])
    await asyncio.sleep(0.01)
    await publish(server, f"{uid}-j", user, "processing", progress=1)
    client = await connect(server, server.token(user))
    await client.subscribe(all=True, lastEventId=str(ms))
    (event,) = await client.recv_until(lambda m: "jobId" in m)
    assert event["seq"] == 2
    await client.close()


async def test_token_expiry_closes_4401_unless_refreshed(server, uid):
    user = f"{uid}-u"
    # Minted first: `refreshed`'s first token expires no later than `short`'s.
    refreshed = await connect(server, server.token(user, ttl=1))
    short = await connect(server, server.token(user, ttl=1))
    await short.subscribe(all=True)
    await refreshed.subscribe(all=True)
    await refreshed.send({"type": "auth", "token": server.token(user, ttl=60)})
    ok = await refreshed.recv()
    assert ok["type"] == "authenticated" and ok["userId"] == user
    # `short` is closed once its token expires: by then `refreshed`'s first one has too.
    assert await short.expect_close(timeout=WAIT) == 4401
    await publish(server, f"{uid}-j", user, "queued")
    (event,) = await refreshed.recv_until(lambda m: "jobId" in m)
    assert event["jobId"] == f"{uid}-j"
    # A refresh naming someone else is refused and changes nothing.
    await refreshed.send({"type": "auth", "token": server.token("someone-else", ttl=60)})
    assert (await refreshed.recv())["code"] == "unauthorized"
    await refreshed.close()


async def test_200_concurrent_clients_each_get_all_their_own_events(server, uid):
    n, updates = 200, 5
    clients = await asyncio.gather(
        *(connect(server, server.token(f"{uid}-{i}")) for i in range(n)))
    await asyncio.gather(*(c.subscribe(all=True) for c in clients))
    import httpx

    async with httpx.AsyncClient(base_url=server.url, timeout=WAIT) as http:
        headers = server.headers("pub", "publisher")
        statuses = ["queued", *["processing"] * (updates - 2), "completed"]
        for step, status in enumerate(statuses):
            batch = [{"jobId": f"{uid}-job{i}", "userId": f"{uid}-{i}", "status": status,
                      "progress": step * 10} for i in range(n)]
            r = await http.post("/api/v2/jobs/status", json=batch, headers=headers)
            assert r.status_code == 202

    async def collect(i, client):
        msgs = await client.recv_until(lambda m: m["type"] == "job_completed", timeout=3 * WAIT)
        assert {m["jobId"] for m in msgs} == {f"{uid}-job{i}"}
        seqs = [m["seq"] for m in msgs]
        assert seqs == list(range(1, len(seqs) + 1))  # no gaps, no repeats, in order
        return len(msgs)

    counts = await asyncio.gather(*(collect(i, c) for i, c in enumerate(clients)))
    assert all(c >= 3 for c in counts)  # queued, ≥1 progress (conflated), completed
    await asyncio.gather(*(c.close() for c in clients))


async def test_heartbeats_and_cursor_expiry(ws_path):
    srv = start_server_on(ws_path, heartbeat_seconds=0.2, history_size=3)
    try:
        client = await connect(srv, srv.token("u"))
        await client.subscribe(all=True)
        import orjson

        beat = orjson.loads(await asyncio.wait_for(client.ws.recv(), WAIT))
        assert beat["type"] == "heartbeat" and "timestamp" in beat
        first = await publish(srv, "j0", "u", "queued")
        for i in range(1, 5):
            await publish(srv, f"j{i}", "u", "queued")
        late = await connect(srv, srv.token("u"))
        sub_msgs = []
        await late.send({"type": "subscribe", "all": True, "lastEventId": first["id"]})
        sub_msgs = await late.recv_until(lambda m: m["type"] == "subscribed")
        assert sub_msgs[0]["code"] == "cursor_expired"
        assert len(sub_msgs[-1]["jobs"]) == 5
        await client.close()
        await late.close()
    finally:
        srv.stop()


async def test_server_restart_closes_with_1012(ws_path):
    srv = start_server_on(ws_path)
    client = await connect(srv, srv.token("u"))
    await client.subscribe(all=True)
    srv.process.terminate()
    assert await client.expect_close() == 1012
    srv.stop()


async def test_handshake_with_cookie_from_foreign_origin_is_refused(server, uid):
    ws = await websockets.connect(
        server.ws_url, open_timeout=WAIT, origin="http://evil.example",
        additional_headers={"Cookie": f"jobwire_token={server.token(uid)}"})
    from tests.conftest import Client

    assert await Client(ws).expect_close() == 1008


async def test_progress_is_conflated_but_the_latest_always_arrives(server, uid):
    user = f"{uid}-u"
    client = await connect(server, server.token(user))
    await client.subscribe(all=True)
    import httpx

    async with httpx.AsyncClient(base_url=server.url, timeout=WAIT) as http:
        batch = [{"jobId": f"{uid}-j", "userId": user, "status": "processing", "progress": p}
                 for p in range(1, 31)]
        results = (await http.post("/api/v2/jobs/status", json=batch,
                                   headers=server.headers("pub", "publisher"))).json()["results"]
    assert results[0]["seq"] == 1 and results[-1]["id"] is None  # the rest wait
    events = await client.recv_until(lambda m: m.get("progress") == 30)
    assert [e["seq"] for e in events] == [1, 2]  # first at once, latest after the interval
    await client.close()


async def test_stalled_job_gets_one_event_and_the_next_update_clears_it(ws_path):
    srv = start_server_on(ws_path, stalled_after_seconds=0.3)
    try:
        client = await connect(srv, srv.token("u"))
        await client.subscribe(all=True)
        await publish(srv, "j", "u", "processing", progress=10)
        msgs = await client.recv_until(lambda m: m["type"] == "job_stalled")
        stalled = msgs[-1]
        assert (stalled["seq"], stalled["jobId"]) == (2, "j") and stalled["lastUpdate"]
        # A job that falls silent after j's stall stalls after j would have a second time:
        # its stall event arriving first means j had none.
        await publish(srv, "k", "u", "processing", progress=10)
        later = await client.recv_until(lambda m: m["type"] == "job_stalled", timeout=3 * WAIT)
        assert [(m["jobId"], m["type"]) for m in later] == [
            ("k", "status_update"), ("k", "job_stalled")]
        await publish(srv, "j", "u", "processing", progress=10)
        (cleared,) = await client.recv_until(lambda m: "jobId" in m)
        assert (cleared["type"], cleared["seq"]) == ("status_update", 3)
        await client.close()
    finally:
        srv.stop()


async def test_peer_that_stops_answering_pings_is_closed(ws_path):
    """A raw socket completes the handshake and then never answers the server's pings (its
    TCP acknowledges everything: only a ping finds it out)."""
    srv = start_server_on(ws_path, heartbeat_seconds=0.3, ws_ping_seconds=0.3)
    try:
        host, port = srv.url.removeprefix("http://").split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        key = base64.b64encode(b"0123456789abcdef").decode()
        writer.write((f"GET /ws/jobs?token={srv.token('u')} HTTP/1.1\r\nHost: {host}\r\n"
                      "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                      f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), WAIT)
        assert head.startswith(b"HTTP/1.1 101")
        data = b""
        async with asyncio.timeout(WAIT):
            while chunk := await reader.read(4096):
                data += chunk
        frames = parse_frames(data)
        assert frames[0].opcode is Opcode.TEXT  # authenticated
        # The server pinged, got no pong, and hung up: the close frame last, nothing after.
        assert Opcode.PING in [f.opcode for f in frames]
        assert frames[-1].opcode is Opcode.CLOSE
        assert Close.parse(frames[-1].data).code == 1011
        writer.close()
    finally:
        srv.stop()


async def test_cookie_auth_from_the_same_origin_is_accepted(server, uid):
    origin = server.url  # the page the server itself serves
    ws = await websockets.connect(
        server.ws_url, open_timeout=WAIT, origin=origin,
        additional_headers={"Cookie": f"jobwire_token={server.token(uid)}"})
    from tests.conftest import Client

    client = Client(ws)
    assert (await client.subscribe(all=True))["type"] == "subscribed"
    await client.close()


async def test_transports_setting_turns_websocket_off(ws_path):
    srv = start_server_on(ws_path, transports="sse,longpoll,poll")
    try:
        with pytest.raises(websockets.InvalidStatus):
            await connect(srv, srv.token("u"))
        import httpx

        async with httpx.AsyncClient(base_url=srv.url, timeout=WAIT) as http:
            r = await http.get("/api/v2/jobs/poll", headers=srv.headers("u"))
            assert r.status_code == 200
    finally:
        srv.stop()
