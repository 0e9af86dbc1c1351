"""One run: a fresh server (and Redis) for one load, mode, rate and server; the clients
connect, the load is published, and the server's CPU, the Redis CPU, RSS, latency and what
arrived are measured."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import secrets
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
from cpu_profile import parse_stacks, py_spy, shares

from jobwire.auth import JwtAuth
from jobwire.loadtest import procs

from .clients import Tally, connect_all
from .publishers import Published, Target, Updates, job_slots, publish
from .report import record
from .servers import LOADGEN_CORE, SECRET, Server, pinned, start_redis, start_server

PER_JOB_RATE = 2.0  # updates/s per job: well under jobwire's conflation limit (10/s)
MIN_JOBS_PER_USER = 5
clock = time.perf_counter


@dataclass
class Measured:
    """The raw figures of one run, for report.record."""

    load: str
    rate: float
    clients: int
    tally: Tally
    pub: Published
    connected: int = 0
    ramp: float = 0.0
    window: float = 0.0  # publishing and the drain, seconds
    cpu: float = 0.0  # the server's, over the window
    redis_cpu: float | None = None
    own: float = 0.0  # this process's
    lags: list[float] = field(default_factory=list)
    rss: dict[str, float] = field(default_factory=dict)  # idle, connected, end
    jobs_per_user: int = 0
    idle_seconds: float | None = None  # idle load: nothing published for this long...
    idle_cpu: float | None = None  # ... and the server's CPU meanwhile
    redis_commands: dict[str, dict[str, int]] = field(default_factory=dict)  # INFO commandstats
    profile: dict[str, Any] | None = None  # --profile: py-spy's view of the server


def redis_commandstats(url: str | None, reset: bool = False) -> dict[str, dict[str, int]]:
    """Redis's own count of calls and µs per command (a script's inner commands are counted
    both on their own and within EVALSHA): where its CPU per message goes."""
    if url is None:
        return {}
    with redis.Redis.from_url(url) as client:
        if reset:
            client.config_resetstat()
            return {}
        stats = client.info("commandstats")
    return {name.removeprefix("cmdstat_"): {"calls": v["calls"], "usec": v["usec"]}
            for name, v in stats.items()}


async def loop_lag(samples: list[float], stop: asyncio.Event) -> None:
    """How late this process's event loop runs: its own queueing shows in the latencies."""
    while not stop.is_set():
        t0 = clock()
        await asyncio.sleep(0.05)
        samples.append(clock() - t0 - 0.05)


async def measure(load: str, server: Server, base: str, server_pid: int,
                  redis: tuple[int, str] | None, args: argparse.Namespace,
                  rate: float) -> Measured:
    run = secrets.token_hex(3)
    n_clients = args.idle_clients if load == "idle" else args.clients
    users = [f"cp{run}-u{i}" for i in range(n_clients)]
    auth = JwtAuth(secret=SECRET, algorithm="HS256")
    tokens = ([auth.mint(u, "user", ttl=3600) for u in users] if server.name == "jobwire"
              else users)
    m = Measured(load, rate, n_clients, Tally(), Published())
    redis_pid = redis[0] if redis else None

    await asyncio.sleep(args.settle)
    m.rss["idle"] = procs.rss_mib(server_pid)
    ramp0 = clock()
    clients = await connect_all(server, base, users, tokens, args.concurrent, m.tally)
    m.ramp = clock() - ramp0
    await asyncio.sleep(args.settle)
    m.rss["connected"] = procs.rss_mib(server_pid)
    m.connected = len(clients.sockets)
    try:
        if not clients.users:
            raise RuntimeError(f"{server.label}: no client connected, e.g. "
                               f"{m.tally.connect_failures[:1]}")
        if load == "idle":  # connected, nothing published: what keeping them open costs
            m.idle_seconds = args.idle_seconds
            cpu0 = procs.cpu_seconds(server_pid)
            await asyncio.sleep(args.idle_seconds)
            m.idle_cpu = procs.cpu_seconds(server_pid) - cpu0
        m.jobs_per_user = max(MIN_JOBS_PER_USER, math.ceil(rate / (n_clients * PER_JOB_RATE)))
        slots = job_slots(clients.users, m.jobs_per_user)  # only users that are listening
        token = (auth.mint(f"cp{run}-pub", "publisher", ttl=3600)
                 if server.name == "jobwire" else "")
        target = Target(server, base, token, redis[1] if redis else None)
        updates = Updates(server, slots, round(rate * args.duration))
        stop = asyncio.Event()
        sampler = asyncio.create_task(loop_lag(m.lags, stop))
        cpu0 = procs.cpu_seconds(server_pid)
        redis0 = procs.cpu_seconds(redis_pid) if redis_pid else 0.0
        redis_commandstats(redis[1] if redis else None, reset=True)
        own0, t0 = time.process_time(), clock()
        spy = await start_profile(server_pid) if args.profile and server.name == "jobwire" \
            else None
        await publish(load, target, updates, rate, args.duration, args.workers, m.pub)
        if spy is not None:
            m.profile = await spy
        m.tally.expect(m.pub.accepted)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(m.tally.done.wait(), args.drain)
        m.window = clock() - t0
        m.cpu = procs.cpu_seconds(server_pid) - cpu0
        m.redis_cpu = procs.cpu_seconds(redis_pid) - redis0 if redis_pid else None
        m.redis_commands = redis_commandstats(redis[1] if redis else None)
        m.own = time.process_time() - own0
        m.rss["end"] = procs.rss_mib(server_pid)
        stop.set()
        await sampler
    finally:
        await clients.close()
    return m


async def start_profile(pid: int, seconds: int = 5, rate: int = 200
                        ) -> asyncio.Future[dict[str, Any]]:
    """py-spy on the server for the first `seconds` of publishing (pinned beside the
    generator), as benchmarks/cpu_profile.py samples it: shares of the server's busy samples
    by module and by jobwire function."""
    out = Path(tempfile.mkdtemp(prefix="compare-profile-")) / "py-spy.txt"
    proc = await asyncio.create_subprocess_exec(
        *pinned(LOADGEN_CORE, [str(py_spy()), "record", "--pid", str(pid), "--rate", str(rate),
                               "--duration", str(seconds), "--nonblocking", "--nolineno",
                               "--format", "raw", "--output", str(out)]),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)

    async def finish() -> dict[str, Any]:
        _, err = await proc.communicate()
        if proc.returncode:
            raise RuntimeError("py-spy failed: " + err.decode(errors="replace"))
        found = shares(parse_stacks(out.read_text()))
        shutil.rmtree(out.parent, ignore_errors=True)
        return {**found, "sampleRate": rate, "seconds": seconds}

    return asyncio.ensure_future(finish())


def run_one(load: str, server: Server, mode: str, rate: float,
            args: argparse.Namespace) -> dict[str, Any]:
    with contextlib.ExitStack() as stack:
        redis = None
        if mode == "redis":
            r, redis_url = start_redis(stack)
            redis = (r.proc.pid, redis_url)
        s = start_server(server, redis[1] if redis else None, stack)
        print(f"run: {load}, {server.label}, {mode}, {rate:g}/s ...", file=sys.stderr,
              flush=True)
        with asyncio.Runner(loop_factory=loop_factory()) as runner:
            m = runner.run(measure(load, server, s.url, s.proc.pid, redis, args, rate))
        result = record(server, mode, m, args)
        errors, tail = procs.log_tail(s.log)
        if errors:
            result["notes"].append(f"server logged {errors} error lines; last: "
                                   f"{tail.splitlines()[-1][:200]}")
        return result


def loop_factory() -> Any:
    with contextlib.suppress(ImportError):
        import uvloop

        return uvloop.new_event_loop
    return None
