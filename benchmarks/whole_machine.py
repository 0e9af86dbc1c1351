#!/usr/bin/env python3
"""A whole machine: `jobwire serve --workers 2` with a private Redis, every process sharing this
machine's cores, at rising update rates into N WebSocket clients.

For every rate: a private redis-server and `jobwire serve --workers 2` on it (both workers on
one port, SO_REUSEPORT), then `jobwire loadtest --url ... --server-pid <each worker>` against it
(N clients split over --processes reader processes, the publisher in the parent), then both
stopped. Nothing is pinned: the workers, Redis and the load generator share the cores, which
is the point (a machine's whole capacity) and the caveat (the load generator's CPU is taken from
the same cores; each row gives it). The rows are those of benchmarks/saturation.py (latency from
publish to receipt, events delivered/expected, CPU of the workers and of the load generator),
plus Redis's CPU over the run (/proc/<pid>/stat, connecting included).

The server's connection rate limit per IP is off (every client comes from 127.0.0.1), and the
per-user limits are kept (each client is a user of its own). 20,000 clients need 20,000 file
descriptors spread over the processes: the workers take about half each and the readers
N / --processes each, under the open-file limit of 20,000 per process.

    .venv/bin/python benchmarks/whole_machine.py [--clients 1000] [--rates 2000,5000,10000]
        [--duration 15] [--processes 2] [--p99-limit 500] [--stop-after 2]
        [--lock /tmp/jobwire-cpu.lock] [--out PATH]

With --lock FILE each rate runs holding flock(2) on FILE (as `flock FILE` would), so no other
measured run shares the CPUs with it, and others get their turn between rates.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import os
import secrets
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "benchmarks")]
from saturation import row, table  # noqa: E402

from jobwire.loadtest import procs, results  # noqa: E402

SERVER_ENV = {"JOBWIRE_MAX_CONNECTIONS_PER_SECOND_PER_IP": "0", "JOBWIRE_LOG_LEVEL": "warning"}
WORKERS = 2


@contextlib.contextmanager
def locked(path: str | None) -> Iterator[None]:
    if not path:
        yield
        return
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as fh:
            return [int(c) for c in fh.read().split()]
    except OSError:
        return []


def start_machine(stack: contextlib.ExitStack, secret: str) -> tuple[str, list[int], int]:
    """Redis and `jobwire serve --workers 2` on it: (URL, the workers' PIDs, Redis's PID)."""
    redis_port, port = procs.free_ports(2)
    workdir = stack.enter_context(tempfile.TemporaryDirectory(prefix="jw-redis-"))
    redis_log = stack.enter_context(tempfile.TemporaryFile())
    redis = procs.start_redis(redis_port, workdir, redis_log)
    stack.callback(procs.stop_process, redis)
    procs.wait_redis(redis_port, redis, procs.START_TIMEOUT)
    log = stack.enter_context(tempfile.TemporaryFile())
    env = {**os.environ, "JOBWIRE_SECRET": secret, "JOBWIRE_HOST": "127.0.0.1",
           "JOBWIRE_JWT_ALGORITHM": "HS256", "JOBWIRE_REDIS_URL":
               f"redis://127.0.0.1:{redis_port}/0", "JOBWIRE_WORKERS": str(WORKERS)}
    server = subprocess.Popen([*procs.jobwire_command(), "serve", "--port", str(port)],
                              env=env, stdin=subprocess.DEVNULL, stdout=log,
                              stderr=subprocess.STDOUT)
    stack.callback(procs.stop_process, server)  # the supervisor passes SIGTERM on
    url = f"http://127.0.0.1:{port}"
    procs.wait_healthy("jobwire serve --workers 2", url + "/readyz", server, procs.START_TIMEOUT)
    deadline = time.monotonic() + procs.START_TIMEOUT
    while len(workers := children(server.pid)) < WORKERS and time.monotonic() < deadline:
        time.sleep(0.1)
    if len(workers) < WORKERS:
        raise RuntimeError(f"the supervisor has {len(workers)} workers, not {WORKERS}")
    return url, workers, redis.pid


def run_rate(args: argparse.Namespace, rate: float) -> dict[str, Any] | None:
    secret = secrets.token_urlsafe(32)
    with tempfile.TemporaryDirectory(prefix="whole-machine-") as tmp, \
            contextlib.ExitStack() as stack:
        url, workers, redis_pid = start_machine(stack, secret)
        out = Path(tmp) / "run.json"
        cmd = [sys.executable, "-m", "jobwire.cli", "loadtest", "--url", url,
               *[a for w in workers for a in ("--server-pid", str(w))],
               "--connections", str(args.clients), "--updates-per-second", f"{rate:g}",
               "--duration", f"{args.duration:g}", "--processes", str(args.processes),
               "--json", str(out)]
        redis0, t0 = procs.cpu_seconds(redis_pid), time.monotonic()
        proc = subprocess.run(cmd, capture_output=True, check=False,
                              timeout=3 * args.duration + 600,
                              env={**os.environ, "JOBWIRE_SECRET": secret})
        redis_cpu, seconds = procs.cpu_seconds(redis_pid) - redis0, time.monotonic() - t0
        if not out.exists():
            print(f"whole_machine: {rate:g}/s could not run (status {proc.returncode}):\n"
                  f"{proc.stderr.decode(errors='replace')[-2000:]}", file=sys.stderr)
            return None
        r = orjson.loads(out.read_bytes())
    r["redis"] = {"pid": redis_pid, "cpuSeconds": round(redis_cpu, 2),
                  "wallSeconds": round(seconds, 1), "workers": workers}
    return r


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--clients", type=int, default=1000)
    p.add_argument("--rates", default="2000,5000,10000")
    p.add_argument("--duration", type=float, default=15)
    p.add_argument("--processes", type=int, default=2, help="the load generator's readers")
    p.add_argument("--p99-limit", type=float, default=500.0)
    p.add_argument("--stop-after", type=int, default=2)
    p.add_argument("--lock", metavar="FILE")
    results.add_out_option(p)
    args = p.parse_args(argv)
    os.environ.update(SERVER_ENV)  # recorded in the result file, inherited by the servers
    rates = [float(x) for x in args.rates.split(",") if x.strip()]
    record = results.Run("whole_machine", {k: v for k, v in vars(args).items() if k != "out"})
    rows, runs, misses = [], [], 0
    for rate in rates:
        print(f"whole_machine: {args.clients} clients at {rate:g}/s ...", file=sys.stderr,
              flush=True)
        with locked(args.lock):
            r = run_rate(args, rate)
        if r is None:
            return 2
        runs.append(r)
        x = row(rate, r["result"], args.p99_limit)
        published = r["result"]["publish"]["updatesSent"] or 1
        x["redisCpuPercent"] = round(100 * r["redis"]["cpuSeconds"] / r["redis"]["wallSeconds"],
                                     1)
        x["redisUsPerUpdate"] = round(1e6 * r["redis"]["cpuSeconds"] / published, 1)
        x["kept"] = x["achieved"] >= 0.95 * rate
        x["meets"] = x["meets"] and x["kept"]
        rows.append(x)
        print(f"whole_machine: {rate:g}/s: achieved {x['achieved']}, p99 {x['p99']} ms, "
              f"{x['delivered']}/{x['expected']}, workers {x['serverCpuPercent']} %, redis "
              f"{x['redisCpuPercent']} %, loadgen {x['loadgenCpuPercent']} %", file=sys.stderr,
              flush=True)
        misses = 0 if x["meets"] else misses + 1
        if args.stop_after and misses >= args.stop_after:
            break
    best = max((x["rate"] for x in rows if x["meets"]), default=None)
    record.save({"rows": rows, "highestRateMeetingLimit": best, "p99LimitMs": args.p99_limit,
                 "clients": args.clients, "workers": WORKERS, "runs": runs}, args.out)
    print(table(rows, args.p99_limit))
    print(f"\nhighest rate with p99 < {args.p99_limit:g} ms, nothing lost, rate kept: {best}")
    return 0 if best else 1


if __name__ == "__main__":
    sys.exit(main())
