#!/usr/bin/env python3
"""Unit costs of the capacity model (src/jobwire/capacity.py), measured on this machine with
real `jobwire serve` processes sharing one Redis, one thing varied at a time:

  idle          instances A, B, C, nothing else: an idle instance's CPU and RSS, idle Redis
  idle-ws/sse   N idle connections on B (WebSocket) and on C (SSE): CPU per connection-second
                and RSS per connection, over idle
  ingest, ingest-low  R and R/4 updates/s over HTTP into A for users with no connection, in
                the same number of batches per second (the load generator sends one every
                10 ms): B and C only receive (CPU per pub/sub message and per event), A also
                ingests (CPU per request and per update); Redis CPU per commit call and per
                update committed, with 3 subscribing instances
  fanout        the same with 3 more instances subscribed: Redis CPU and bytes per message
                sent to a subscribing instance (the difference), and per commit (the rest)
  deliver-ws/sse  R updates/s for the jobs of M connected users on B (C): CPU per delivered
                event (minus receiving and idle connections) and bytes per event written

With --cluster-masters M the instances share a private Redis Cluster of M masters instead
(1: every partition on one shard, so Redis's CPU is one process's), and the windows are those
the cluster's costs need: with sharded pub/sub an instance receives only the events of the
users it serves, so receiving is measured where events are delivered, and the cluster
client's work per script call and per owner claim is told apart from ingest by varying them:

  idle, idle-ws/sse  as above
  ingest, ingest-low  as above; nobody receives (no instance serves those users)
  ingest-new    R updates/s, two per job: many more new jobs (owner claims) per second
  ingest-slow   R updates/s in a quarter of the requests: fewer script calls per update
  deliver-ws, deliver-ws-2  R updates/s for M users on B with one and with two WebSocket
                connections each: CPU per event received and per event delivered; Redis CPU
                per message sent to an instance
  deliver-sse   the same on C over SSE
Script calls and owner claims are counted by Redis (INFO commandstats: evalsha, set), not
derived.

Every window is timed from just before publishing to the last expected event's arrival; a
process's CPU is read from /proc/<pid>/stat, its bytes from /proc/<pid>/io (sockets are
written with write(2), counted in wchar), Redis's CPU and bytes from INFO (used_cpu_user +
used_cpu_sys, total_net_input_bytes/total_net_output_bytes).

    flock /tmp/jobwire-cpu.lock .venv/bin/python benchmarks/unit_costs.py [--install]
        [--redis-url URL] [--rate 2000] [--seconds 8] [--idle-connections 2000]
        [--connections 1000] [--cluster-masters M] [--out PATH]

Without --redis-url a private redis-server is started on a free port (and stopped by PID).
With --install the costs are written into src/jobwire/capacity_costs.json, naming the result
file, for `jobwire capacity` to use by default: one Redis's at the top of the file, Redis
Cluster's (--cluster-masters) under "cluster"; the other set is kept.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from jobwire import capacity
from jobwire.auth import JwtAuth
from jobwire.capacity import Costs, TransportCosts, costs_to_json
from jobwire.loadtest import procs, publisher, results
from jobwire.loadtest.publisher import PUBLISH_PATH, PublishStats, job_slots, make_lanes, publish
from jobwire.loadtest.readers import run_loop
from jobwire.loadtest.workers import Readers, start_readers

ROOT = Path(__file__).resolve().parents[1]
COSTS_FILE = ROOT / "src" / "jobwire" / "capacity_costs.json"
JOBS_PER_SECOND = 2.0  # updates per job per second: well under the conflation limit
CONNECT_TIMEOUT = 60.0
DELIVERY_WAIT = 10.0  # for the last events after the last publish
SERVER_ENV = {  # the limits a measurement from one address would hit, out of the way
    "JOBWIRE_MAX_CONNECTIONS_PER_SECOND_PER_IP": "1000000",
    "JOBWIRE_MAX_PUBLISHES_PER_SECOND": "1000000", "JOBWIRE_LOG_LEVEL": "warning"}


# --- processes ----------------------------------------------------------------------------

def redis_nodes(url: str) -> list[redis.Redis]:
    """A client per Redis node behind `url` (every node of a `redis+cluster://` URL)."""
    if not url.startswith("redis+cluster://"):
        return [redis.Redis.from_url(url)]
    seeds = url.removeprefix("redis+cluster://").split("/")[0].split(",")
    host, port = seeds[0].rsplit(":", 1)
    nodes = redis.Redis(host=host, port=int(port), decode_responses=True).cluster("nodes")
    return [redis.Redis(host=a.split(":")[0], port=int(a.split(":")[1].split("@")[0]))
            for a in nodes]


@dataclass
class Deployment:
    """jobwire instances sharing a Redis: a private one, or the one at `redis_url`."""

    stack: contextlib.ExitStack
    redis_url: str = ""
    secret: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    instances: dict[str, procs.Proc] = field(default_factory=dict)
    redis_pid: int | None = None

    def start_redis(self) -> None:
        port = procs.free_ports(1)[0]
        workdir = self.stack.enter_context(tempfile.TemporaryDirectory(prefix="jw-redis-"))
        log = self.stack.enter_context(tempfile.TemporaryFile())
        proc = procs.start_redis(port, workdir, log)
        self.stack.callback(procs.stop_process, proc)
        procs.wait_redis(port, proc, procs.START_TIMEOUT)
        self.redis_url, self.redis_pid = f"redis://127.0.0.1:{port}/0", proc.pid

    def start(self, *names: str) -> None:
        started = []
        for name, port in zip(names, procs.free_ports(len(names)), strict=True):
            log = self.stack.enter_context(tempfile.TemporaryFile())
            proc = procs.start_server(port, self.secret, log, self.redis_url)
            self.stack.callback(procs.stop_process, proc)
            self.instances[name] = procs.Proc(name, f"http://127.0.0.1:{port}", proc, log)
            started.append(self.instances[name])
        for p in started:
            procs.wait_healthy(p.name, p.url + "/readyz", p.proc, procs.START_TIMEOUT)

    def stop(self, *names: str) -> None:
        for name in names:
            procs.stop_process(self.instances.pop(name).proc)

    def url(self, name: str) -> str:
        return self.instances[name].url


def proc_io(pid: int) -> tuple[int, int]:
    """(bytes read, bytes written) through read(2)/write(2), sockets included."""
    with open(f"/proc/{pid}/io") as fh:
        f = dict(line.split(": ") for line in fh.read().splitlines())
    return int(f["rchar"]), int(f["wchar"])


def snapshot(d: Deployment) -> dict[str, Any]:
    """Every instance's CPU seconds, RSS and socket bytes, and Redis's CPU, bytes and
    commands (calls and microseconds per command, over every node)."""
    cpu = redis_in = redis_out = 0.0
    commands: dict[str, list[float]] = {}
    for node in redis_nodes(d.redis_url):
        info = node.info("cpu") | node.info("stats")
        cpu += float(info["used_cpu_user"]) + float(info["used_cpu_sys"])
        redis_in += info["total_net_input_bytes"]
        redis_out += info["total_net_output_bytes"]
        for name, stat in node.info("commandstats").items():
            counts = commands.setdefault(name.removeprefix("cmdstat_"), [0, 0])
            counts[0] += stat["calls"]
            counts[1] += stat["usec"]
        node.close()
    return {"t": time.monotonic(), "redisCpu": cpu, "redisIn": redis_in, "redisOut": redis_out,
            "commands": commands,
            "instances": {n: {"cpu": procs.cpu_seconds(p.pid), "rssMiB": procs.rss_mib(p.pid),
                              "io": proc_io(p.pid)} for n, p in d.instances.items()}}


def window(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """What happened between two snapshots, per second."""
    s = b["t"] - a["t"]
    return {"seconds": round(s, 3),
            "redisCpuPerSecond": (b["redisCpu"] - a["redisCpu"]) / s,
            "redisInPerSecond": (b["redisIn"] - a["redisIn"]) / s,
            "redisOutPerSecond": (b["redisOut"] - a["redisOut"]) / s,
            "redisCommandsPerSecond": {
                name: {"calls": (c - a["commands"].get(name, [0, 0])[0]) / s,
                       "usec": (u - a["commands"].get(name, [0, 0])[1]) / s}
                for name, (c, u) in b["commands"].items()
                if c > a["commands"].get(name, [0, 0])[0]},
            "instances": {n: {"cpuPerSecond": (x["cpu"] - a["instances"][n]["cpu"]) / s,
                              "rssMiB": x["rssMiB"],
                              "rssStartMiB": a["instances"][n]["rssMiB"],
                              "readPerSecond": (x["io"][0] - a["instances"][n]["io"][0]) / s,
                              "writtenPerSecond": (x["io"][1] - a["instances"][n]["io"][1]) / s}
                          for n, x in b["instances"].items() if n in a["instances"]}}


# --- one measured window ------------------------------------------------------------------

async def _delivered(groups: list[Readers]) -> int:
    return sum(s["delivered"] for s in await asyncio.gather(*(g.call("status")
                                                              for g in groups)))


@contextlib.contextmanager
def batches_every(seconds: float) -> Any:
    """The load generator sends a publish request every `seconds` (over all lanes) instead
    of every publisher.TICK: the same rate in fewer, larger requests."""
    tick = publisher.TICK
    publisher.TICK = seconds
    try:
        yield
    finally:
        publisher.TICK = tick


async def measure(d: Deployment, *, readers: list[tuple[str, str, int]], publish_to: list[str],
                  rate: float, seconds: float, label: str, tabs: int = 1,
                  jobs_per_user: int | None = None) -> dict[str, Any]:
    """One window: `readers` ((instance, transport, users)) connected first, `tabs`
    connections per user, then `rate` updates/s for `seconds` published into the `publish_to`
    instances (for the readers' jobs; for users nobody follows when there are no readers), or
    nothing published. Jobs per user: enough for JOBS_PER_SECOND updates per job per second,
    unless given."""
    auth = JwtAuth(secret=d.secret)
    tag = f"{label}{secrets.token_hex(2)}"
    where = [(d.url(name), transport) for name, transport, n in readers for _ in range(n)]
    specs = [(f"{tag}-u{i}", url, auth.mint(f"{tag}-u{i}", "user", ttl=3600), transport)
             for i, (url, transport) in enumerate(where) for _ in range(tabs)]
    jobs = 0
    before = snapshot(d)
    groups = await start_readers(2 if len(specs) > 1000 else 1) if specs else []
    pub = PublishStats()
    try:
        shares = [specs[i::len(groups)] for i in range(len(groups))]
        await asyncio.gather(*(g.call("start", clients=share, concurrent=100, pollInterval=1.0,
                                      wsClient="") for g, share in zip(groups, shares,
                                                                       strict=True)))
        deadline = time.monotonic() + CONNECT_TIMEOUT
        while groups and sum(s["connected"] for s in await asyncio.gather(
                *(g.call("status") for g in groups))) < len(specs):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{label}: not every connection was made in time")
            await asyncio.sleep(0.05)
        await asyncio.sleep(1.0)  # the last subscriptions settle before the window opens
        connected = snapshot(d)
        if publish_to:
            users = list(dict.fromkeys(s[0] for s in specs)) or [f"{tag}-nobody{i}"
                                                                 for i in range(200)]
            per_user = jobs_per_user or max(1, round(rate / JOBS_PER_SECOND / len(users)))
            slots = job_slots(users, per_user)
            jobs = len(slots)
            token = auth.mint(f"{tag}-pub", "publisher", ttl=3600)
            lanes = make_lanes([(d.url(n) + PUBLISH_PATH, token) for n in publish_to],
                               len(users), slots, round(rate * seconds), rate)
            await publish(lanes, pub)
            deadline = time.monotonic() + DELIVERY_WAIT
            while groups and time.monotonic() < deadline:
                if await _delivered(groups) >= pub.accepted * tabs:
                    break
                await asyncio.sleep(0.01)
        else:
            await asyncio.sleep(seconds)
        after = snapshot(d)
        delivered = await _delivered(groups) if groups else 0
    finally:
        for g in groups:
            with contextlib.suppress(Exception):
                await g.call("finish")
        await asyncio.gather(*(g.stop() for g in groups), return_exceptions=True)
    w = window(connected, after)
    for name, x in w["instances"].items():  # RSS before any connection was made
        x["rssBeforeConnectionsMiB"] = before["instances"][name]["rssMiB"]
    events = pub.accepted
    w.update(label=label, connections=len(specs), users=len(where), jobs=jobs,
             updatesSent=pub.sent, events=events,
             conflated=pub.conflated, refused=pub.refused, delivered=delivered,
             eventsPerSecond=events / w["seconds"], batches=pub.batches,
             batchesPerSecond=pub.batches / w["seconds"],
             deliveredPerSecond=delivered / w["seconds"])
    print(f"unit_costs: {label}: {len(specs)} connections, {events} events in "
          f"{w['seconds']:.1f} s, {delivered} delivered", file=sys.stderr, flush=True)
    if pub.refused or (groups and publish_to and delivered < events * tabs):
        raise RuntimeError(f"{label}: {pub.refused} refused, {delivered}/{events} delivered: "
                           f"{pub.samples[:3]}")
    return w


# --- the costs ----------------------------------------------------------------------------

def _per_batch_and_item(lo: dict[str, Any], hi: dict[str, Any], cost: Any) -> tuple[float,
                                                                                    float]:
    """(seconds per batch, per item) of `cost(window)` (CPU seconds per second), from two
    windows with the same batches per second and different items per batch."""
    per_item = (cost(hi) - cost(lo)) / (hi["eventsPerSecond"] - lo["eventsPerSecond"])
    per_batch = (cost(hi) - per_item * hi["eventsPerSecond"]) / hi["batchesPerSecond"]
    return max(per_batch, 0.0), max(per_item, 0.0)


def costs_from(p: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The unit costs, from the windows (see the module's docstring for which is which)."""
    idle = p["idle"]["instances"]
    base = {n: x["cpuPerSecond"] for n, x in idle.items()}
    redis_idle_per_instance = p["idle"]["redisCpuPerSecond"] / len(idle)
    lo, hi = p["ingest-low"], p["ingest"]

    def receiving(w: dict[str, Any]) -> float:  # B and C only receive
        return sum(w["instances"][n]["cpuPerSecond"] - base[n] for n in "BC") / 2

    recv_batch, recv = _per_batch_and_item(lo, hi, receiving)
    ingest_batch, ingest = _per_batch_and_item(
        lo, hi, lambda w: w["instances"]["A"]["cpuPerSecond"] - base["A"] - receiving(w))
    subscribers = {"ingest": 3, "ingest-low": 3, "fanout": 6}

    def redis_cpu(k: str) -> float:
        return p[k]["redisCpuPerSecond"] - redis_idle_per_instance * subscribers[k]

    message = (redis_cpu("fanout") - redis_cpu("ingest")) / 3 / hi["eventsPerSecond"]
    commit_batch, commit = _per_batch_and_item(
        lo, hi, lambda w: redis_cpu(w["label"]) - 3 * message * w["eventsPerSecond"])
    out = {k: p[k]["redisOutPerSecond"] / p[k]["eventsPerSecond"] for k in ("ingest", "fanout")}
    out_message = (out["fanout"] - out["ingest"]) / 3
    transports = {}
    for t, name in (("ws", "B"), ("sse", "C")):
        deliver = p[f"deliver-{t}"]
        conn, rss = idle_connection(p, t, name, base[name])
        y = deliver["instances"][name]
        rest = base[name] + conn * deliver["connections"] \
            + recv * deliver["eventsPerSecond"] + recv_batch * deliver["batchesPerSecond"]
        written = y["writtenPerSecond"] - idle[name]["writtenPerSecond"]
        transports[t] = TransportCosts(
            conn_cpu_us_per_second=round(max(conn, 0) * 1e6, 3),
            deliver_cpu_us=round(max(y["cpuPerSecond"] - rest, 0)
                                 / deliver["deliveredPerSecond"] * 1e6, 2),
            rss_kib_per_connection=round(max(rss, 0), 2),
            bytes_per_event=round(written / deliver["deliveredPerSecond"], 1))
    return {"base_cpu_us_per_second": round(sum(base.values()) / len(base) * 1e6, 1),
            "base_rss_mib": round(sum(x["rssMiB"] for x in idle.values()) / len(idle), 1),
            "ingest_batch_cpu_us": round(ingest_batch * 1e6, 2),
            "ingest_cpu_us": round(ingest * 1e6, 2),
            "receive_batch_cpu_us": round(recv_batch * 1e6, 2),
            "receive_cpu_us": round(recv * 1e6, 2),
            "transports": transports,
            "redis_batch_cpu_us": round(commit_batch * 1e6, 2),
            "redis_commit_cpu_us": round(commit * 1e6, 2),
            "redis_message_cpu_us": round(max(message, 0) * 1e6, 3),
            "redis_ingress_bytes_per_commit": round(
                hi["redisInPerSecond"] / hi["eventsPerSecond"], 1),
            "redis_egress_bytes_per_commit": round(max(out["ingest"] - 3 * out_message, 0), 1),
            "redis_egress_bytes_per_message": round(max(out_message, 0), 1)}


def idle_connection(p: dict[str, dict[str, Any]], transport: str, name: str,
                    base: float) -> tuple[float, float]:
    """(CPU seconds per second, KiB of RSS) of one idle connection, from its idle window."""
    w = p[f"idle-{transport}"]
    x = w["instances"][name]
    return ((x["cpuPerSecond"] - base) / w["connections"],
            (x["rssMiB"] - x["rssBeforeConnectionsMiB"]) * 1024 / w["connections"])


def solve(rows: list[list[float]], rhs: list[float]) -> list[float]:
    """Least squares: x minimising |rows x - rhs| (the normal equations, by elimination)."""
    n = len(rows[0])
    m = [[sum(r[i] * r[j] for r in rows) for j in range(n)]
         + [sum(r[i] * b for r, b in zip(rows, rhs, strict=True))] for i in range(n)]
    for i in range(n):
        pivot = max(range(i, n), key=lambda k: abs(m[k][i]))
        m[i], m[pivot] = m[pivot], m[i]
        for k in range(n):
            if k != i:
                f = m[k][i] / m[i][i]
                m[k] = [a - f * b for a, b in zip(m[k], m[i], strict=True)]
    return [m[i][n] / m[i][i] for i in range(n)]


def calls_of(w: dict[str, Any], command: str) -> float:
    return w["redisCommandsPerSecond"].get(command, {}).get("calls", 0.0)


def cluster_costs_from(p: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Redis Cluster's unit costs (the module's docstring says which window is which). Script
    calls (evalsha) and owner claims (set) per second are Redis's counts."""
    idle = p["idle"]["instances"]
    base = {n: x["cpuPerSecond"] for n, x in idle.items()}
    ingest = [p[k] for k in ("ingest", "ingest-low", "ingest-new", "ingest-slow")]
    request, call, update, claim = solve(
        [[w["batchesPerSecond"], calls_of(w, "evalsha"), w["eventsPerSecond"],
          calls_of(w, "set")] for w in ingest],
        [w["instances"]["A"]["cpuPerSecond"] - base["A"] for w in ingest])

    def redis_work(w: dict[str, Any]) -> float:
        return w["redisCpuPerSecond"] - p["idle"]["redisCpuPerSecond"]

    r_call, r_update, r_claim = solve(
        [[calls_of(w, "evalsha"), w["eventsPerSecond"], calls_of(w, "set")] for w in ingest],
        [redis_work(w) for w in ingest])
    conn = {t: idle_connection(p, t, n, base[n]) for t, n in (("ws", "B"), ("sse", "C"))}
    ws = [p["deliver-ws"], p["deliver-ws-2"]]
    receive, deliver_ws = solve(
        [[w["eventsPerSecond"], w["deliveredPerSecond"]] for w in ws],
        [w["instances"]["B"]["cpuPerSecond"] - base["B"] - conn["ws"][0] * w["connections"]
         for w in ws])
    sse = p["deliver-sse"]
    deliver_sse = (sse["instances"]["C"]["cpuPerSecond"] - base["C"]
                   - conn["sse"][0] * sse["connections"]
                   - receive * sse["eventsPerSecond"]) / sse["deliveredPerSecond"]
    message = sum((redis_work(w) - r_call * calls_of(w, "evalsha") - r_update
                   * w["eventsPerSecond"] - r_claim * calls_of(w, "set")) / w["eventsPerSecond"]
                  for w in ws) / len(ws)
    b = p["deliver-ws"]["instances"]["B"]
    kept = p["deliver-ws"]["users"] * min(capacity.RECENT_EVENTS_PER_USER,
                                          p["deliver-ws"]["events"] / p["deliver-ws"]["users"])
    out_commit = p["ingest"]["redisOutPerSecond"] / p["ingest"]["eventsPerSecond"]
    out_message = p["deliver-ws"]["redisOutPerSecond"] / p["deliver-ws"]["eventsPerSecond"] \
        - out_commit

    def transport(t: str, name: str, deliver: float) -> TransportCosts:
        w = p[f"deliver-{t}"]
        written = w["instances"][name]["writtenPerSecond"] - idle[name]["writtenPerSecond"]
        return TransportCosts(
            conn_cpu_us_per_second=round(max(conn[t][0], 0) * 1e6, 3),
            deliver_cpu_us=round(max(deliver, 0) * 1e6, 2),
            rss_kib_per_connection=round(max(conn[t][1], 0), 2),
            bytes_per_event=round(written / w["deliveredPerSecond"], 1))

    def us(x: float, digits: int = 2) -> float:
        return round(max(x, 0) * 1e6, digits)

    return {"base_cpu_us_per_second": round(sum(base.values()) / len(base) * 1e6, 1),
            "base_rss_mib": round(sum(x["rssMiB"] for x in idle.values()) / len(idle), 1),
            "ingest_batch_cpu_us": us(request), "ingest_cpu_us": us(update),
            "receive_batch_cpu_us": 0.0, "receive_cpu_us": us(receive),
            "transports": {"ws": transport("ws", "B", deliver_ws),
                           "sse": transport("sse", "C", deliver_sse)},
            "redis_batch_cpu_us": us(r_call), "redis_commit_cpu_us": us(r_update),
            "redis_message_cpu_us": us(message, 3),
            "redis_ingress_bytes_per_commit": round(
                p["ingest"]["redisInPerSecond"] / p["ingest"]["eventsPerSecond"], 1),
            "redis_egress_bytes_per_commit": round(out_commit, 1),
            "redis_egress_bytes_per_message": round(max(out_message, 0), 1),
            "commit_call_cpu_us": us(call), "claim_cpu_us": us(claim),
            "recent_event_kib": round(max(b["rssMiB"] - b["rssStartMiB"], 0) * 1024 / kept, 3),
            "redis_claim_cpu_us": us(r_claim)}


async def run_windows(d: Deployment, a: argparse.Namespace) -> dict[str, dict[str, Any]]:
    d.start("A", "B", "C")
    p: dict[str, dict[str, Any]] = {}

    async def go(label: str, **kw: Any) -> None:
        kw.setdefault("readers", [])
        kw.setdefault("publish_to", [])
        kw.setdefault("rate", a.rate)
        p[label] = await measure(d, seconds=a.seconds, label=label, **kw)

    await go("idle")
    await go("idle-ws", readers=[("B", "ws", a.idle_connections)])
    await go("idle-sse", readers=[("C", "sse", a.idle_connections)])
    await go("ingest", publish_to=["A"])
    await go("ingest-low", publish_to=["A"], rate=a.rate / 4)
    if a.cluster_masters:
        # Two updates per job: every job is new in the window (200 users nobody follows).
        await go("ingest-new", publish_to=["A"],
                 jobs_per_user=max(1, round(a.rate * a.seconds / 2 / 200)))
        with batches_every(4 * publisher.TICK):
            await go("ingest-slow", publish_to=["A"])
        await go("deliver-ws", readers=[("B", "ws", a.connections)], publish_to=["A"])
        await go("deliver-ws-2", readers=[("B", "ws", a.connections)], publish_to=["A"],
                 tabs=2)
        await go("deliver-sse", readers=[("C", "sse", a.connections)], publish_to=["A"])
        return p
    d.start("D", "E", "F")
    await go("fanout", publish_to=["A"])
    d.stop("D", "E", "F")
    await go("deliver-ws", readers=[("B", "ws", a.connections)], publish_to=["A"])
    await go("deliver-sse", readers=[("C", "sse", a.connections)], publish_to=["A"])
    return p


def install(costs: dict[str, Any], result_file: Path, run: results.Run, broker: str) -> None:
    """Into the costs file as `broker`'s set, keeping the other broker's."""
    source = {"resultFile": str(result_file.resolve().relative_to(ROOT)),
              "commit": run.source.get("commit"),
              "machine": f"{run.machine['cpuModel']}, {run.machine['cores']} cores",
              "measuredAt": results.iso(run.started)}
    text = COSTS_FILE.read_text()
    sets = {"redis": capacity.costs_from_json(text, "redis"),
            "cluster": capacity.costs_from_json(text, "cluster")
            if "cluster" in json.loads(text) else None}
    sets[broker] = Costs(**costs, source=source)
    COSTS_FILE.write_text(costs_to_json(sets["redis"], sets["cluster"]))
    print(f"unit_costs: installed into {COSTS_FILE.relative_to(ROOT)} ({broker})",
          file=sys.stderr)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--redis-url", help="a Redis to use (default: a private redis-server)")
    p.add_argument("--rate", type=float, default=2000.0, help="updates/s (default 2000)")
    p.add_argument("--seconds", type=float, default=8.0, help="per window (default 8)")
    p.add_argument("--idle-connections", type=int, default=2000, help="(default 2000)")
    p.add_argument("--connections", type=int, default=1000,
                   help="connected users in the delivery windows (default 1000)")
    p.add_argument("--cluster-masters", type=int, default=0, metavar="M",
                   help="measure Redis Cluster's costs on a private cluster of M masters")
    p.add_argument("--install", action="store_true",
                   help="write the costs into src/jobwire/capacity_costs.json")
    results.add_out_option(p)
    a = p.parse_args(argv)
    if min(a.rate, a.seconds, a.idle_connections, a.connections) <= 0 or a.cluster_masters < 0 \
            or (a.cluster_masters and a.redis_url):
        p.error("--rate, --seconds and the connection counts must be positive; not both "
                "--redis-url and --cluster-masters")
    return a


def server_environment() -> None:
    """The servers' settings (start_server passes this process's environment on), recorded in
    the result file: limits a measurement from one address would hit, and key and channel
    prefixes of this run's own (a shared Redis may hold others')."""
    prefix = f"jw{secrets.token_hex(3)}:"
    os.environ.update(SERVER_ENV, JOBWIRE_REDIS_PREFIX=prefix,
                      JOBWIRE_REDIS_CHANNEL_PREFIX=prefix)


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    server_environment()
    run = results.Run("unit_costs", {k: v for k, v in vars(a).items()
                                     if k not in ("out", "install")})
    with contextlib.ExitStack() as stack:
        d = Deployment(stack, redis_url=a.redis_url or "")
        if a.cluster_masters:
            from cluster_scaling import redis_for

            redis_for(stack, d, a.cluster_masters)
        elif not a.redis_url:
            d.start_redis()
        windows = run_loop(run_windows(d, a))
    broker = "cluster" if a.cluster_masters or d.redis_url.startswith("redis+cluster://") \
        else "redis"
    costs = (cluster_costs_from if broker == "cluster" else costs_from)(windows)
    figures = {"costs": {k: ({t: vars(c) for t, c in v.items()} if k == "transports" else v)
                         for k, v in costs.items()},
               "broker": broker, "windows": windows, "privateRedis": not a.redis_url}
    path = run.save(figures, a.out)
    if a.install:
        install(costs, path, run, broker)
    print(costs_to_json(Costs(**costs)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
