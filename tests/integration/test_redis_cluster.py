"""jobwire on a Redis Cluster (three real primaries): where a user's data lives, which
instance receives what, and an admin's single cursor across shards."""

from __future__ import annotations

import asyncio
import itertools
import random

import httpx
import pytest
import redis

from jobwire.broker.clusterkeys import ClusterKeys
from tests.conftest import WAIT, Client, connect, metric, publish, start_server
from tests.rediscluster import start_redis_cluster

PARTITIONS = 16  # the default


@pytest.fixture(scope="module")
def shards():
    cluster = start_redis_cluster(masters=3, replicas=0)
    a = start_server(redis_url=cluster.url, max_updates_per_job_per_second=0)
    b = start_server(redis_url=cluster.url, secret=a.secret, max_updates_per_job_per_second=0)
    yield cluster, a, b
    a.stop()
    b.stop()
    cluster.stop()


def node_clients(cluster) -> list[redis.Redis]:
    return [redis.Redis(port=node.port, decode_responses=True) for node in cluster.masters()]


async def test_a_users_jobs_state_and_history_share_one_slot(shards, uid):
    cluster, a, _ = shards
    users = [f"{uid}-u{i}" for i in range(6)]
    for user in users:
        for job in range(3):
            await publish(a, f"{uid}-{user}-j{job}", user, "queued")
    keys = ClusterKeys("jobwire:", PARTITIONS)
    masters = set()
    for user in users:
        slots = set()
        for node in node_clients(cluster):
            for key in node.scan_iter(match=f"*{user}*", count=1000):
                slots.add(node.execute_command("CLUSTER", "KEYSLOT", key))
                masters.add(node.connection_pool.connection_kwargs["port"])
        # Its job hashes, event-id maps, stream and job set; owner claims live apart.
        owner_slots = {cluster.slot_of(keys.owner(f"{uid}-{user}-j{job}")) for job in range(3)}
        assert len(slots - owner_slots) == 1, (user, slots)
        assert slots - owner_slots == {cluster.slot_of(keys.stream(keys.partition(user)))}
    assert len(masters) > 1  # the users are spread over shards


async def test_an_instance_receives_only_the_events_of_users_it_serves(shards, uid):
    _, a, b = shards
    alice, bob = f"{uid}-alice", f"{uid}-bob"
    on_a = await connect(a, a.token(alice))
    await on_a.subscribe(all=True)
    on_b = await connect(b, b.token(bob))
    await on_b.subscribe(all=True)
    before = [await metric(s, "jobwire_broker_events_received_total") for s in (a, b)]
    for i in range(1, 21):
        await publish(a, f"{uid}-ja", alice, progress=i)
        await publish(a, f"{uid}-jb", bob, progress=i)
    await on_a.recv_until(lambda m: m.get("seq") == 20)
    await on_b.recv_until(lambda m: m.get("seq") == 20)
    after = [await metric(s, "jobwire_broker_events_received_total") for s in (a, b)]
    # Each instance got its user's 20 events and none of the other's.
    assert [x - y for x, y in zip(after, before, strict=True)] == [20, 20]

    # An admin on `a`: from then on `a` receives everyone's events (its user's twice: on the
    # user's channel and on the partition's) and the admin gets them in one id order.
    admin = await connect(a, a.token(f"{uid}-ops", "admin"))
    await admin.subscribe(all=True)
    for i in range(21, 26):
        await publish(b, f"{uid}-ja", alice, progress=i)
        await publish(b, f"{uid}-jb", bob, progress=i)
    got = await admin.recv_until(lambda m: m.get("jobId") == f"{uid}-jb" and m["seq"] == 25)
    mine = [m for m in got if m.get("jobId", "").startswith(uid)]
    assert sorted((m["jobId"], m["seq"]) for m in mine) == sorted(
        (j, s) for j in (f"{uid}-ja", f"{uid}-jb") for s in range(21, 26))
    ids = [tuple(map(int, m["id"].split("-"))) for m in got if "id" in m]
    assert ids == sorted(ids)
    await on_b.recv_until(lambda m: m.get("seq") == 25)
    final = [await metric(s, "jobwire_broker_events_received_total") for s in (a, b)]
    assert final[1] - after[1] == 5
    assert final[0] - after[0] >= 15
    for client in (on_a, on_b, admin):
        await client.close()


async def admin_for_a_while(server, cursor: str, seconds: float) -> tuple[list[dict], str]:
    """One admin connection: resume from `cursor`, read for `seconds`, hang up."""
    client: Client = await connect(server, server.token("ops", "admin"))
    subscribed = await client.subscribe(all=True, lastEventId=cursor)
    assert not client.errors, client.errors  # no cursor_expired: history is ample here
    got: list[dict] = []
    try:
        async with asyncio.timeout(seconds):
            while True:
                message = await client.recv()
                if "jobId" in message and "id" in message:
                    got.append(message)
    except TimeoutError:
        pass
    await client.close()
    return got, got[-1]["id"] if got else max(cursor, subscribed["cursor"], key=position)


def position(event_id: str) -> tuple[int, int]:
    ms, n = event_id.split("-")
    return int(ms), int(n)


async def test_an_admin_resuming_again_and_again_while_every_shard_commits_gets_each_event_once(
        shards, uid):
    _, a, b = shards
    servers = (a, b)
    users = [f"{uid}-u{i}" for i in range(12)]
    keys = ClusterKeys("jobwire:", PARTITIONS)
    assert len({keys.partition(u) for u in users}) >= 6
    first = await connect(a, a.token("ops", "admin"))
    cursor = (await first.subscribe(all=True))["cursor"]
    await first.close()
    acked: list[str] = []

    async def worker(user: str) -> None:
        async with httpx.AsyncClient(timeout=WAIT) as http:
            for i in range(1, 31):
                server = servers[i % 2]
                response = await http.post(
                    f"{server.url}/api/v2/jobs/{user}-j/status",
                    headers=server.headers("pub", "publisher"),
                    json={"userId": user, "status": "processing", "progress": i})
                assert response.status_code == 202, response.text
                acked.append(response.json()["id"])
                await asyncio.sleep(random.uniform(0, 0.01))

    publishing = asyncio.gather(*(worker(u) for u in users))
    received: list[dict] = []
    after_the_end = 0
    for n in itertools.count():
        done = publishing.done()
        got, cursor = await admin_for_a_while(servers[n % 2], cursor,
                                              random.uniform(0.05, 0.2) if not done else 0.5)
        received += got
        after_the_end += done
        if after_the_end == 3:  # everything published was there to read twice over
            break
        assert n < 300
    await publishing
    ids = [m["id"] for m in received]
    assert len(ids) == len(set(ids)), "an event came twice"
    assert [position(i) for i in ids] == sorted(position(i) for i in ids)
    mine = [m for m in received if m["jobId"].startswith(uid)]
    assert sorted(m["id"] for m in mine) == sorted(acked)
    for user in users:
        assert [m["seq"] for m in mine if m["userId"] == user] == list(range(1, 31))


async def test_the_broker_stops_within_seconds_whatever_its_loops_are_doing(shards, uid):
    """redis-py's cluster client can ignore a cancellation that lands mid-command: stopping
    must not depend on it (the sweeper here runs a command every few milliseconds)."""
    from jobwire.broker.base import EVERYONE
    from jobwire.broker.cluster import STOP_SECONDS, ClusterBroker
    from jobwire.protocol import parse_update

    cluster, _, _ = shards
    loop = asyncio.get_running_loop()
    for n in range(40):
        broker = ClusterBroker(cluster.url, prefix=f"{uid}{n}:", stalled_after_seconds=0.3)
        await broker.start()
        await broker.follow([EVERYONE, "u"])
        await broker.publish(parse_update({"jobId": "j", "userId": "u", "status": "processing"}))
        await asyncio.sleep(random.uniform(0, 0.1))
        started = loop.time()
        await asyncio.wait({asyncio.ensure_future(broker.stop())}, timeout=4 * STOP_SECONDS)
        assert loop.time() - started < STOP_SECONDS + 1, n
