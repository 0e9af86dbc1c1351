"""Real Redis Cluster for tests: `redis-server` processes on free ports, created with
`redis-cli --cluster create`, that a test can fail over, restart and reshard. Every wait is
bounded; every process is stopped by its PID, at the latest when the interpreter exits."""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
from redis.crc import key_slot

from tests.conftest import WAIT, free_port

SLOTS = 16384
MIGRATE_BATCH = 100  # keys per MIGRATE, as redis-cli moves them


@dataclass
class RedisNode:
    port: int
    bus_port: int
    folder: Path
    process: subprocess.Popen[bytes] | None = None
    node_id: str = ""
    killed_at: float | None = None
    # What the cluster saw just before this node was killed, for wait_for_failover.
    slots_at_kill: frozenset[int] = frozenset()
    replicas_at_kill: tuple[str, ...] = ()

    @property
    def addr(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None


@dataclass
class NodeView:
    """One line of CLUSTER NODES."""
    node_id: str
    port: int
    flags: set[str]
    master_id: str | None
    slots: set[int] = field(default_factory=set)

    @property
    def is_master(self) -> bool:
        return "master" in self.flags

    @property
    def failed(self) -> bool:
        return bool(self.flags & {"fail", "fail?", "noaddr"})


def parse_cluster_nodes(text: str) -> dict[str, NodeView]:
    views = {}
    for line in text.strip().splitlines():
        fields = line.split()  # id address flags master ping pong epoch link slots...
        node_id, address, flags, master = fields[:4]
        slots: set[int] = set()
        for part in fields[8:]:
            if part.startswith("["):  # a slot migrating or importing: still the owner's
                continue
            first, _, last = part.partition("-")
            slots.update(range(int(first), int(last or first) + 1))
        port = int(address.split("@")[0].rsplit(":", 1)[1])
        views[node_id] = NodeView(node_id, port, set(flags.split(",")),
                                  None if master == "-" else master, slots)
    return views


def wait_until(check: Callable[[], object], timeout: float, what: str) -> None:
    """Poll `check` (state in other processes, with no event to await) until true, bounded.
    A check that raises a Redis error counts as not yet."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if check():
                return
        except redis.RedisError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout} s")
        time.sleep(0.02)


def ask(node: RedisNode, *command: object) -> Any:
    """One command to one node, on a connection of its own (never redirected)."""
    with redis.Redis(port=node.port, decode_responses=True, socket_timeout=WAIT) as client:
        return client.execute_command(*command)


class RedisCluster:
    def __init__(self, folder: Path, nodes: list[RedisNode], node_timeout_ms: int,
                 extra_args: Iterable[str]):
        self.folder = folder
        self.nodes = nodes
        self.node_timeout_ms = node_timeout_ms
        self.extra_args = tuple(extra_args)
        self.url = ""
        self.startup_seconds = 0.0
        self._stopped = False
        atexit.register(self.stop)  # a crashed test must not leave servers running

    # -- processes --------------------------------------------------------------------------

    def _launch(self, node: RedisNode) -> None:
        node.folder.mkdir(exist_ok=True)
        with open(node.folder / "redis.log", "ab") as log:
            node.process = subprocess.Popen(
                ["redis-server", "--port", str(node.port), "--bind", "127.0.0.1",
                 "--dir", str(node.folder), "--save", "", "--appendonly", "no",
                 "--cluster-enabled", "yes",
                 # An explicit bus port: port + 10000 may be past 65535 for a free port.
                 "--cluster-port", str(node.bus_port),
                 "--cluster-config-file", str(node.folder / "nodes.conf"),
                 "--cluster-node-timeout", str(self.node_timeout_ms),
                 "--cluster-require-full-coverage", "no",
                 "--cluster-replica-validity-factor", "0",
                 "--cluster-allow-replica-migration", "no",
                 # Redis waits 5 s before a diskless full sync, in case more replicas come.
                 "--repl-diskless-sync-delay", "0",
                 *self.extra_args],
                stdout=log, stderr=log)
        node.killed_at = None
        wait_until(lambda: ask(node, "PING"), 3 * WAIT, f"redis-server on {node.addr}")
        node.node_id = str(ask(node, "CLUSTER", "MYID"))

    def kill(self, node: RedisNode) -> None:
        """SIGKILL, after noting the slots and replicas the cluster gives it."""
        view = self.view()
        node.slots_at_kill = frozenset(view[node.node_id].slots)
        node.replicas_at_kill = tuple(v.node_id for v in view.values()
                                      if v.master_id == node.node_id)
        assert node.process is not None
        os.kill(node.process.pid, signal.SIGKILL)
        node.process.wait(WAIT)
        node.killed_at = time.monotonic()

    def restart(self, node: RedisNode, timeout: float = 6 * WAIT) -> None:
        """Start a killed node again, same port and config file: it rejoins as a replica of
        whichever node now has its slots. Returns once it is attached and in sync."""
        assert not node.alive, f"{node.addr} is running"
        self._launch(node)
        wait_until(lambda: self._replica_in_sync(node), timeout, f"{node.addr} rejoining")

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        for node in self.nodes:
            if node.alive:
                assert node.process is not None
                node.process.kill()
                node.process.wait(WAIT)
        shutil.rmtree(self.folder, ignore_errors=True)
        atexit.unregister(self.stop)

    # -- the cluster's own view -------------------------------------------------------------

    def live_nodes(self) -> list[RedisNode]:
        return [n for n in self.nodes if n.alive]

    def by_id(self, node_id: str) -> RedisNode:
        return next(n for n in self.nodes if n.node_id == node_id)

    def view(self, node: RedisNode | None = None) -> dict[str, NodeView]:
        """CLUSTER NODES as `node` (by default the first live node) sees it."""
        node = node or self.live_nodes()[0]
        return parse_cluster_nodes(ask(node, "CLUSTER", "NODES"))

    def _healthy(self, masters: bool, of: str | None = None) -> list[RedisNode]:
        return [self.by_id(v.node_id) for v in self.view().values()
                if v.is_master == masters and not v.failed and self.by_id(v.node_id).alive
                and (of is None or v.master_id == of)]

    def masters(self) -> list[RedisNode]:
        return self._healthy(masters=True)

    def replicas(self) -> list[RedisNode]:
        return self._healthy(masters=False)

    def replicas_of(self, master: RedisNode) -> list[RedisNode]:
        return self._healthy(masters=False, of=master.node_id)

    def master_of_slot(self, slot: int) -> RedisNode:
        return next(self.by_id(v.node_id) for v in self.view().values() if slot in v.slots)

    @staticmethod
    def slot_of(key: str) -> int:
        return key_slot(key.encode())

    def _replica_in_sync(self, node: RedisNode) -> bool:
        """`node` replicates, its master has it online, and every live node knows it so."""
        info = ask(node, "INFO", "replication")
        master = next((n for n in self.live_nodes() if n.port == info.get("master_port")), None)
        if master is None or info["master_link_status"] != "up":
            return False
        online = any(entry.get("port") == node.port and entry.get("state") == "online"
                     for key, entry in ask(master, "INFO", "replication").items()
                     if key.startswith("slave"))
        seen = [self.view(other).get(node.node_id) for other in self.live_nodes()]
        return online and all(v and v.master_id == master.node_id and not v.failed
                              for v in seen)

    def _agreed(self) -> bool:
        """Every live node is healthy and sees the same owner for every slot."""
        owners = []
        for node in self.live_nodes():
            if "cluster_state:ok" not in str(ask(node, "CLUSTER", "INFO")):
                return False
            owners.append({slot: v.node_id for v in self.view(node).values() if not v.failed
                           and v.is_master for slot in v.slots})
        return len(owners[0]) == SLOTS and all(o == owners[0] for o in owners)

    def _ready(self, replicas: int) -> bool:
        return (self._agreed()
                and all(ask(m, "INFO", "replication")["connected_slaves"] == replicas
                        for m in self.masters())
                and all(self._replica_in_sync(n) for n in self.replicas()))

    # -- failover and slots -----------------------------------------------------------------

    def wait_for_failover(self, old_master: RedisNode,
                          timeout: float = 2 * WAIT) -> tuple[RedisNode, float]:
        """Wait until one of the killed master's replicas owns all its slots as every
        surviving node sees it; returns that new master and the seconds since the kill."""
        assert old_master.killed_at is not None, "kill() the master first"

        def promoted() -> RedisNode | None:
            views = [self.view(node).values() for node in self.live_nodes()]
            winners = {frozenset(v.node_id for v in view
                                 if v.node_id in old_master.replicas_at_kill and v.is_master
                                 and not v.failed and old_master.slots_at_kill <= v.slots)
                       for view in views}
            agreed = winners.pop() if len(winners) == 1 else frozenset()
            return self.by_id(next(iter(agreed))) if len(agreed) == 1 else None

        wait_until(promoted, timeout, f"failover of {old_master.addr}")
        new_master = promoted()
        assert new_master is not None
        return new_master, time.monotonic() - old_master.killed_at

    def migrate_slot(self, slot: int, to_node: RedisNode, timeout: float = 6 * WAIT) -> None:
        """Move one slot and its keys as redis-cli does. Clients writing meanwhile are sent
        on with ASK (a key not on the source any more) or TRYAGAIN (keys split between both)."""
        source = self.master_of_slot(slot)
        if source.node_id == to_node.node_id:
            return
        ask(to_node, "CLUSTER", "SETSLOT", slot, "IMPORTING", source.node_id)
        ask(source, "CLUSTER", "SETSLOT", slot, "MIGRATING", to_node.node_id)
        while keys := ask(source, "CLUSTER", "GETKEYSINSLOT", slot, MIGRATE_BATCH):
            ask(source, "MIGRATE", "127.0.0.1", to_node.port, "", 0, int(WAIT * 1000),
                "KEYS", *keys)
        # The target first: were the source first, it would send clients on to a target
        # that, only importing still, would send them back with MOVED.
        ask(to_node, "CLUSTER", "SETSLOT", slot, "NODE", to_node.node_id)
        ask(source, "CLUSTER", "SETSLOT", slot, "NODE", to_node.node_id)
        for master in self.masters():
            if master.node_id not in (source.node_id, to_node.node_id):
                ask(master, "CLUSTER", "SETSLOT", slot, "NODE", to_node.node_id)
        wait_until(self._agreed, timeout, f"all nodes agreeing slot {slot} moved")

    def reshard(self, from_node: RedisNode, to_node: RedisNode, slots: int,
                timeout: float = 6 * WAIT) -> None:
        run_cli("--cluster", "reshard", to_node.addr, "--cluster-from", from_node.node_id,
                "--cluster-to", to_node.node_id, "--cluster-slots", str(slots),
                "--cluster-yes", timeout=timeout)
        wait_until(self._agreed, timeout, "all nodes agreeing after the reshard")


def run_cli(*args: str, timeout: float) -> str:
    done = subprocess.run(["redis-cli", *args], capture_output=True, text=True,
                          timeout=timeout)
    if done.returncode != 0 or "[ERR]" in done.stdout:
        raise RuntimeError(f"redis-cli {' '.join(args[:2])} failed:\n{done.stdout}{done.stderr}")
    return done.stdout


def distinct_free_ports(count: int) -> list[int]:
    ports: list[int] = []
    while len(ports) < count:
        port = free_port()
        if port not in ports:
            ports.append(port)
    return ports


def start_redis_cluster(masters: int = 3, replicas: int = 1, *, node_timeout_ms: int = 1000,
                        extra_args: Iterable[str] = (),
                        timeout: float = 6 * WAIT) -> RedisCluster:
    """`masters` shards of one master and `replicas` replicas each, all slots assigned,
    every replica in sync. Everything started is stopped again if start-up fails."""
    began = time.monotonic()
    folder = Path(tempfile.mkdtemp(prefix="redis-cluster-"))
    count = masters * (1 + replicas)
    ports = distinct_free_ports(2 * count)
    nodes = [RedisNode(ports[i], ports[count + i], folder / str(ports[i]))
             for i in range(count)]
    cluster = RedisCluster(folder, nodes, node_timeout_ms, extra_args)
    try:
        for node in nodes:
            cluster._launch(node)
        run_cli("--cluster", "create", *(n.addr for n in nodes),
                "--cluster-replicas", str(replicas), "--cluster-yes", timeout=timeout)
        wait_until(lambda: cluster._ready(replicas), timeout, "the cluster being ready")
        cluster.url = "redis+cluster://" + ",".join(n.addr for n in cluster.masters())
    except BaseException:
        cluster.stop()
        raise
    cluster.startup_seconds = time.monotonic() - began
    return cluster
