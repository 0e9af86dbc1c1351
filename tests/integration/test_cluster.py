"""Many `jobwire serve` processes sharing one private redis-server (or a Redis Cluster) behave
as one service."""

from __future__ import annotations

import asyncio
import tempfile
import time

import httpx
import orjson
import pytest
import redis.asyncio as aioredis
from httpx_sse import aconnect_sse

from jobwire.broker.redis import CHANNELS
from tests.conftest import WAIT, connect, eventually, publish, start_redis, start_server
from tests.rediscluster import start_redis_cluster


@pytest.fixture(scope="module", params=["redis", "redis-cluster"])
def cluster(request):
    """Three instances on one Redis, or on a Redis Cluster of three primaries."""
    # No conflation: every update is an event at once, so no test waits for a held one.
    redis = start_redis() if request.param == "redis" else start_redis_cluster(3, 0)
    first = start_server(redis_url=redis.url, max_updates_per_job_per_second=0)
    rest = [start_server(redis_url=redis.url, secret=first.secret,
                         max_updates_per_job_per_second=0) for _ in range(2)]
    yield [first, *rest]
    for server in (first, *rest):
        server.stop()
    redis.stop()


async def test_publish_on_one_instance_reaches_every_transport_on_every_instance(cluster, uid):
    a, b, c = cluster
    user = f"{uid}-u"
    ws_b = await connect(b, b.token(user))
    await ws_b.subscribe(all=True)
    ws_c = await connect(c, c.token(user))
    await ws_c.subscribe(jobIds=[f"{uid}-j"])
    async with httpx.AsyncClient(timeout=WAIT) as http:
        first = await publish(a, f"{uid}-j", user, "queued")
        poll = asyncio.create_task(http.get(
            f"{c.url}/api/v2/jobs/poll", headers=c.headers(user),
            params={"last_seen": first["id"], "timeout": 10}))
        async with aconnect_sse(http, "GET", f"{b.url}/api/v2/jobs/stream",
                                headers={**b.headers(user), "Last-Event-ID": first["id"]}) as sse:
            events = sse.aiter_sse()
            assert orjson.loads((await anext(events)).data)["type"] == "subscribed"
            second = await publish(a, f"{uid}-j", user, "processing", progress=50)
            streamed = orjson.loads((await asyncio.wait_for(anext(events), WAIT)).data)
        polled = (await asyncio.wait_for(poll, WAIT)).json()["events"]
        state = (await http.get(f"{b.url}/api/v2/jobs/{uid}-j", headers=b.headers(user))).json()
    for client in (ws_b, ws_c):
        got = await client.recv_until(lambda m: m.get("seq") == 2)
        assert [m["id"] for m in got] == [first["id"], second["id"]]
    assert streamed["id"] == second["id"] and [e["id"] for e in polled] == [second["id"]]
    assert state["id"] == second["id"]
    await ws_b.close()
    await ws_c.close()


async def test_client_moved_between_instances_resumes_exactly(cluster, uid):
    a, b, _ = cluster
    user = f"{uid}-u"
    on_a = await connect(a, a.token(user))
    await on_a.subscribe(all=True)
    await publish(b, f"{uid}-j", user, "queued")
    seen = await on_a.recv_until(lambda m: "jobId" in m)
    await on_a.close()
    missed = [await publish(a, f"{uid}-j", user, "processing", progress=10),
              await publish(b, f"{uid}-k", user, "queued")]
    on_b = await connect(b, b.token(user))
    await on_b.subscribe(all=True, lastEventId=seen[-1]["id"])
    got = await on_b.recv_until(lambda m: m.get("jobId") == f"{uid}-k")
    assert [m["id"] for m in got] == [m["id"] for m in missed]
    live = await publish(a, f"{uid}-k", user, "processing", progress=1)
    (event,) = await on_b.recv_until(lambda m: "jobId" in m)
    assert event["id"] == live["id"]
    await on_b.close()


async def test_long_polls_alternating_between_instances_miss_nothing(cluster, uid):
    user = f"{uid}-u"
    published = []
    received = []
    async with httpx.AsyncClient(timeout=3 * WAIT) as http:
        cursor = (await http.get(f"{cluster[0].url}/api/v2/jobs/poll",
                                 headers=cluster[0].headers(user))).json()["cursor"]
        for i in range(12):
            server = cluster[i % 3]
            publisher = cluster[(i + 1) % 3]
            status = "queued" if i == 0 else "processing"
            published.append((await publish(publisher, f"{uid}-j", user, status,
                                             progress=i))["id"])
            body = (await http.get(f"{server.url}/api/v2/jobs/poll", headers=server.headers(user),
                                   params={"last_seen": cursor, "timeout": 5})).json()
            received += [e["id"] for e in body["events"]]
            cursor = body["cursor"]
    assert received == published


async def test_racing_publishers_on_two_instances_keep_seq_and_owner(cluster, uid):
    a, b, c = cluster
    watcher = await connect(c, c.token("root", "admin"))
    await watcher.subscribe(jobIds=[uid])
    async with httpx.AsyncClient(timeout=3 * WAIT) as http:
        async def send(server, user, n):
            codes = []
            for i in range(n):
                r = await http.post(f"{server.url}/api/v2/jobs/{uid}/status",
                                    headers=server.headers("w", "publisher"),
                                    json={"userId": user, "status": "processing",
                                          "progress": 0, "currentOperation": f"{user} {i}"})
                codes.append(r.status_code)
            return codes
        users = ["alice", "bob", "bob", "alice"]
        results = await asyncio.gather(*(send(server, user, 20)
                                         for server, user in zip([a, b, a, b], users,
                                                                 strict=True)))
        state = (await http.get(f"{a.url}/api/v2/jobs/{uid}",
                                headers=a.headers("root", "admin"))).json()
    owner = state["userId"]
    for user, codes in zip(users, results, strict=True):
        assert set(codes) == ({202} if user == owner else {409})  # ownership never stolen
    got = await watcher.recv_until(lambda m: m.get("seq") == state["seq"])
    assert [m["seq"] for m in got] == list(range(1, state["seq"] + 1))  # gapless, in order
    assert {m["userId"] for m in got} == {owner}
    await watcher.close()


async def test_redis_restart_under_load_loses_nothing_for_connected_clients(uid):
    with tempfile.TemporaryDirectory() as data:
        persist = ("--appendonly", "yes", "--appendfsync", "always", "--dir", data)
        redis = start_redis(None, *persist)
        a = start_server(redis_url=redis.url)
        b = start_server(redis_url=redis.url, secret=a.secret)
        try:
            user = f"{uid}-u"
            client = await connect(b, b.token(user))
            await client.subscribe(all=True)
            acknowledged: list[str] = []
            stop = asyncio.Event()

            async def load():
                async with httpx.AsyncClient(timeout=WAIT) as http:
                    i = 0
                    while not stop.is_set():
                        r = await http.post(f"{a.url}/api/v2/jobs/{uid}-{i}/status",
                                            headers=a.headers("w", "publisher"),
                                            json={"userId": user, "status": "queued"})
                        if r.status_code == 202:
                            acknowledged.append(r.json()["id"])
                            i += 1
                        else:
                            assert r.status_code == 503  # refused, never silently dropped
                            await asyncio.sleep(0.05)

            loader = asyncio.create_task(load())
            await eventually(lambda: len(acknowledged) >= 20)
            redis.stop()
            async with httpx.AsyncClient(timeout=WAIT) as http:
                async def ready(server, status):
                    return (await http.get(f"{server.url}/readyz")).status_code == status

                await eventually(lambda: ready(a, 503))
                down_at = len(acknowledged)
                redis = start_redis(redis.port, *persist)
                restarted = time.monotonic()
                await eventually(lambda: ready(b, 200), timeout=3 * WAIT)
                recovery = time.monotonic() - restarted
                await eventually(lambda: len(acknowledged) >= down_at + 20, timeout=3 * WAIT)
            stop.set()
            await loader
            got = await client.recv_until(lambda m: m.get("id") == acknowledged[-1],
                                          timeout=3 * WAIT)
            ids = [m["id"] for m in got if "jobId" in m]
            assert ids == acknowledged  # every acknowledged event, once, in order
            print(f"recovery after Redis restart: {recovery:.2f} s")
            await client.close()
        finally:
            a.stop()
            b.stop()
            redis.stop()


async def test_stalled_job_reported_once_across_two_instances(uid):
    redis = start_redis()
    a = start_server(redis_url=redis.url, stalled_after_seconds=0.3)
    b = start_server(redis_url=redis.url, stalled_after_seconds=0.3, secret=a.secret)
    try:
        user = f"{uid}-u"
        watchers = [await connect(s, s.token(user)) for s in (a, b)]
        for w in watchers:
            await w.subscribe(all=True)
        await publish(a, f"{uid}-j", user, "processing", progress=10)
        for w in watchers:
            got = await w.recv_until(lambda m: m["type"] == "job_stalled")
            assert [m["seq"] for m in got] == [1, 2]
        # A second job falls silent after that report. By the time it is reported stalled in
        # turn, both sweepers have passed over the first job several times: a second report
        # of it would have come before.
        await publish(b, f"{uid}-k", user, "processing", progress=10)
        for w in watchers:
            got = await w.recv_until(lambda m: m["type"] == "job_stalled")
            assert [(m["jobId"], m["type"]) for m in got] == [
                (f"{uid}-k", "status_update"), (f"{uid}-k", "job_stalled")]
        await publish(b, f"{uid}-j", user, "processing", progress=10)
        for w in watchers:
            (cleared,) = await w.recv_until(lambda m: m.get("jobId") == f"{uid}-j")
            assert (cleared["type"], cleared["seq"]) == ("status_update", 3)
            await w.close()
    finally:
        a.stop()
        b.stop()
        redis.stop()


async def test_a_batch_goes_out_in_few_pubsub_messages_in_id_order(uid):
    """Consecutive events of one channel share a message, a line each; across messages and
    lines the ids only grow, so a subscriber routes them in order."""
    redis = start_redis()
    server = start_server(redis_url=redis.url, max_updates_per_job_per_second=0)
    listener = aioredis.Redis(port=redis.port, decode_responses=True)
    pubsub = listener.pubsub(ignore_subscribe_messages=True)
    try:
        await pubsub.subscribe(*CHANNELS)
        user, a, b = f"{uid}-u", f"{uid}-a", f"{uid}-b"
        batch = [(a, "queued", None), (b, "queued", None), (a, "processing", 10),
                 (a, "processing", 20), (b, "processing", 30), (b, "processing", 40),
                 (a, "completed", None)]
        async with httpx.AsyncClient(base_url=server.url, timeout=WAIT) as http:
            r = await http.post("/api/v2/jobs/status", headers=server.headers("w", "publisher"),
                                json=[{"jobId": j, "userId": user, "status": s,
                                       **({"progress": p} if p is not None else {})}
                                      for j, s, p in batch])
        ids = [result["id"] for result in r.json()["results"]]
        messages = []
        async with asyncio.timeout(WAIT):
            while sum(len(lines) for _, lines in messages) < len(batch):
                m = await pubsub.get_message(timeout=WAIT)
                if m is not None:
                    messages.append((m["channel"], m["data"].split("\n")))
        assert [(channel, len(lines)) for channel, lines in messages] == [
            ("job_status_updates", 3), ("job_progress_updates", 1), ("job_status_updates", 1),
            ("job_progress_updates", 1), ("job_completion_updates", 1)]
        lines = [line.split(" ", 2) for _, group in messages for line in group]
        assert [event_id for event_id, _, _ in lines] == ids
        assert [flag for _, flag, _ in lines] == ["0", "0", "0", "1", "0", "1", "0"]
        assert orjson.loads(lines[-1][2])["type"] == "job_completed"
    finally:
        await pubsub.aclose()
        await listener.aclose()
        server.stop()
        redis.stop()
