"""One suite, every broker: the in-process broker, Redis (a real private redis-server) and
Redis Cluster (three real primaries) must behave the same behind the broker interface.

The cluster broker delivers only what its instance follows: here it follows everyone, as
an instance serving an admin does, and the suite listens to that merged, id-ordered feed."""

from __future__ import annotations

import asyncio

import pytest

from jobwire.broker import Scope
from jobwire.broker.base import EVERYONE
from jobwire.broker.cluster import ClusterBroker
from jobwire.broker.memory import MemoryBroker
from jobwire.broker.redis import RedisBroker
from jobwire.errors import BrokerUnavailable, CursorExpired, OwnerMismatch
from jobwire.protocol import parse_update
from tests.conftest import WAIT, start_redis
from tests.rediscluster import start_redis_cluster


def upd(job="j", user="u", **fields):
    return parse_update({"jobId": job, "userId": user, "status": "processing", **fields})


@pytest.fixture(scope="module")
def redis_url():
    server = start_redis()
    yield server.url
    server.stop()


@pytest.fixture(scope="module")
def cluster_url():
    cluster = start_redis_cluster(masters=3, replicas=0)
    yield cluster.url
    cluster.stop()


@pytest.fixture(params=["memory", "redis", "cluster"])
async def broker(request, redis_url):
    options = dict(history_size=5, global_history_size=8, max_updates_per_second=10,
                   stalled_after_seconds=0.3)
    if request.param == "memory":
        b = MemoryBroker(**options)
    elif request.param == "redis":
        b = RedisBroker(redis_url, prefix=f"t{id(request)}:", **options)
    else:
        b = ClusterBroker(request.getfixturevalue("cluster_url"), prefix=f"t{id(request)}:",
                          **options)
    seen, arrived = [], asyncio.Event()

    def listen(event):
        seen.append(event)
        arrived.set()

    if isinstance(b, ClusterBroker):
        b.add_admin_listener(listen)
    else:
        b.add_listener(listen)
    b.seen, b.arrived = seen, arrived
    await b.start()
    await b.follow([EVERYONE, "u", "v"])
    assert b.ready()
    yield b
    await asyncio.wait_for(b.stop(), WAIT)


async def wait_seen(broker, count):
    async with asyncio.timeout(WAIT):
        while len(broker.seen) < count:
            broker.arrived.clear()
            await broker.arrived.wait()
    return broker.seen


async def test_publish_fans_out_in_order_with_gapless_seq(broker):
    acks = [await broker.publish(upd(status="queued"))]
    acks.append(await broker.publish(upd(status="processing", progress=10)))
    acks.append(await broker.publish(upd(status="completed")))
    seen = await wait_seen(broker, 3)
    assert [e.id for e in seen] == [a.id for a in acks]
    assert [e.seq for e in seen] == [1, 2, 3]
    assert seen[2].payload["type"] == "job_completed" and seen[2].payload["progress"] == 100


async def test_ownership_dedupe_and_event_id(broker):
    first = await broker.publish(upd(progress=5, eventId="e1"))
    with pytest.raises(OwnerMismatch):
        await broker.publish(upd(user="mallory", progress=6))
    dup = await broker.publish(upd(progress=5))
    retry = await broker.publish(upd(progress=5, eventId="e1"))
    assert (dup.id, dup.seq) == (retry.id, retry.seq) == (first.id, 1)
    assert await broker.owners(["j", "nope"]) == {"j": "u"}


async def test_a_retry_is_recognised_after_its_job_moved_on(broker):
    # The Redis brokers plan an update of a job they committed last from what they stored,
    # which does not list the eventIds already answered: the commit must still catch a retry.
    first = await broker.publish(upd(status="queued", eventId="e1"))
    later = await broker.publish(upd(progress=60, eventId="e2"))
    assert (await broker.publish(upd(status="queued", eventId="e1"))).id == first.id
    again = await broker.publish(upd(progress=60, eventId="e2"))
    assert (again.id, again.seq) == (later.id, 2)
    end = await broker.publish(upd(status="completed", eventId="e3"))
    seen = await wait_seen(broker, 3)
    assert [(e.id, e.seq) for e in seen] == [(first.id, 1), (later.id, 2), (end.id, 3)]


async def test_conflation_delivers_the_latest(broker):
    await broker.publish(upd(progress=1))
    held = [await broker.publish(upd(progress=p)) for p in (2, 3, 4)]
    assert all(a.id is None for a in held)
    seen = await wait_seen(broker, 2)
    assert seen[-1].payload["progress"] == 4 and seen[-1].seq == 2


async def test_view_snapshot_history_and_expiry(broker):
    a = await broker.publish(upd(job="a", status="queued"))
    await broker.publish(upd(job="b", status="queued"))
    await broker.publish(upd(job="other", user="v", status="queued"))
    view = await broker.view(Scope(user_id="u"), a.id and tuple(map(int, a.id.split("-"))))
    assert [s["jobId"] for s in view.states] == ["a", "b"]
    assert [e.job_id for e in view.events] == ["b"]
    everything = await broker.view(Scope(), None)
    assert {s["jobId"] for s in everything.states} == {"a", "b", "other"}
    only = await broker.view(Scope(job_ids=frozenset({"a", "other"}), owner="u"), None)
    assert [s["jobId"] for s in only.states] == ["a"]
    assert (await broker.job("a"))["id"] == a.id
    for i in range(30):  # far past the 5-per-user window
        await broker.publish(upd(job=f"x{i}", status="queued"))
    with pytest.raises(CursorExpired):
        await broker.view(Scope(user_id="u"), tuple(map(int, a.id.split("-"))))


async def test_stalled_job_reported_once(broker):
    await broker.publish(upd(progress=10))
    seen = await wait_seen(broker, 2)
    assert seen[1].payload["type"] == "job_stalled"
    # A second job falls silent after that report. By the time it is reported stalled in
    # turn, the sweeper has passed over the first job several times: a second report of it
    # would have come before.
    await broker.publish(upd(job="k", progress=10))
    seen = await wait_seen(broker, 4)
    assert [(e.job_id, e.payload["type"]) for e in seen[2:]] == [
        ("k", "status_update"), ("k", "job_stalled")]


async def test_concurrent_publishers_never_break_seq_or_ownership(broker):
    async def worker(user, n):
        out = []
        for p in range(n):
            try:
                out.append(await broker.publish(upd(job="race", user=user, status="queued",
                                                    currentOperation=f"{user}-{p}")))
            except OwnerMismatch:
                out.append(None)
        return out

    results = await asyncio.gather(*(worker(f"w{i}", 10) for i in range(5)))
    winners = {f"w{i}" for i, r in enumerate(results) if any(a is not None for a in r)}
    assert len(winners) == 1
    seqs = sorted(a.seq for r in results for a in r if a is not None and a.seq is not None)
    assert seqs == list(range(1, len(seqs) + 1))


async def test_redis_down_means_unavailable(redis_url):
    broker = RedisBroker("redis://127.0.0.1:9/0")  # nothing listens on port 9
    await broker.start()
    try:
        assert not broker.ready()
        with pytest.raises(BrokerUnavailable):
            await broker.publish(upd(status="queued"))
    finally:
        await broker.stop()


async def test_a_batch_touching_one_job_many_times(broker):
    from jobwire.errors import JobFinished

    results = await broker.publish_many([
        upd(status="queued", eventId="q"),
        upd(status="processing", progress=10),
        upd(status="processing", progress=10),  # a duplicate of the one just before
        upd(user="mallory", status="processing", progress=20),  # refused, changes nothing
        upd(status="completed"),
        upd(status="queued", eventId="q"),  # a retry: the first event, even after the end
        upd(status="processing", progress=50),  # after the end: refused
        upd(job="other", status="queued"),
    ])
    assert [r.seq if not isinstance(r, Exception) else type(r) for r in results] == [
        1, 2, 2, OwnerMismatch, 3, 1, JobFinished, 1]
    assert results[2].id == results[1].id and results[5].id == results[0].id
    seen = await wait_seen(broker, 4)
    assert [(e.job_id, e.seq) for e in seen] == [("j", 1), ("j", 2), ("j", 3), ("other", 1)]
    assert [e.id for e in seen[:3]] == [results[0].id, results[1].id, results[4].id]


async def test_duplicates_in_a_batch_of_several_new_jobs_get_their_own_ids(broker):
    results = await broker.publish_many([
        upd(job="a", status="queued"), upd(job="b", status="queued"),
        upd(job="a", status="queued"), upd(job="b", status="queued")])
    assert results[2].id == results[0].id and results[3].id == results[1].id
    assert results[0].id != results[1].id


async def reads(broker) -> int:
    """How many reads of job state or history Redis has served so far (the memory broker:
    none, ever). Redis's own command counters: what reached Redis, not what was called."""
    if not isinstance(broker, RedisBroker):
        return 0
    names = ("cmdstat_evalsha", "cmdstat_xinfo", "cmdstat_xrange", "cmdstat_hmget")
    if isinstance(broker, ClusterBroker):
        per_node = await broker.redis.info("commandstats",
                                           target_nodes=broker.redis.get_primaries())
        every = [stats for stats in per_node.values()]
    else:
        every = [await broker.redis.info("commandstats")]
    return sum(v["calls"] for stats in every for k, v in stats.items() if k.startswith(names))


async def test_recent_resumes_are_answered_without_a_round_trip(broker):
    a = await broker.publish(upd(job="a", status="queued"))
    b = await broker.publish(upd(job="b", status="queued"))
    await broker.publish(upd(job="c", user="v", status="queued"))
    await wait_seen(broker, 3)
    after = tuple(map(int, a.id.split("-")))
    full = await broker.view(Scope(user_id="u"), after)
    before = await reads(broker)
    quick = await broker.view(Scope(user_id="u"), after, with_states=False)
    assert await reads(broker) == before  # served from what this instance routed
    assert [e.id for e in quick.events] == [e.id for e in full.events] == [b.id]
    assert quick.head >= tuple(map(int, b.id.split("-")))
    for i in range(12):  # past the 8 recent events an instance keeps here
        await broker.publish(upd(job=f"z{i}", status="queued"))
    await wait_seen(broker, 15)
    before = await reads(broker)
    with pytest.raises(CursorExpired):  # read from Redis (or history), found too old
        await broker.view(Scope(user_id="u"), after, with_states=False)
    if isinstance(broker, RedisBroker):
        assert await reads(broker) > before


async def test_concurrent_publishes_share_script_calls(redis_url):
    # One Redis: 50 one-update publishes at once commit in far fewer calls, each gets its own
    # answer, and a job two of them race on still gets a gapless seq.
    broker = RedisBroker(redis_url, prefix="group:", max_updates_per_second=0)
    got, arrived = [], asyncio.Event()

    def listen(event):
        got.append(event)
        if len(got) == 50:
            arrived.set()

    broker.add_listener(listen)
    await broker.start()
    try:
        first = broker._group.calls
        acks = await asyncio.gather(*(
            broker.publish(upd(job=f"g{i % 25}", status="queued" if i < 25 else "processing",
                               progress=0 if i < 25 else 50))
            for i in range(50)))
        calls = broker._group.calls - first
        assert calls < 25, calls
        assert len({a.id for a in acks}) == 50
        by_job = {}
        for a in acks:
            by_job.setdefault(a.job_id, []).append(a.seq)
        assert all(sorted(seqs) == [1, 2] for seqs in by_job.values())
        await asyncio.wait_for(arrived.wait(), WAIT)
        assert [e.id for e in got] == sorted((a.id for a in acks),
                                             key=lambda i: tuple(map(int, i.split("-"))))
    finally:
        await broker.stop()


async def test_two_instances_taking_turns_on_one_job_recompute_from_what_redis_holds(redis_url):
    # Each instance plans from the job as it last saw it, which the other has since moved:
    # the refused commit answers with the job as it is, and the update is recomputed.
    a, b = (RedisBroker(redis_url, prefix="turns:", max_updates_per_second=0)
            for _ in range(2))
    try:
        acks = []
        for i in range(10):
            broker = (a, b)[i % 2]
            acks.append(await broker.publish(upd(job="t", status="processing",
                                                 progress=i * 10, eventId=f"e{i}")))
        assert [ack.seq for ack in acks] == list(range(1, 11))
        for i in (0, 5, 9):  # retries through the other instance: the first answers
            retry = await (b, a)[i % 2].publish(upd(job="t", status="processing",
                                                    progress=i * 10, eventId=f"e{i}"))
            assert (retry.id, retry.seq) == (acks[i].id, acks[i].seq)
        done = await a.publish(upd(job="t", status="completed"))
        assert done.seq == 11
        assert (await b.job("t"))["seq"] == 11
    finally:
        await a.stop()
        await b.stop()
