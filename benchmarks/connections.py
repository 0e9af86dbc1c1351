"""WebSocket connections on one server process: how fast they are accepted while ramping up,
and what each idle one costs in server memory.

Starts a private `jobwire serve` (pinned to CPU 0 when the machine has two or more), records
its RSS, opens N connections from this process (pinned to the other CPUs), `--concurrent`
attempts at a time, each a new user that authenticates and subscribes to all its jobs, and
records its RSS again once every connection has its `subscribed` answer. Writes the result
file to --out (default benchmarks/results/connections-<UTC time>.json).

    .venv/bin/python benchmarks/connections.py --connections 10000 --concurrent 200
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import secrets
import statistics
import sys
import time

import orjson
import websockets

from jobwire.auth import JwtAuth
from jobwire.loadtest import procs, results

SETTLE_SECONDS = 2.0  # after the last connection, for the server's allocations to settle


def pin(pid: int, cpus: set[int]) -> None:
    if len(os.sched_getaffinity(0)) > 1:
        os.sched_setaffinity(pid, cpus)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]


async def open_one(url: str, token: str, gate: asyncio.Semaphore,
                   times: list[float]) -> websockets.ClientConnection:
    async with gate:
        t0 = time.perf_counter()
        ws = await websockets.connect(f"{url}?token={token}", open_timeout=60,
                                      ping_interval=None, compression=None)
        assert orjson.loads(await ws.recv())["type"] == "authenticated"
        await ws.send(b'{"type":"subscribe","all":true}')
        assert orjson.loads(await ws.recv())["type"] == "subscribed"
        times.append(time.perf_counter() - t0)
        return ws


async def measure(url: str, pid: int, auth: JwtAuth, n: int, concurrent: int) -> dict:
    prefix = secrets.token_hex(3)
    tokens = [auth.mint(f"c{prefix}-{i}", "user", ttl=3600) for i in range(n)]
    await asyncio.sleep(SETTLE_SECONDS)
    rss0 = procs.rss_mib(pid)
    gate = asyncio.Semaphore(concurrent)
    times: list[float] = []
    t0 = time.perf_counter()
    conns = await asyncio.gather(*(open_one(url, t, gate, times) for t in tokens))
    ramp = time.perf_counter() - t0
    await asyncio.sleep(SETTLE_SECONDS)
    rss1 = procs.rss_mib(pid)
    await asyncio.gather(*(c.close() for c in conns))
    ms = [t * 1000 for t in times]
    return {
        "connections": n, "concurrent": concurrent, "rampSeconds": round(ramp, 2),
        "connectMs": {"p50": round(statistics.median(ms), 1),
                      "p99": round(percentile(ms, 99), 1), "max": round(max(ms), 1)},
        "serverRssMiB": {"before": round(rss0, 1), "after": round(rss1, 1)},
        "rssPerConnectionKiB": round((rss1 - rss0) * 1024 / n, 1),
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--connections", type=int, default=1000)
    p.add_argument("--concurrent", type=int, default=100,
                   help="connection attempts in flight at once while ramping up")
    p.add_argument("--json", action="store_true")
    results.add_out_option(p)
    args = p.parse_args()
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, args.connections + 500), hard))
    env = {"JOBWIRE_MAX_CONNECTIONS_PER_SECOND_PER_IP": "0",
           "JOBWIRE_MAX_CONNECTIONS_PER_SECOND_PER_USER": "0"}
    os.environ.update(env)
    run = results.Run("connections", {"connections": args.connections,
                                      "concurrent": args.concurrent})
    secret = secrets.token_urlsafe(32)
    cluster = procs.Cluster()
    with contextlib.ExitStack() as stack:
        procs.start_cluster(cluster, 1, secret, stack)
        try:
            server = cluster.servers[0]
            cpus = sorted(os.sched_getaffinity(0))
            pin(server.pid, {cpus[0]})
            pin(0, set(cpus[1:]) or {cpus[0]})
            ws_url = server.url.replace("http", "ws", 1).rstrip("/") + "/ws/jobs"
            result = asyncio.run(measure(ws_url, server.pid, JwtAuth(secret=secret),
                                         args.connections, args.concurrent))
        finally:
            cluster.stop()
    run.save(result, args.out)
    if args.json:
        print(json.dumps(result))
    else:
        c = result["connectMs"]
        print(f"{result['connections']} connections, {result['concurrent']} at a time: "
              f"ramp {result['rampSeconds']} s, connect p50 {c['p50']} ms, p99 {c['p99']} ms, "
              f"max {c['max']} ms; server RSS {result['serverRssMiB']['before']} -> "
              f"{result['serverRssMiB']['after']} MiB: "
              f"{result['rssPerConnectionKiB']} KiB per idle connection")
    return 0


if __name__ == "__main__":
    sys.exit(main())
