#!/usr/bin/env python3
"""Redis Cluster against one Redis, measured with real `jobwire serve` processes and
`jobwire loadtest`'s readers and publisher (every event checked: delivered once, in order):

  routing   N WebSocket users spread evenly over I instances (each user on one instance,
            following all its jobs), R updates/s over HTTP through every instance, run once on
            one Redis (`redis://`: every instance subscribes the global channels and receives
            every event) and once on a Redis Cluster of M masters (`redis+cluster://`: an
            instance subscribes its own users' channels only). Per update: Redis's egress
            bytes (INFO total_net_output_bytes, summed over the nodes), Redis's CPU (INFO
            used_cpu_user + used_cpu_sys), the instances' CPU (/proc/<pid>/stat, summed), and
            the events each instance received over pub/sub (its /metrics counter
            jobwire_broker_events_received_total, where the server has it).
  capacity  I instances and N WebSocket users on a 1-master cluster, then on an M-master one:
            the rate steps up until p99 (publish to receipt) reaches the limit, an event is
            lost, or publishing falls behind (under 95 % of the rate): the highest rate that
            passed, the instances' and Redis's CPU at each step (share of the machine's cores:
            on a small machine the instances, not Redis, are the cap), and Redis's CPU per
            update.

The Redis counters span the whole run (connecting included) minus what the same nodes used
while idle (measured first, for --idle-seconds, with the instances up); the instances' CPU
spans publishing and the wait for the last event, as `jobwire loadtest` measures it. The
Redis nodes are private (started here, stopped by PID); the instances' prefixes are a run's
own.

    flock /tmp/jobwire-cpu.lock .venv/bin/python benchmarks/cluster_scaling.py routing
        [--instances 4] [--connections 400] [--rate 2000] [--seconds 20] [--masters 3]
    flock /tmp/jobwire-cpu.lock .venv/bin/python benchmarks/cluster_scaling.py capacity
        [--instances 2] [--connections 1000] [--rates 4000,6000,...] [--seconds 15]
        [--masters 3] [--p99-limit 500]

Each writes benchmarks/results/cluster_scaling-<UTC start>.json (or --out).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "benchmarks"), str(ROOT)]

from saturation import row  # noqa: E402
from tests.rediscluster import (  # noqa: E402
    SLOTS,
    RedisCluster,
    RedisNode,
    ask,
    distinct_free_ports,
    start_redis_cluster,
    wait_until,
)
from unit_costs import Deployment, measure, redis_nodes, server_environment  # noqa: E402

from jobwire.loadtest import results  # noqa: E402
from jobwire.loadtest.options import Options  # noqa: E402
from jobwire.loadtest.readers import run_loop  # noqa: E402
from jobwire.loadtest.report import Watched  # noqa: E402
from jobwire.loadtest.runner import FD_MARGIN, raise_open_file_limit, run_test  # noqa: E402

KEPT = 0.95  # share of the wanted rate that must be published for a step to pass
RECEIVED = "jobwire_broker_events_received_total"
DEFAULT_RATES = "4000,6000,8000,10000,12000,14000,16000,18000,20000"


# --- Redis: one server, or a cluster --------------------------------------------------------

def small_cluster(masters: int) -> RedisCluster:
    """A cluster of one or two masters, no replicas: `redis-cli --cluster create` wants three
    masters or more, so the slots are assigned and the nodes introduced here. A node alone
    learns its own address from no peer: it is announced."""
    folder = Path(tempfile.mkdtemp(prefix="redis-cluster-"))
    ports = distinct_free_ports(2 * masters)
    nodes = [RedisNode(ports[i], ports[masters + i], folder / str(ports[i]))
             for i in range(masters)]
    cluster = RedisCluster(folder, nodes, 1000, ("--cluster-announce-ip", "127.0.0.1"))
    try:
        for i, node in enumerate(nodes):
            cluster._launch(node)
            first, last = SLOTS * i // masters, SLOTS * (i + 1) // masters - 1
            ask(node, "CLUSTER", "ADDSLOTSRANGE", first, last)
            if i:
                ask(node, "CLUSTER", "MEET", "127.0.0.1", nodes[0].port, nodes[0].bus_port)
        wait_until(lambda: cluster._ready(0), 30, "the cluster being ready")
        cluster.url = "redis+cluster://" + ",".join(n.addr for n in nodes)
    except BaseException:
        cluster.stop()
        raise
    return cluster


def redis_for(stack: contextlib.ExitStack, d: Deployment, masters: int) -> list[int]:
    """Start one Redis (masters 0) or a cluster of `masters`, for `d`; their PIDs."""
    if not masters:
        d.start_redis()
        assert d.redis_pid is not None
        return [d.redis_pid]
    cluster = start_redis_cluster(masters, 0) if masters >= 3 else small_cluster(masters)
    stack.callback(cluster.stop)
    d.redis_url = cluster.url
    return [n.pid for n in cluster.nodes if n.pid]


def redis_counters(url: str) -> dict[str, float]:
    """CPU seconds and network bytes, summed over every node behind `url`."""
    total = {"cpu": 0.0, "netOut": 0.0, "netIn": 0.0}
    for node in redis_nodes(url):
        info = node.info("cpu") | node.info("stats")
        node.close()
        total["cpu"] += float(info["used_cpu_user"]) + float(info["used_cpu_sys"])
        total["netOut"] += info["total_net_output_bytes"]
        total["netIn"] += info["total_net_input_bytes"]
    return total


def received(d: Deployment) -> dict[str, int | None]:
    """Each instance's count of events received over pub/sub (None: its server has none)."""
    out: dict[str, int | None] = {}
    for name, p in d.instances.items():
        text = httpx.get(p.url + "/metrics", timeout=10).text
        lines = [ln for ln in text.splitlines() if ln.startswith(RECEIVED + " ")]
        out[name] = int(float(lines[0].split()[1])) if lines else None
    return out


def machine_busy() -> tuple[float, float]:
    """(busy, total) jiffies of the whole machine, from /proc/stat."""
    with open("/proc/stat") as fh:
        ticks = [int(x) for x in fh.readline().split()[1:]]
    return sum(ticks) - ticks[3] - ticks[4], sum(ticks)  # idle and iowait are not busy


# --- one measured load test -----------------------------------------------------------------

def idle_rates(d: Deployment, seconds: float) -> dict[str, float]:
    """Redis's CPU and bytes per second with the instances up and nothing going on."""
    a, t0 = redis_counters(d.redis_url), time.monotonic()
    time.sleep(seconds)  # a measurement window: the idle background is what is measured
    b, t1 = redis_counters(d.redis_url), time.monotonic()
    return {k + "PerSecond": (b[k] - a[k]) / (t1 - t0) for k in a}


def loadtest(d: Deployment, redis_pids: list[int], *, connections: int, rate: float,
             seconds: float, processes: int, idle: dict[str, float]) -> dict[str, Any]:
    """`jobwire loadtest` against every instance of `d`, with the Redis counters around it."""
    o = Options(urls=[p.url for p in d.instances.values()], secret=d.secret,
                connections=connections, duration=seconds, rate=rate, processes=processes,
                title=f"{connections} ws clients at {rate:g}/s")
    watched = [Watched(name, p.pid, "server") for name, p in d.instances.items()]
    watched += [Watched(f"redis pid {pid}", pid, "redis") for pid in redis_pids]
    problem = raise_open_file_limit(connections + FD_MARGIN)
    if problem:
        raise RuntimeError(problem)
    got0, r0, m0, t0 = received(d), redis_counters(d.redis_url), machine_busy(), time.monotonic()
    result = run_loop(asyncio.wait_for(run_test(o, o.urls, d.secret, watched),
                                       o.connect_timeout + 3 * seconds + 90))
    got1, r1, m1, t1 = received(d), redis_counters(d.redis_url), machine_busy(), time.monotonic()
    span = t1 - t0
    updates = result["publish"]["updatesSent"]
    net = {k: r1[k] - r0[k] - idle[k + "PerSecond"] * span for k in r0}
    servers = [p for p in result["processes"] if p["role"] == "server"]
    per_instance = {name: (None if got0[name] is None or got1[name] is None
                           else got1[name] - got0[name]) for name in got0}
    counted = [v for v in per_instance.values() if v is not None]
    figures = {
        "updates": updates, "events": result["eventsExpected"],
        "redisSeconds": round(span, 3),
        "redisEgressBytesPerUpdate": round(net["netOut"] / updates, 1),
        "redisIngressBytesPerUpdate": round(net["netIn"] / updates, 1),
        "redisCpuUsPerUpdate": round(net["cpu"] * 1e6 / updates, 2),
        "redisRaw": {k: r1[k] - r0[k] for k in r0},
        "instanceCpuUsPerUpdate": round(sum(p["cpuSeconds"] for p in servers) * 1e6
                                        / updates, 1),
        "instanceCpuUsPerUpdateEach": {p["name"]: round(p["cpuSeconds"] * 1e6 / updates, 1)
                                       for p in servers},
        "instanceCpuCores": round(sum(p["cpuPercent"] for p in servers) / 100, 3),
        "redisCpuCores": round(sum(p["cpuPercent"] for p in result["processes"]
                                   if p["role"] == "redis") / 100, 3),
        "loadgenCpuCores": round(result["loadgen"]["cpuPercent"] / 100, 3),
        "machineBusyShare": round((m1[0] - m0[0]) / max(m1[1] - m0[1], 1), 3),
        "eventsReceivedPerInstance": per_instance,
        "eventsReceivedPerUpdatePerInstance": (
            round(sum(counted) / len(counted) / updates, 3) if counted else None),
    }
    verdict = {k: result[k] for k in ("ok", "eventsExpected", "eventsDelivered", "eventsLost",
                                      "seqGaps", "duplicates", "foreignEvents", "latencyMs")}
    print(f"cluster_scaling: {o.title}: {json.dumps(figures['eventsReceivedPerInstance'])} "
          f"received; egress {figures['redisEgressBytesPerUpdate']} B/update, instances "
          f"{figures['instanceCpuUsPerUpdate']} µs/update, p99 {result['latencyMs']['p99']} ms, "
          f"ok {result['ok']}", file=sys.stderr, flush=True)
    return {**figures, "delivery": verdict, "loadtest": result}


def deployment(stack: contextlib.ExitStack, masters: int, instances: int
               ) -> tuple[Deployment, list[int]]:
    d = Deployment(stack)
    pids = redis_for(stack, d, masters)
    d.start(*(f"instance{i}" for i in range(instances)))
    return d, pids


def delivery_only(d: Deployment, a: argparse.Namespace, label: str) -> dict[str, Any]:
    """The same load, published into an instance of its own that has no users ("ingest"):
    the other instances only receive and deliver, so their CPU is the routing's alone. Timed
    from the last connection made to the last event's arrival (unit_costs.measure: every
    update acknowledged must arrive, else it raises)."""
    serving = list(d.instances)
    d.start("ingest")
    readers = [(name, "ws", len(range(i, a.connections, len(serving))))
               for i, name in enumerate(serving)]
    got0 = received(d)
    w = run_loop(measure(d, readers=readers, publish_to=["ingest"], rate=a.rate,
                         seconds=a.seconds, label=label))
    got1 = received(d)
    per_update = 1e6 / w["eventsPerSecond"]
    return {"updates": w["events"], "delivered": w["delivered"], "seconds": w["seconds"],
            "servingCpuUsPerUpdate": round(sum(w["instances"][n]["cpuPerSecond"]
                                               for n in serving) * per_update, 1),
            "ingestCpuUsPerUpdate": round(w["instances"]["ingest"]["cpuPerSecond"]
                                          * per_update, 1),
            "redisEgressBytesPerUpdate": round(w["redisOutPerSecond"] / w["eventsPerSecond"],
                                               1),
            "redisCpuUsPerUpdate": round(w["redisCpuPerSecond"] * per_update, 2),
            "eventsReceivedPerInstance": {
                n: None if got0[n] is None or got1[n] is None else got1[n] - got0[n]
                for n in got1},
            "window": w}


# --- the measurements -----------------------------------------------------------------------

def routing(a: argparse.Namespace) -> dict[str, Any]:
    runs = {}
    for label, masters in (("oneRedis", 0), ("cluster", a.masters)):
        with contextlib.ExitStack() as stack:
            d, pids = deployment(stack, masters, a.instances)
            idle = idle_rates(d, a.idle_seconds)
            runs[label] = {"masters": masters, "redisUrlScheme": d.redis_url.split(":")[0],
                           "idle": idle,
                           **loadtest(d, pids, connections=a.connections, rate=a.rate,
                                      seconds=a.seconds, processes=a.processes, idle=idle)}
            runs[label]["deliveryOnly"] = delivery_only(d, a, f"{label}-delivery-only")
    one, sharded = runs["oneRedis"], runs["cluster"]
    return {"measurement": "routing", "runs": runs, "ratios": {
        k: round(one[k] / sharded[k], 2) if sharded[k] else None
        for k in ("redisEgressBytesPerUpdate", "instanceCpuUsPerUpdate",
                  "redisCpuUsPerUpdate", "eventsReceivedPerUpdatePerInstance")
        if one[k] is not None and sharded[k] is not None},
        "deliveryOnlyRatios": {
            k: round(one["deliveryOnly"][k] / sharded["deliveryOnly"][k], 2)
            for k in ("servingCpuUsPerUpdate", "redisEgressBytesPerUpdate")
            if sharded["deliveryOnly"][k]},
        "ratiosAre": "one Redis / cluster",
        "everyEventDeliveredOnce": all(r["delivery"]["ok"] for r in runs.values())}


def capacity(a: argparse.Namespace) -> dict[str, Any]:
    shards = {}
    for masters in (1, a.masters):
        steps: list[dict[str, Any]] = []
        with contextlib.ExitStack() as stack:
            d, pids = deployment(stack, masters, a.instances)
            idle = idle_rates(d, a.idle_seconds)
            for rate in a.rate_list:
                run = loadtest(d, pids, connections=a.connections, rate=rate,
                               seconds=a.seconds, processes=a.processes, idle=idle)
                step = row(rate, run["loadtest"], a.p99_limit)
                step["kept"] = step["achieved"] >= KEPT * rate
                step["passed"] = step["meets"] and step["kept"]
                step.update({k: v for k, v in run.items() if k not in ("delivery",)})
                steps.append(step)
                if not step["passed"]:
                    break
        passed = [s for s in steps if s["passed"]]
        best = passed[-1] if passed else None
        shards[str(masters)] = {
            "masters": masters, "idle": idle, "steps": steps,
            "highestPassingRate": best["rate"] if best else None,
            "firstFailingRate": steps[-1]["rate"] if not steps[-1]["passed"] else None,
            "atHighest": {k: best[k] for k in ("instanceCpuCores", "redisCpuCores",
                                               "loadgenCpuCores", "machineBusyShare",
                                               "redisCpuUsPerUpdate", "instanceCpuUsPerUpdate")}
            if best else None}
    return {"measurement": "capacity", "p99LimitMs": a.p99_limit, "keptShare": KEPT,
            "cores": os.cpu_count(), "shards": shards}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("measurement", choices=("routing", "capacity"))
    p.add_argument("--instances", type=int, help="jobwire instances (routing 4, capacity 2)")
    p.add_argument("--connections", type=int,
                   help="WebSocket users, one each (routing 400, capacity 1000)")
    p.add_argument("--rate", type=float, default=2000.0, help="routing: updates/s (2000)")
    p.add_argument("--rates", default=DEFAULT_RATES,
                   help=f"capacity: the steps, updates/s (default {DEFAULT_RATES})")
    p.add_argument("--seconds", type=float, help="publishing, per run (routing 20, "
                                                 "capacity 15)")
    p.add_argument("--masters", type=int, default=3, help="the cluster's masters (default 3)")
    p.add_argument("--p99-limit", type=float, default=500.0, help="ms (default 500)")
    p.add_argument("--processes", type=int, default=1,
                   help="the load generator's reader processes (default 1)")
    p.add_argument("--idle-seconds", type=float, default=3.0,
                   help="Redis's idle background, measured for this long (default 3)")
    results.add_out_option(p)
    a = p.parse_args(argv)
    routing_run = a.measurement == "routing"
    a.instances = a.instances or (4 if routing_run else 2)
    a.connections = a.connections or (400 if routing_run else 1000)
    a.seconds = a.seconds or (20.0 if routing_run else 15.0)
    try:
        a.rate_list = [float(r) for r in a.rates.split(",") if r.strip()]
    except ValueError:
        p.error(f"--rates {a.rates!r}: comma-separated numbers")
    if min(a.instances, a.connections, a.masters, a.rate, a.seconds, *a.rate_list) <= 0:
        p.error("counts, rates and durations must be positive")
    return a


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    server_environment()
    run = results.Run("cluster_scaling", {k: v for k, v in vars(a).items() if k != "out"})
    outcome = routing(a) if a.measurement == "routing" else capacity(a)
    run.save(outcome, a.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
