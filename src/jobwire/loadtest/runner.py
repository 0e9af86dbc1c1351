"""One load test run: ramp the connections up, publish on schedule (forcing disconnects if
asked), wait for the stragglers, and measure. This process publishes and orchestrates; the
readers run in its event loop (uvloop if there) or in --processes worker processes, driven
through the same commands (readers.py), and their tallies are merged at the end."""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import itertools
import math
import os
import random
import resource
import secrets
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

from ..auth import JwtAuth
from . import procs
from .options import Options, transport_of
from .publisher import PUBLISH_PATH, PublishStats, job_slots, make_lanes, publish
from .readers import run_loop
from .report import LoadgenProcess, Watched, build_result
from .stats import merge_parts
from .workers import Readers, split, start_readers

PER_JOB_RATE = 2.0  # target updates/s per job: well under the default 10/s conflation limit
MIN_JOBS_PER_USER = 5
STRAGGLER_WAIT = 5.0  # seconds to wait for late events after the last publish
FD_MARGIN = 200  # open files besides one socket per connection
clock = time.perf_counter


class Progress:
    """The live line on stderr (only when it is a terminal)."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self.shown = False

    def show(self, text: str) -> None:
        if self.enabled:
            sys.stderr.write(f"\r\x1b[K{text}")
            sys.stderr.flush()
            self.shown = True

    def clear(self) -> None:
        if self.shown:
            sys.stderr.write("\r\x1b[K")
            sys.stderr.flush()
            self.shown = False


def open_files_needed(o: Options) -> int:
    """Per process: this one holds every reader's socket, or (with --processes above 1) each
    worker holds its share and inherits this process's limit."""
    return -(-o.connections // o.processes) + FD_MARGIN


def raise_open_file_limit(need: int) -> str | None:
    """One socket per connection: raise the soft limit if needed, or say why it cannot be."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or need <= soft:
        return None
    if hard != resource.RLIM_INFINITY and need > hard:
        return (f"about {need} open files are needed, and the limit is {hard}: "
                "use fewer connections")
    resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))
    return None


def make_auth(secret: str) -> JwtAuth:
    return JwtAuth(secret=secret,
                   algorithm=os.environ.get("JOBWIRE_JWT_ALGORITHM", "HS256"),
                   private_key=os.environ.get("JOBWIRE_JWT_PRIVATE_KEY"))


async def _every(seconds: float, action: Callable[[], Awaitable[None]],
                 stop: asyncio.Event) -> None:
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), seconds)
        await action()


async def statuses(groups: list[Readers], p99: bool = False) -> list[dict[str, Any]]:
    return list(await asyncio.gather(*(g.call("status", p99=p99) for g in groups)))


def spread(counts: list[int], n: int) -> list[int]:
    """n random picks without replacement among sum(counts) items, counted per group."""
    picks = [0] * len(counts)
    bounds = list(itertools.accumulate(counts))
    for k in random.sample(range(bounds[-1] if bounds else 0), min(n, sum(counts))):
        picks[bisect.bisect_right(bounds, k)] += 1
    return picks


async def run_test(o: Options, urls: list[str], secret: str,
                   watched: list[Watched]) -> dict[str, Any]:
    run_id = secrets.token_hex(3)
    prefix = f"lt{run_id}"
    auth = make_auth(secret)
    ttl = 3600 + 3 * o.duration + o.connect_timeout
    progress = Progress(o.progress)
    transports = [transport_of(i, o.transport) for i in range(o.connections)]
    specs = [(f"{prefix}-u{i}", urls[i % len(urls)],
              auth.mint(f"{prefix}-u{i}", "user", ttl=ttl), t)
             for i, t in enumerate(transports)]
    for w in watched:
        w.rss0 = procs.rss_mib(w.pid)

    # --- the parent's loop lateness, sampled while publishing and after
    lags: list[float] = []
    stop_sampling = asyncio.Event()

    async def sample_lag() -> None:
        while not stop_sampling.is_set():
            t0 = clock()
            await asyncio.sleep(0.05)
            lags.append(clock() - t0 - 0.05)

    sampler: asyncio.Task[None] | None = None
    groups: list[Readers] = []
    pub = PublishStats()
    try:
        # --- the readers, in this process or split over worker processes
        groups = await start_readers(o.processes)
        shares = split(o.connections, len(groups))
        concurrency = split(o.concurrent, len(groups))
        await asyncio.gather(*(
            g.call("start", clients=[specs[i] for i in share],
                   concurrent=max(1, len(conc)), pollInterval=o.poll_interval,
                   wsClient=o.ws_client)
            for g, share, conc in zip(groups, shares, concurrency, strict=True)))

        # --- ramp-up
        ramp0 = clock()
        deadline = ramp0 + o.connect_timeout
        while True:
            st = await statuses(groups)
            connected = sum(s["connected"] for s in st)
            failed = sum(s["failed"] for s in st)
            limited = sum(s["rateLimited"] for s in st)
            progress.show(f"jobwire loadtest: connecting {connected}/{o.connections}"
                          + (f", {failed} failed" if failed else "")
                          + (f", {limited} rate-limited retries" if limited else ""))
            if connected + failed >= o.connections or clock() >= deadline:
                break
            await asyncio.sleep(0.05)
        ramp_seconds = clock() - ramp0
        cut = await asyncio.gather(*(g.call("cutoff", timeout=o.connect_timeout)
                                     for g in groups))
        users = [u for c in cut for u in c["live"]]  # in client order: the groups are ranges
        if not users:
            raise RuntimeError("no connection succeeded; "
                               f"{[s for c in cut for s in c['samples']][:3]}")

        # --- the workload, over the connected users only
        jobs_per_user = o.jobs_per_user or max(
            MIN_JOBS_PER_USER, math.ceil(o.rate / (len(users) * PER_JOB_RATE)))
        slots = job_slots(users, jobs_per_user)
        owner = dict(slots)
        total = round(o.rate * o.duration)
        tokens = [auth.mint(f"{prefix}-pub{k}", "publisher", ttl=ttl)
                  for k in range(o.publisher_count())]
        targets = [(url.rstrip("/") + PUBLISH_PATH, tok) for url in urls for tok in tokens]
        lanes = make_lanes(targets, len(users), slots, total, o.rate)

        # --- forced disconnects and the live line while publishing
        stop = asyncio.Event()

        async def chaos() -> None:
            if stop.is_set():
                return
            picks = spread([s["up"] for s in await statuses(groups)], o.disconnect_every)
            await asyncio.gather(*(g.call("drop", n=n)
                                   for g, n in zip(groups, picks, strict=True) if n))

        t_start = clock()

        async def show(st: list[dict[str, Any]] | None = None) -> None:
            if not progress.enabled:
                return
            st = st or await statuses(groups, p99=True)
            elapsed = clock() - t_start
            cpu = time.process_time() - own0 + sum(
                s["cpu"] - c0 for g, s, c0 in zip(groups, st, cpu0s, strict=True)
                if not g.local)
            forced = sum(s["forced"] for s in st)
            p99 = max((s.get("p99Ms") or 0 for s in st), default=0)
            progress.show(f"jobwire loadtest: {min(elapsed, o.duration):.0f}/{o.duration:g} s, "
                          f"sent {pub.sent}/{total}, "
                          f"delivered {sum(s['delivered'] for s in st)}, p99 {p99:.1f} ms"
                          + (f", reconnected {sum(s['reconnected'] for s in st)}/{forced}"
                             if forced else "")
                          + f", loadgen CPU {100 * cpu / max(elapsed, 1e-9):.0f} %")

        cpu0 = [procs.cpu_seconds(w.pid) for w in watched]
        for w, c in zip(watched, cpu0, strict=True):
            w.cpu0 = c
        cpu0s = [m["cpu"] for m in await asyncio.gather(*(
            g.call("measure", sampleLag=not g.local) for g in groups))]
        own0 = time.process_time()
        sampler = asyncio.create_task(sample_lag())
        background = [asyncio.create_task(_every(1.0, show, stop))]
        if o.disconnect_every:
            background.append(asyncio.create_task(_every(o.disconnect_interval, chaos, stop)))
        try:
            await asyncio.wait_for(publish(lanes, pub, ssl_context_for(urls)),
                                   o.duration * 2 + 30)
        except TimeoutError:
            pub.note("publishing did not finish in time: aborted")
        publish_end = clock()

        # --- stragglers: every expected event in, and every forced drop resumed
        stop.set()
        await asyncio.gather(*background, return_exceptions=True)
        order = list(dict.fromkeys(transports))
        expected_by = dict.fromkeys(order, 0)
        transport_of_user = {user: t for user, _, _, t in specs}
        for job, seq in pub.final_seq.items():
            expected_by[transport_of_user[owner[job]]] += seq
        expected = sum(expected_by.values())
        wait = STRAGGLER_WAIT + (3 * o.poll_interval if "poll" in expected_by else 0)
        end = clock() + wait
        while clock() < end:
            st = await statuses(groups)
            if sum(s["delivered"] for s in st) >= expected and not any(
                    s["pending"] for s in st):
                break
            await show(st)
            await asyncio.sleep(0.02)
        measured = clock() - t_start
        own = time.process_time() - own0
        cpu1 = [procs.cpu_seconds(w.pid) for w in watched]
        rss1 = [procs.rss_mib(w.pid) for w in watched]
        parts = await asyncio.gather(*(g.call("finish") for g in groups))
    finally:
        progress.clear()
        stop_sampling.set()
        await asyncio.gather(*(g.stop() for g in groups), return_exceptions=True)
        if sampler is not None:
            await asyncio.gather(sampler, return_exceptions=True)

    me = LoadgenProcess("publisher", os.getpid(), 0, own, lags)
    loadgen = [me]
    for g, part in zip(groups, parts, strict=True):
        if g.local:  # the same process: its CPU and lateness are already counted
            me.role, me.clients = "publisher+readers", part["clients"]
        else:
            loadgen.append(LoadgenProcess("readers", part["pid"], part["clients"],
                                          part["cpuSeconds"], part["lags"]))
    return build_result(
        o, urls=urls, run_id=run_id, prefix=prefix, tallies=merge_parts(parts, order),
        expected_by=expected_by, pub=pub, users=len(users), jobs=len(slots),
        jobs_per_user=jobs_per_user, lanes=len(lanes), publishers=len(tokens),
        ramp_seconds=ramp_seconds, publish_seconds=publish_end - t_start, measured=measured,
        loadgen=loadgen, watched=watched, cpu1=cpu1, rss1=rss1)


def ssl_context_for(urls: list[str]) -> Any:
    from .clients import ssl_context

    return ssl_context() if any(u.startswith("https:") for u in urls) else None


def execute(o: Options) -> tuple[int, dict[str, Any] | None, str | None]:
    """Run the test: (exit status, result, error text). 0: everything expected arrived,
    1: something was lost, refused or could not connect, 2: could not run at all."""
    problem = raise_open_file_limit(open_files_needed(o))
    if problem:
        return 2, None, problem
    with contextlib.ExitStack() as stack:
        cluster = procs.Cluster()
        if o.spawn:
            secret = o.secret or secrets.token_urlsafe(32)
            try:
                procs.start_cluster(cluster, o.instances, secret, stack)
            except RuntimeError as exc:
                return 2, None, f"{exc}\n{cluster.logs(everything=True)[1]}"
            urls = [s.url for s in cluster.servers]
            watched = [Watched(p.name, p.pid, "redis" if p is cluster.redis else "server")
                       for p in cluster.procs]
        else:
            assert o.secret
            secret, urls = o.secret, o.urls
            watched = [Watched(f"pid {pid}", pid, "server") for pid in o.server_pids]
        overall = o.connect_timeout + o.duration * 3 + 90
        try:
            result = run_loop(asyncio.wait_for(run_test(o, urls, secret, watched), overall))
        except (RuntimeError, TimeoutError) as exc:
            return 2, None, str(exc) or "the run did not finish in time"
        for p in cluster.procs:
            if p.proc.poll() is not None:
                result["warnings"].append(f"{p.name} exited with status {p.proc.returncode}")
                result["ok"] = False
        if cluster.procs:
            cluster.stop()
            errors, tail = cluster.logs()
            if errors:
                result["warnings"].append(f"{errors} error lines in the spawned server's log")
                result["serverLogTail"] = tail
    return (0 if result["ok"] else 1), result, None
