"""SIGTERM on one of two instances with 200 clients on each transport: every client moves to
the other instance, resumes from its cursor, and misses nothing."""

from __future__ import annotations

import asyncio

import httpx
import orjson
import websockets
from httpx_sse import aconnect_sse

from tests.conftest import WAIT, start_redis, start_server, wait_for_sessions

PER_TRANSPORT = 200
ROUNDS = 6


async def ws_client(a, b, user, seen):
    async def follow(server, last):
        query = {"type": "subscribe", "all": True, **({"lastEventId": last} if last else {})}
        async with websockets.connect(f"{server.ws_url}?token={server.token(user)}",
                                      open_timeout=WAIT) as ws:
            await ws.send(orjson.dumps(query).decode())
            async for raw in ws:
                msg = orjson.loads(raw)
                if "jobId" in msg:
                    seen.append(msg)
                    if msg["seq"] == ROUNDS:
                        return
    try:
        await follow(a, None)
    except websockets.ConnectionClosed as exc:
        assert exc.rcvd is not None and exc.rcvd.code == 1012  # "server restarting"
    if not seen or seen[-1]["seq"] < ROUNDS:
        await follow(b, seen[-1]["id"] if seen else None)


async def sse_client(http, a, b, user, seen):
    async def follow(server, last):
        headers = {"Authorization": f"Bearer {server.token(user)}",
                   **({"Last-Event-ID": last} if last else {})}
        async with aconnect_sse(http, "GET", f"{server.url}/api/v2/jobs/stream",
                                headers=headers) as source:
            async for sse in source.aiter_sse():
                msg = orjson.loads(sse.data)
                if "jobId" in msg:
                    seen.append(msg)
                    if msg["seq"] == ROUNDS:
                        return
    await follow(a, None)  # ends when the instance drains
    if not seen or seen[-1]["seq"] < ROUNDS:
        await follow(b, seen[-1]["id"] if seen else None)


async def longpoll_client(http, a, b, user, seen, ready):
    server = a
    headers = {"Authorization": f"Bearer {a.token(user)}"}
    cursor = (await http.get(f"{a.url}/api/v2/jobs/poll", headers=headers)).json()["cursor"]
    ready.set()
    while not seen or seen[-1]["seq"] < ROUNDS:
        try:
            r = await http.get(f"{server.url}/api/v2/jobs/poll", headers=headers,
                               params={"last_seen": cursor, "timeout": 10})
        except httpx.TransportError:
            server = b  # the instance is gone: carry on at the other one
            continue
        if r.status_code != 200:
            server = b
            continue
        body = r.json()
        seen.extend(body["events"])
        cursor = body["cursor"]


async def test_sigterm_moves_every_client_to_the_other_instance_without_loss(uid):
    redis = start_redis()
    a = start_server(redis_url=redis.url, max_updates_per_job_per_second=0)
    b = start_server(redis_url=redis.url, max_updates_per_job_per_second=0, secret=a.secret)
    try:
        users = {t: [f"{uid}-{t}{i}" for i in range(PER_TRANSPORT)]
                 for t in ("ws", "sse", "lp")}
        seen = {u: [] for group in users.values() for u in group}
        limits = httpx.Limits(max_connections=2000, max_keepalive_connections=2000)
        async with httpx.AsyncClient(timeout=3 * WAIT, limits=limits) as http:
            ready = [asyncio.Event() for _ in users["lp"]]
            tasks = [asyncio.create_task(ws_client(a, b, u, seen[u])) for u in users["ws"]]
            tasks += [asyncio.create_task(sse_client(http, a, b, u, seen[u]))
                      for u in users["sse"]]
            tasks += [asyncio.create_task(longpoll_client(http, a, b, u, seen[u], r))
                      for u, r in zip(users["lp"], ready, strict=True)]
            await wait_for_sessions(a, "websocket", PER_TRANSPORT, timeout=6 * WAIT)
            await wait_for_sessions(a, "sse", PER_TRANSPORT, timeout=6 * WAIT)
            await asyncio.wait_for(asyncio.gather(*(r.wait() for r in ready)), 6 * WAIT)
            everyone = [u for group in users.values() for u in group]
            publisher = {"Authorization": f"Bearer {b.token('w', 'publisher')}"}
            for n in range(1, ROUNDS + 1):
                status = "queued" if n == 1 else "completed" if n == ROUNDS else "processing"
                batch = [{"jobId": f"{u}-job", "userId": u, "status": status,
                          "progress": 100 * n // ROUNDS} for u in everyone]
                r = await http.post(f"{b.url}/api/v2/jobs/status", json=batch,
                                    headers=publisher)
                assert r.status_code == 202
                if n == ROUNDS // 3:
                    a.process.terminate()  # SIGTERM while events keep flowing
                await asyncio.sleep(0.05)
            await asyncio.wait_for(asyncio.gather(*tasks), 12 * WAIT)
        assert a.process.wait(WAIT) in (0, -15)
        for user, events in seen.items():
            assert [e["seq"] for e in events] == list(range(1, ROUNDS + 1)), user
    finally:
        a.stop()
        b.stop()
        redis.stop()
