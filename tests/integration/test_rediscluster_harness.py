"""The Redis Cluster harness itself: a 3+3 cluster starts with every slot served, a killed
master's replica takes over with its data while the other shards keep answering, and a slot
moves with its keys while a client keeps writing to it."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from redis.cluster import ClusterNode
from redis.cluster import RedisCluster as ClusterClient

from tests.conftest import WAIT
from tests.rediscluster import SLOTS, RedisCluster, RedisNode, ask, start_redis_cluster


@pytest.fixture(scope="module")
def cluster() -> Iterator[RedisCluster]:
    cluster = start_redis_cluster(masters=3, replicas=1)
    yield cluster
    cluster.stop()


@pytest.fixture
def client(cluster: RedisCluster) -> Iterator[ClusterClient]:
    client = ClusterClient(startup_nodes=[ClusterNode("127.0.0.1", n.port) for n in cluster.nodes],
                           decode_responses=True, socket_timeout=WAIT)
    yield client
    client.close()


def keys_by_master(cluster: RedisCluster, prefix: str, per_master: int) -> dict[str, list[str]]:
    """`per_master` keys held by each master, by its node id."""
    owners = {slot: v.node_id for v in cluster.view().values() for slot in v.slots}
    keys: dict[str, list[str]] = {m.node_id: [] for m in cluster.masters()}
    for i in itertools.count():
        key = f"{prefix}:{i}"
        shard = keys[owners[cluster.slot_of(key)]]
        if len(shard) < per_master:
            shard.append(key)
        if all(len(shard) == per_master for shard in keys.values()):
            return keys
    raise AssertionError("unreachable")


def replicated(master: RedisNode) -> None:
    """Every write on `master` so far is on its replica too."""
    assert ask(master, "WAIT", 1, int(WAIT * 1000)) == 1


def test_three_masters_each_with_a_replica_serve_every_slot(cluster: RedisCluster,
                                                            client: ClusterClient) -> None:
    masters = cluster.masters()
    assert len(masters) == 3 and len(cluster.replicas()) == 3
    assert all(len(cluster.replicas_of(m)) == 1 for m in masters)
    view = cluster.view()
    assert sorted(s for m in masters for s in view[m.node_id].slots) == list(range(SLOTS))
    assert cluster.url == "redis+cluster://" + ",".join(m.addr for m in masters)

    keys = [k for shard in keys_by_master(cluster, "start", 5).values() for k in shard]
    assert len({cluster.slot_of(k) for k in keys}) > 3
    for key in keys:
        client.set(key, key.upper())
    assert [client.get(k) for k in keys] == [k.upper() for k in keys]


def test_a_replica_takes_over_a_killed_master_and_the_master_rejoins(
        cluster: RedisCluster, client: ClusterClient) -> None:
    victim = cluster.masters()[0]
    [its_replica] = cluster.replicas_of(victim)
    keys = keys_by_master(cluster, "failover", 10)
    for key in itertools.chain(*keys.values()):
        client.set(key, key.upper())
    replicated(victim)
    others = [k for node_id, shard in keys.items() if node_id != victim.node_id for k in shard]

    cluster.kill(victim)
    reads = 0
    with ThreadPoolExecutor(1) as pool:
        failover = pool.submit(cluster.wait_for_failover, victim, 10)
        while not failover.done():  # the other shards answer all along
            assert [client.get(k) for k in others] == [k.upper() for k in others]
            reads += 1
        new_master, seconds = failover.result()
    print(f"failover in {seconds:.2f} s")
    assert new_master is its_replica and seconds < 10 and reads > 0
    assert [client.get(k) for k in keys[victim.node_id]] == [
        k.upper() for k in keys[victim.node_id]]

    cluster.restart(victim)
    assert cluster.replicas_of(new_master) == [victim]
    assert ask(victim, "ROLE")[0] == "slave"


def test_a_slot_moves_with_its_keys_while_a_client_writes_to_it(
        cluster: RedisCluster, client: ClusterClient) -> None:
    slot = cluster.slot_of("{moving}")
    source = cluster.master_of_slot(slot)
    target = next(m for m in cluster.masters() if m is not source)
    for i in range(1000):  # ten MIGRATE batches
        client.set(f"{{moving}}:{i}", i)

    written, goal = 1000, float("inf")
    stop, started, reached = threading.Event(), threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def write() -> None:  # ASK and MOVED are followed by redis-py's cluster client
        nonlocal written
        try:
            while not stop.is_set():
                client.set(f"{{moving}}:{written}", written)
                written += 1
                started.set()
                if written >= goal:
                    reached.set()
        except BaseException as exc:  # the test reports it, not the thread
            errors.append(exc)
        finally:
            started.set()
            reached.set()

    writer = threading.Thread(target=write)
    writer.start()
    try:
        assert started.wait(WAIT)
        before = written
        cluster.migrate_slot(slot, target)
        during = written - before
        goal = written + 100  # and the writer goes on, on the slot's new owner
        assert reached.wait(WAIT)
    finally:
        stop.set()
        writer.join(WAIT)
    print(f"{during} writes while the slot moved")
    assert not errors, errors
    assert during > 0, "no write came while the slot was moving"
    assert cluster.master_of_slot(slot) is target
    values = client.mget_nonatomic([f"{{moving}}:{i}" for i in range(written)])
    assert values == [str(i) for i in range(written)]
    assert ask(source, "CLUSTER", "COUNTKEYSINSLOT", slot) == 0
    assert ask(target, "CLUSTER", "COUNTKEYSINSLOT", slot) == written


def key_in(slot: int, prefix: str) -> str:
    return next(k for i in itertools.count() if RedisCluster.slot_of(k := f"{prefix}:{i}") == slot)


def test_reshard_moves_slots_and_keys_with_redis_cli(cluster: RedisCluster,
                                                     client: ClusterClient) -> None:
    source, target = cluster.masters()[:2]
    view = cluster.view()
    source_slots, target_slots = len(view[source.node_id].slots), len(view[target.node_id].slots)
    moving = sorted(view[source.node_id].slots)[:10]  # redis-cli takes a source's first slots
    keys = [key_in(slot, "reshard") for slot in moving]
    for key in keys:
        client.set(key, key.upper())

    cluster.reshard(source, target, 10)

    view = cluster.view()
    assert len(view[source.node_id].slots) == source_slots - 10
    assert len(view[target.node_id].slots) == target_slots + 10
    assert all(cluster.master_of_slot(slot) is target for slot in moving)
    assert client.mget_nonatomic(keys) == [k.upper() for k in keys]
    assert all(ask(target, "CLUSTER", "COUNTKEYSINSLOT", slot) == 1 for slot in moving)
