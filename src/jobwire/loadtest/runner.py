"""One load test run: ramp the connections up, publish on schedule (forcing disconnects if
asked), wait for the stragglers, and measure. One process, one event loop (uvloop if there)."""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import random
import resource
import secrets
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from ..auth import JwtAuth
from . import procs
from .clients import CLASSES, Client, PollClient
from .options import Options, transport_of
from .publisher import POST_TIMEOUT, PUBLISH_PATH, PublishStats, job_slots, make_lanes, publish
from .stats import Tally, merge, summary

PER_JOB_RATE = 2.0  # target updates/s per job: well under the default 10/s conflation limit
MIN_JOBS_PER_USER = 5
STRAGGLER_WAIT = 5.0  # seconds to wait for late events after the last publish
SATURATED = 0.9  # share of a core above which the load generator is the bottleneck
FD_MARGIN = 200  # open files besides one socket per connection
clock = time.perf_counter


@dataclass
class Watched:
    """A local process whose CPU and memory are reported."""

    name: str
    pid: int
    role: str  # "server" (jobwire) or "redis"
    cpu0: float = 0.0
    rss0: float = 0.0


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


async def _every(seconds: float, action: Callable[[], None], stop: asyncio.Event) -> None:
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), seconds)
        action()


async def run_test(o: Options, urls: list[str], secret: str,
                   watched: list[Watched]) -> dict[str, Any]:
    run_id = secrets.token_hex(3)
    prefix = f"lt{run_id}"
    auth = make_auth(secret)
    ttl = 3600 + 3 * o.duration + o.connect_timeout
    progress = Progress(o.progress)
    transports = [transport_of(i, o.transport) for i in range(o.connections)]
    tallies = {t: Tally() for t in dict.fromkeys(transports)}
    clients: list[Client] = []
    for i, t in enumerate(transports):
        user = f"{prefix}-u{i}"
        client = CLASSES[t](user, urls[i % len(urls)], auth.mint(user, "user", ttl=ttl),
                            tallies[t])
        if isinstance(client, PollClient):
            client.interval = o.poll_interval
        clients.append(client)
    for w in watched:
        w.rss0 = procs.rss_mib(w.pid)

    # --- the loop's lateness, sampled all along: the generator's own saturation
    lags: list[float] = []
    stop_sampling = asyncio.Event()

    async def sample_lag() -> None:
        while not stop_sampling.is_set():
            t0 = clock()
            await asyncio.sleep(0.05)
            lags.append(clock() - t0 - 0.05)

    sampler: asyncio.Task[None] | None = None  # while publishing and after
    gate = asyncio.Semaphore(o.concurrent)
    tasks = [asyncio.create_task(c.run(gate)) for c in clients]
    pub = PublishStats()
    try:
        # --- ramp-up
        ramp0 = clock()
        deadline = ramp0 + o.connect_timeout
        while True:
            connected = sum(t.connected for t in tallies.values())
            failed = sum(1 for c in clients if c.gave_up and not c.ever_connected)
            limited = sum(t.rate_limited for t in tallies.values())
            progress.show(f"jobwire loadtest: connecting {connected}/{o.connections}"
                          + (f", {failed} failed" if failed else "")
                          + (f", {limited} rate-limited retries" if limited else ""))
            if connected + failed >= o.connections or clock() >= deadline:
                break
            await asyncio.sleep(0.05)
        ramp_seconds = clock() - ramp0
        for c, task in zip(clients, tasks, strict=True):
            if not c.ever_connected and not c.gave_up:
                task.cancel()
                c.gave_up = f"not connected within {o.connect_timeout:g} s"
                c.tally.note("connect_failures", f"{c.user}: {c.gave_up}")
        live = [c for c in clients if c.ever_connected and not c.gave_up]
        if not live:
            raise RuntimeError(f"no connection succeeded; {merged_samples(tallies)[:3]}")

        # --- the workload, over the connected users only
        users = [c.user for c in live]
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

        def chaos() -> None:
            if stop.is_set():
                return
            up = [c for c in live if c.connected.is_set() and c.forced_at is None]
            for c in random.sample(up, min(o.disconnect_every, len(up))):
                c.drop()

        t_start = clock()

        def show() -> None:
            elapsed = clock() - t_start
            merged = merge(tallies.values())
            lat = summary(merged.latencies[-5000:], 1000)
            own = 100 * (time.process_time() - own0) / max(elapsed, 1e-9)
            forced = (f", reconnected {merged.reconnected}/{merged.forced}"
                      if merged.forced else "")
            progress.show(f"jobwire loadtest: {min(elapsed, o.duration):.0f}/{o.duration:g} s, "
                          f"sent {pub.sent}/{total}, delivered {merged.delivered}, "
                          f"p99 {lat['p99'] or 0:.1f} ms{forced}, own CPU {own:.0f} %")

        cpu0, own0 = [procs.cpu_seconds(w.pid) for w in watched], time.process_time()
        for w, c in zip(watched, cpu0, strict=True):
            w.cpu0 = c
        sampler = asyncio.create_task(sample_lag())
        background = [asyncio.create_task(_every(1.0, show, stop))]
        if o.disconnect_every:
            background.append(asyncio.create_task(_every(o.disconnect_interval, chaos, stop)))
        limits = httpx.Limits(max_connections=len(lanes), max_keepalive_connections=len(lanes))
        async with httpx.AsyncClient(timeout=POST_TIMEOUT, limits=limits,
                                     verify=ssl_context_for(urls)) as http:
            try:
                await asyncio.wait_for(publish(http, lanes, pub), o.duration * 2 + 30)
            except TimeoutError:
                pub.note("publishing did not finish in time: aborted")
        publish_end = clock()

        # --- stragglers: every expected event in, and every forced drop resumed
        stop.set()
        await asyncio.gather(*background, return_exceptions=True)
        expected_by = dict.fromkeys(tallies, 0)
        transport_of_user = {c.user: c.transport for c in clients}
        for job, seq in pub.final_seq.items():
            expected_by[transport_of_user[owner[job]]] += seq
        expected = sum(expected_by.values())
        wait = STRAGGLER_WAIT + (3 * o.poll_interval if "poll" in tallies else 0)
        end = clock() + wait
        while clock() < end:
            delivered = sum(t.delivered for t in tallies.values())
            pending = [c for c in live if c.forced_at is not None and not c.gave_up]
            if delivered >= expected and not pending:
                break
            show()
            await asyncio.sleep(0.02)
        measured = clock() - t_start
        own = time.process_time() - own0
        cpu1 = [procs.cpu_seconds(w.pid) for w in watched]
        rss1 = [procs.rss_mib(w.pid) for w in watched]
    finally:
        progress.clear()
        stop_sampling.set()
        for c in clients:
            c.closing = True
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*(c.close() for c in clients),
                                                  return_exceptions=True), 10)
        if sampler is not None:
            await asyncio.gather(sampler, return_exceptions=True)

    return build_result(
        o, urls=urls, run_id=run_id, prefix=prefix, tallies=tallies, expected_by=expected_by,
        pub=pub, clients=clients, users=len(users), jobs=len(slots),
        jobs_per_user=jobs_per_user, lanes=len(lanes), publishers=len(tokens),
        ramp_seconds=ramp_seconds, publish_seconds=publish_end - t_start, measured=measured,
        own=own, lags=lags, watched=watched, cpu1=cpu1, rss1=rss1)


def ssl_context_for(urls: list[str]) -> Any:
    from .clients import ssl_context

    return ssl_context() if any(u.startswith("https:") for u in urls) else True


def merged_samples(tallies: dict[str, Tally]) -> list[str]:
    return [s for t in tallies.values() for s in t.samples]


def _tally_result(t: Tally, expected: int) -> dict[str, Any]:
    return {
        "connected": t.connected,
        "connectMs": summary(t.connect_times, 1000, (50, 99)),
        "eventsExpected": expected,
        "eventsDelivered": t.delivered,
        "eventsLost": max(0, expected - t.delivered),
        "eventsReceived": t.received,
        "superseded": t.superseded,
        "seqGaps": t.gaps,
        "duplicates": t.duplicates,
        "foreignEvents": t.foreign,
        "errorMessages": t.errors,
        "cursorExpired": t.cursor_expired,
        "missedFoundInSnapshot": t.snapshot_states,
        "unexpectedDrops": t.drops,
        "connectFailures": t.connect_failures,
        "rateLimitedConnects": t.rate_limited,
        "latencyMs": summary(t.latencies, 1000),
        "forcedDisconnects": t.forced,
        "reconnected": t.reconnected,
        "reconnectMs": summary(t.reconnect_times, 1000, (50, 99)),
    }


def build_result(o: Options, *, urls: list[str], run_id: str, prefix: str,
                 tallies: dict[str, Tally], expected_by: dict[str, int], pub: PublishStats,
                 clients: list[Client], users: int, jobs: int, jobs_per_user: int, lanes: int,
                 publishers: int, ramp_seconds: float, publish_seconds: float,
                 measured: float, own: float, lags: list[float], watched: list[Watched],
                 cpu1: list[float], rss1: list[float]) -> dict[str, Any]:
    total = merge(tallies.values())
    expected = sum(expected_by.values())
    result: dict[str, Any] = {"title": o.title, "urls": urls, "runId": run_id,
                              "userPrefix": prefix + "-u", "transport": o.transport,
                              "connections": o.connections, "users": users}
    result.update(_tally_result(total, expected))
    result["rampSeconds"] = round(ramp_seconds, 3)
    result["byTransport"] = {t: _tally_result(tally, expected_by[t])
                             for t, tally in tallies.items()}
    elapsed = max(pub.last_sent - pub.started, 1e-9)
    achieved = pub.sent / elapsed if pub.sent > 1 else 0.0
    result["publish"] = {
        "targetRate": o.rate, "duration": o.duration, "achievedRate": round(achieved, 1),
        "updatesSent": pub.sent, "batches": pub.batches, "seconds": round(elapsed, 3),
        "publishers": publishers, "lanes": lanes, "jobs": jobs, "jobsPerUser": jobs_per_user,
        "perJobRate": round(o.rate / max(jobs, 1), 3), "maxLagMs": round(pub.max_lag * 1000, 1),
        "postMs": summary(pub.post_ms, 1.0, (50, 99)), "accepted": pub.accepted,
        "conflated": pub.conflated, "refused": pub.refused, "httpErrors": pub.http_errors,
        "rateLimited": pub.rate_limited, "problems": pub.samples}
    result["disconnects"] = {"every": o.disconnect_every, "intervalSeconds": o.disconnect_interval,
                             "forced": total.forced, "reconnected": total.reconnected,
                             "failed": total.forced - total.reconnected,
                             "reconnectMs": summary(total.reconnect_times, 1000, (50, 99))}
    measured = max(measured, 1e-9)
    result["measuredSeconds"] = round(measured, 3)
    result["processes"] = [
        {"name": w.name, "pid": w.pid, "role": w.role,
         "cpuSeconds": round(c1 - w.cpu0, 3),
         "cpuPercent": round(100 * (c1 - w.cpu0) / measured, 1),
         "rssMiB": round(r1, 1), "rssStartMiB": round(w.rss0, 1)}
        for w, c1, r1 in zip(watched, cpu1, rss1, strict=True)]
    server_cpu = sum(p["cpuSeconds"] for p in result["processes"] if p["role"] == "server")
    result["serverCpuUsPerEvent"] = (round(server_cpu * 1e6 / total.received, 1)
                                     if result["processes"] and total.received else None)
    result["loadgen"] = {"cpuSeconds": round(own, 3), "cpuPercent": round(100 * own / measured, 1),
                         "loopLagMs": summary(lags, 1000, (50, 99))}
    result["problems"] = total.samples[:10]

    bottleneck, warnings = [], []
    if own > SATURATED * measured:
        bottleneck.append(
            f"the load generator used {100 * own / measured:.0f} % of a core (one process): "
            "it is the bottleneck, and its own queueing is part of the latencies; use fewer "
            "connections or updates per process, or run several")
    lag_p99 = result["loadgen"]["loopLagMs"]["p99"] or 0
    if lag_p99 > 50:
        bottleneck.append(f"the load generator's event loop ran up to {lag_p99:.0f} ms late "
                          "(p99): latencies include that much of its own queueing")
    if pub.sent and (achieved < 0.95 * o.rate or pub.max_lag > 0.5):
        who = ("the load generator (see its CPU)" if own > SATURATED * measured
               else "the server, or the network (see POST ms)")
        bottleneck.append(f"publishing fell behind schedule: {achieved:.0f} updates/s of "
                          f"{o.rate:g} wanted, batches up to {pub.max_lag * 1000:.0f} ms late; "
                          f"likely {who}")
    if o.spawn:
        warnings.append("the server was spawned on this machine and shares its CPUs with the "
                        "load generator")
    if total.connected < o.connections:
        warnings.append(f"only {total.connected} of {o.connections} connections were made "
                        f"({total.connect_failures} gave up); only their users were published to")
    if total.rate_limited:
        warnings.append(f"{total.rate_limited} connection attempts were rate-limited by the "
                        "server (429/4429) and retried: see the limits in --help")
    lost = max(0, expected - total.delivered)
    if lost or total.gaps or total.duplicates or total.foreign:
        warnings.append(f"{lost} events lost, seq gaps {total.gaps}, duplicates "
                        f"{total.duplicates}, foreign events {total.foreign}")
    if pub.refused or pub.http_errors:
        warnings.append(f"{pub.refused} updates refused, {pub.http_errors} batch requests "
                        f"failed ({pub.rate_limited} rate-limited)")
    if pub.conflated:
        warnings.append(f"{pub.conflated} updates were conflated (held back) by the server")
    if total.drops:
        warnings.append(f"{total.drops} connections were dropped by the server or the network "
                        "(not forced) and resumed")
    if total.errors:
        warnings.append(f"{total.errors} error messages received "
                        f"({total.cursor_expired} cursor_expired)")
    failed_reconnects = total.forced - total.reconnected
    if failed_reconnects:
        warnings.append(f"{failed_reconnects} of {total.forced} forced disconnects did not "
                        "reconnect in time")
    result["bottleneck"] = bottleneck
    result["warnings"] = warnings
    result["ok"] = not (lost or total.gaps or total.duplicates or total.foreign or pub.refused
                        or pub.http_errors or failed_reconnects or total.connect_failures
                        or total.connected < o.connections)
    return result


def run_loop(coro: Any) -> Any:
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


def execute(o: Options) -> tuple[int, dict[str, Any] | None, str | None]:
    """Run the test: (exit status, result, error text). 0: everything expected arrived,
    1: something was lost, refused or could not connect, 2: could not run at all."""
    problem = raise_open_file_limit(o.connections + FD_MARGIN)
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
