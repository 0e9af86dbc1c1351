"""Redis Cluster faults under load, on a real 3+3 cluster behind real `jobwire serve`
processes: a master killed (its shard is back within seconds, the other shards never notice),
durable mode across a failover (no acknowledged update lost; an explicit 503 while the new
primary has no replica), and a slot migrated while it is written to. Every client must end
with every acknowledged event of its user exactly once, in order."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from jobwire.broker.clusterkeys import ClusterKeys
from jobwire.cursor import parse_id
from tests.conftest import WAIT, Client, Server, connect, eventually, start_server
from tests.rediscluster import RedisCluster, RedisNode, ask, start_redis_cluster

KEYS = ClusterKeys("jobwire:", 16)  # the servers' defaults: prefix and partitions
PACE = 0.03  # seconds between one worker's updates
RETRY = 0.05  # seconds before a refused update is sent again
RECOVERY_LIMIT = 10.0  # a killed master's shard publishes again within this
MAX_LATENCY = 1.0  # the other shards' publish-to-client latency, and gap between deliveries
FILLER_KEYS = 20_000  # in the moving slot: 200 MIGRATE batches, time to reconnect meanwhile


@pytest.fixture(scope="module")
def cluster() -> Iterator[RedisCluster]:
    cluster = start_redis_cluster(masters=3, replicas=1)
    yield cluster
    cluster.stop()


@pytest.fixture(scope="module")
def servers(cluster: RedisCluster) -> Iterator[list[Server]]:
    """Two instances on the cluster. No conflation: every update is an event at once."""
    first = start_server(redis_url=cluster.url, max_updates_per_job_per_second=0)
    second = start_server(redis_url=cluster.url, secret=first.secret,
                          max_updates_per_job_per_second=0)
    yield [first, second]
    first.stop()
    second.stop()


def slot_of_user(user: str) -> int:
    return RedisCluster.slot_of(KEYS.stream(KEYS.partition(user)))


def users_by_master(cluster: RedisCluster, prefix: str, per_master: int) -> dict[str, list[str]]:
    """`per_master` users whose partition each master holds, by the master's node id."""
    owners = {slot: v.node_id for v in cluster.view().values()
              if v.is_master and not v.failed for slot in v.slots}
    users: dict[str, list[str]] = {m.node_id: [] for m in cluster.masters()}
    for i in itertools.count():
        user = f"{prefix}-u{i}"
        shard = users[owners[slot_of_user(user)]]
        if len(shard) < per_master:
            shard.append(user)
        if all(len(shard) == per_master for shard in users.values()):
            return users
    raise AssertionError("unreachable")


@dataclass
class Sent:
    """One acknowledged update: when it was first tried and acknowledged, and what it got."""
    first_try: float
    acked_at: float
    id: str
    seq: int


@dataclass
class Worker:
    """Publishes its user's job over HTTP as a worker does: each update with an eventId, a 503
    or a lost request sent again with the same eventId until acknowledged."""
    http: httpx.AsyncClient
    server: Server
    user: str
    sent: list[Sent] = field(default_factory=list)
    refusals: list[tuple[float, int, str]] = field(default_factory=list)  # time, status, message

    @property
    def job(self) -> str:
        return f"{self.user}-j"

    async def run(self, stop: asyncio.Event, limit: float = 6 * WAIT) -> None:
        headers = self.server.headers("worker", "publisher")
        for n in itertools.count():
            if stop.is_set():
                return
            body = {"userId": self.user, "status": "queued" if n == 0 else "processing",
                    "progress": min(n, 100), "currentOperation": f"step {n}",
                    "eventId": f"{self.job}:{n}"}
            first_try = time.monotonic()
            while True:
                assert time.monotonic() - first_try < limit, f"{self.user}: update {n} refused"
                try:
                    response = await self.http.post(
                        f"{self.server.url}/api/v2/jobs/{self.job}/status", headers=headers,
                        json=body)
                except httpx.TransportError as exc:
                    self.refusals.append((time.monotonic(), 0, repr(exc)))
                else:
                    if response.status_code == 202:
                        ack = response.json()
                        self.sent.append(Sent(first_try, time.monotonic(), ack["id"],
                                              ack["seq"]))
                        break
                    assert response.status_code == 503, response.text
                    self.refusals.append((time.monotonic(), 503,
                                          response.json()["error"]["message"]))
                await asyncio.sleep(RETRY)
            await asyncio.sleep(PACE)

    def acked_after(self, moment: float) -> list[Sent]:
        return [s for s in self.sent if s.first_try >= moment]


class Watcher:
    """A WebSocket client subscribed to all of its user's jobs, keeping every event it gets
    with the time it got it."""

    def __init__(self, client: Client, cursor: str):
        self.client = client
        self.cursor = cursor  # the subscription's starting point: what a replay goes back to
        self.events: list[tuple[dict[str, Any], float]] = []
        self.refused = 0  # subscribes refused as unavailable before this one was answered
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def open(cls, server: Server, user: str, last_event_id: str | None = None) -> Watcher:
        """Connect and subscribe; a subscribe refused as `unavailable` (its snapshot or replay
        could not be read) is sent again, as a client does."""
        client = await connect(server, server.token(user))
        resume = {"lastEventId": last_event_id} if last_event_id else {}
        refused = 0
        async with asyncio.timeout(2 * WAIT):
            while True:
                await client.send({"type": "subscribe", "all": True, **resume})
                answer = await client.recv_until(lambda m: m["type"] in ("subscribed", "error"))
                if answer[-1]["type"] == "subscribed":
                    break
                assert answer[-1]["code"] == "unavailable", answer
                refused += 1
                await asyncio.sleep(RETRY)
        watcher = cls(client, answer[-1]["cursor"])
        watcher.refused = refused
        return watcher

    async def _read(self) -> None:
        while True:
            message = await self.client.recv(timeout=float("inf"))
            if message.get("type") == "status_update":
                self.events.append((message, time.monotonic()))

    @property
    def ids(self) -> list[str]:
        return [m["id"] for m, _ in self.events]

    async def close(self) -> None:
        self._reader.cancel()
        await asyncio.gather(self._reader, return_exceptions=True)
        await self.client.close()


def assert_exactly_once_in_order(received: list[dict[str, Any]], sent: list[Sent]) -> None:
    """The events of a job seen from its first: every acknowledged one, nothing else, no
    repeat, ids rising, seq 1, 2, 3… without a gap."""
    ids = [m["id"] for m in received]
    assert len(ids) == len(set(ids)), "an event came twice"
    assert [parse_id(i) for i in ids] == sorted(parse_id(i) for i in ids), "out of order"
    assert [m["seq"] for m in received] == list(range(1, len(received) + 1)), "a seq gap"
    assert ids == [s.id for s in sent], "received events differ from the acknowledged ones"


async def received_all(worker: Worker, *watchers: Watcher) -> None:
    """Wait until the watchers (one client's connections, one after the other) have every
    update the worker saw acknowledged."""
    acked = {s.id for s in worker.sent}

    def received() -> set[str]:
        return {i for w in watchers for i in w.ids}

    try:
        await eventually(lambda: acked <= received(), timeout=WAIT)
    except TimeoutError:
        missing = sorted(acked - received(), key=parse_id)
        raise AssertionError(f"{worker.user}: {len(missing)} of {len(acked)} acknowledged "
                             f"events never arrived, from {missing[0]}") from None


async def closed(watchers: list[Watcher]) -> None:
    await asyncio.gather(*(w.close() for w in watchers))


async def stop_load(stop: asyncio.Event, tasks: list[asyncio.Task[None]]) -> None:
    stop.set()
    await asyncio.gather(*tasks)


def in_thread(call: Any, *args: Any) -> asyncio.Future[Any]:
    """A blocking harness call (kill, failover wait, restart, migrate) off the event loop, so
    workers and clients go on meanwhile."""
    return asyncio.ensure_future(asyncio.to_thread(call, *args))


# --- 1. a master killed under load ------------------------------------------------------------

async def test_a_killed_master_shard_is_back_within_seconds_and_the_others_never_notice(
        cluster: RedisCluster, servers: list[Server], uid: str) -> None:
    users = users_by_master(cluster, uid, 2)
    victim = cluster.master_of_slot(slot_of_user(next(iter(users.values()))[0]))
    affected = set(users[victim.node_id])
    everyone = [u for shard in users.values() for u in shard]
    async with httpx.AsyncClient(timeout=WAIT) as http:
        watchers = [await Watcher.open(servers[n % 2], u) for n, u in enumerate(everyone)]
        workers = [Worker(http, servers[(n + 1) % 2], u) for n, u in enumerate(everyone)]
        stop = asyncio.Event()
        tasks = [asyncio.create_task(w.run(stop)) for w in workers]
        try:
            await eventually(lambda: all(len(w.sent) >= 10 for w in workers))
            await in_thread(cluster.kill, victim)
            killed_at = victim.killed_at
            assert killed_at is not None
            failover = in_thread(cluster.wait_for_failover, victim, 2 * RECOVERY_LIMIT)
            hit = [w for w in workers if w.user in affected]
            await eventually(lambda: all(w.acked_after(killed_at) for w in hit),
                             timeout=2 * RECOVERY_LIMIT)
            recovered = max(w.acked_after(killed_at)[0].acked_at for w in hit) - killed_at
            _, failover_seconds = await failover
            print(f"failover {failover_seconds:.2f} s; publishing to the shard again "
                  f"{recovered:.2f} s after the kill")
            assert recovered < RECOVERY_LIMIT
            # Afterwards too: a while of load on the new primary.
            back = time.monotonic()
            await eventually(lambda: all(len(w.acked_after(back)) >= 10 for w in workers))
        finally:
            await stop_load(stop, tasks)
        for watcher, worker in zip(watchers, workers, strict=True):
            await received_all(worker, watcher)
        await closed(watchers)
        await in_thread(cluster.restart, victim)  # the next tests want every shard replicated

    for watcher, worker in zip(watchers, workers, strict=True):
        assert_exactly_once_in_order([m for m, _ in watcher.events], worker.sent)
        if worker.user in affected:
            continue
        # The other shards: never refused, delivered at once, no pause in the flow.
        assert not worker.refusals, (worker.user, worker.refusals[:3])
        first_try = {s.id: s.first_try for s in worker.sent}
        latency = max(at - first_try[m["id"]] for m, at in watcher.events)
        gaps = max(b - a for (_, a), (_, b) in itertools.pairwise(watcher.events))
        print(f"{worker.user}: latency up to {latency * 1000:.0f} ms, gaps up to "
              f"{gaps * 1000:.0f} ms")
        assert latency < MAX_LATENCY and gaps < MAX_LATENCY, (worker.user, latency, gaps)


# --- 2. durable mode ------------------------------------------------------------------------

@pytest.fixture
def durable(cluster: RedisCluster, servers: list[Server]) -> Iterator[Server]:
    server = start_server(redis_url=cluster.url, secret=servers[0].secret,
                          max_updates_per_job_per_second=0, redis_durable_replicas=1)
    yield server
    server.stop()


async def test_durable_mode_loses_no_acknowledged_update_and_refuses_without_a_replica(
        cluster: RedisCluster, servers: list[Server], durable: Server, uid: str) -> None:
    users = users_by_master(cluster, uid, 1)
    victim = cluster.masters()[0]
    [victim_user] = users[victim.node_id]
    everyone = [u for shard in users.values() for u in shard]
    async with httpx.AsyncClient(timeout=WAIT) as http:
        watchers = [await Watcher.open(servers[n % 2], u) for n, u in enumerate(everyone)]
        workers = {u: Worker(http, durable, u) for u in everyone}
        stop = asyncio.Event()
        tasks = [asyncio.create_task(w.run(stop)) for w in workers.values()]
        hit = workers[victim_user]
        try:
            await eventually(lambda: all(len(w.sent) >= 10 for w in workers.values()))
            await in_thread(cluster.kill, victim)
            new_master, seconds = await in_thread(cluster.wait_for_failover, victim,
                                                  2 * RECOVERY_LIMIT)
            promoted = time.monotonic()
            print(f"failover {seconds:.2f} s")
            assert cluster.replicas_of(new_master) == []
            # The promoted primary answers, but has no replica: an explicit refusal, again
            # and again, not an acknowledgement that a second failover could lose.
            await eventually(lambda: sum(t > promoted and "replicas" in message
                                         for t, _, message in hit.refusals) >= 3,
                             timeout=WAIT)
            assert not hit.acked_after(promoted)
            await in_thread(cluster.restart, victim)
            assert cluster.replicas_of(new_master) == [victim]
            rejoined = time.monotonic()
            await eventually(lambda: len(hit.acked_after(rejoined)) >= 5, timeout=WAIT)
            print(f"durable publishes acknowledged again "
                  f"{hit.acked_after(rejoined)[0].acked_at - rejoined:.2f} s after the "
                  "old master rejoined as a replica")
        finally:
            await stop_load(stop, tasks)
        for watcher, user in zip(watchers, everyone, strict=True):
            await received_all(workers[user], watcher)
        # Every acknowledged update is in Redis: a fresh subscription replays the user's whole
        # history from where the first one started, and the job's state is the last one.
        for n, watcher in enumerate(watchers):
            worker = workers[everyone[n]]
            server = servers[(n + 1) % 2]
            fresh = await Watcher.open(server, worker.user, last_event_id=watcher.cursor)
            await received_all(worker, fresh)
            await fresh.close()
            assert_exactly_once_in_order([m for m, _ in fresh.events], worker.sent)
            assert_exactly_once_in_order([m for m, _ in watcher.events], worker.sent)
            state = (await http.get(f"{server.url}/api/v2/jobs/{worker.job}",
                                    headers=server.headers(worker.user))).json()
            assert (state["id"], state["seq"]) == (worker.sent[-1].id, worker.sent[-1].seq)
        await closed(watchers)
    for user, worker in workers.items():
        if user != victim_user:
            assert not worker.refusals, (user, worker.refusals[:3])


# --- 3. a slot migrated under load ----------------------------------------------------------

def migrating(source: RedisNode, slot: int) -> bool:
    return f"[{slot}->-" in ask(source, "CLUSTER", "NODES")


async def test_a_slot_migrated_under_load_loses_and_repeats_nothing(
        cluster: RedisCluster, servers: list[Server], uid: str) -> None:
    a, b = servers
    user = f"{uid}-mover"
    slot = slot_of_user(user)
    source = cluster.master_of_slot(slot)
    target = next(m for m in cluster.masters() if m is not source)
    filler = KEYS.stream(KEYS.partition(user)) + ":filler:"
    ask(source, "MSET", *itertools.chain.from_iterable(
        (f"{filler}{i}", i) for i in range(FILLER_KEYS)))
    async with httpx.AsyncClient(timeout=WAIT) as http:
        staying = await Watcher.open(a, user)
        leaving = await Watcher.open(b, user)
        worker = Worker(http, a, user)
        stop = asyncio.Event()
        task = asyncio.create_task(worker.run(stop))
        try:
            await eventually(lambda: len(worker.sent) >= 10)
            move = in_thread(cluster.migrate_slot, slot, target)
            await eventually(lambda: migrating(source, slot), timeout=WAIT)
            # A client that reconnects while the slot moves, resuming from its cursor. While
            # the slot's keys are split between the two nodes its replay cannot be read: it is
            # refused (`unavailable`) and sent again until answered.
            await leaving.close()
            assert not move.done(), "the slot moved before the client reconnected"
            resumed = await Watcher.open(b, user, last_event_id=leaving.ids[-1])
            await move
            moved = time.monotonic()
            await eventually(lambda: len(worker.acked_after(moved)) >= 10)
        finally:
            await stop_load(stop, [task])
        await received_all(worker, staying)
        await received_all(worker, leaving, resumed)
        await closed([staying, resumed])
    print(f"{len(worker.sent)} updates, {len(worker.refusals)} refused and sent again while "
          f"the slot moved; the resume refused {resumed.refused} times")
    assert cluster.master_of_slot(slot) is target
    assert ask(source, "CLUSTER", "COUNTKEYSINSLOT", slot) == 0
    assert_exactly_once_in_order([m for m, _ in staying.events], worker.sent)
    assert_exactly_once_in_order([m for m, _ in leaving.events + resumed.events], worker.sent)
