#!/usr/bin/env python3
"""End-to-end WebSocket, SSE or long-polling latency benchmark for jobwire.

Starts its own `jobwire serve` on a free port (random secret, in-process broker), connects N
clients (users u0..u{N-1}, each following all its jobs with its own user token), publishes
R updates/s for D seconds over `POST /api/v2/jobs/status` batches, and measures for every
delivered event: receive wall time - the event's `timestamp` (the wall time its batch was
sent). Prints a human summary, or one JSON object with `--json`.

`--transport` picks the clients' kind, each one connection (the accounting is the same):
`websocket` (default; `GET /ws/jobs`, then `subscribe` `all: true`), `sse` (one
`GET /api/v2/jobs/stream` each, without `jobIds`) or `longpoll` (`GET /api/v2/jobs/poll` for a
cursor, then `?last_seen=<cursor>&timeout=25` in a loop, each from the last answer's cursor; a
failed poll is retried from the same cursor, and reported).

With `--instances N` above 1, it starts a private redis-server (loopback, free port, nothing
saved) and N instances sharing it (same secret, `JOBWIRE_REDIS_URL`): client i connects to
instance i % N and batch k is posted to instance k % N; (N-1)/N of the events are published
on another instance than their client's. Server CPU and RSS are reported per instance and
summed (the per-message CPU is over the sum), with the redis-server's own beside them.

Workload: updates are spread over the users with several jobs each, so that every job gets at
most ~2 updates/s, well under the server's default progress conflation limit (10 per job per
second): the server runs with its default settings and every update should be delivered.

Publishing is paced by an absolute schedule (a batch every 10 ms); if the sender falls behind,
the overdue batches go out merged in one request, so per-job order is kept (one request at a
time) and the average rate stays on target. With N instances, every job is pinned to one
instance (job j of user u to instance (u + j) % N), and each instance has its own lane of that
schedule with one request in flight: a batch every N * 10 ms, offset so that batch k goes to
instance k % N. The instances are published to concurrently, and no job's updates overtake.

    .venv/bin/python benchmarks/ws_latency.py [--clients 100] [--rate 1000] [--duration 10]
                                               [--instances 1] [--json]
                                               [--transport websocket|sse|longpoll]

Exit status: 0 when every expected event arrived and nothing was refused, 1 otherwise,
2 when a server (or redis-server) could not be started.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import itertools
import math
import os
import random
import resource
import secrets
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import urlsplit

import httpx
import orjson
from httpx_sse import EventSource
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from jobwire.auth import JwtAuth

TICK = 0.010  # seconds between batches
MAX_BATCH = 1000  # the server's default JOBWIRE_MAX_BATCH_ITEMS
PER_JOB_RATE = 2.0  # target updates/s per job: well under the 10/s conflation limit
MIN_JOBS_PER_USER = 5
STRAGGLER_WAIT = 5.0  # seconds to wait for late events after the last publish
START_TIMEOUT = 20.0  # server start-up (healthz answering 200)
CONNECT_TIMEOUT = 20.0  # all clients connected and subscribed
POST_TIMEOUT = 10.0  # one batch request
CLOSE_TIMEOUT = 5.0
STREAM_READ_TIMEOUT = 60.0  # an SSE stream silent this long failed (heartbeats every 15 s)
LONGPOLL_WAIT = 25  # the `timeout` of each long-poll, seconds
MAX_POLL_FAILURES = 5  # consecutive failed long-polls after which a client gives up
SSE_PATH = "/api/v2/jobs/stream"
POLL_PATH = "/api/v2/jobs/poll"
STOP_TIMEOUT = 10.0  # server shutdown after SIGTERM, before SIGKILL
BENCH_SATURATED = 0.9  # share of a core above which the benchmark process is the bottleneck
FD_MARGIN = 200  # open files besides one socket per client (HTTP, pipes, logs, Python)
CLK_TCK = os.sysconf("SC_CLK_TCK")
TRANSPORTS = {  # --transport: report title, how a client follows its jobs, what `closed` counts
    "websocket": ("WebSocket", "subscribe all", "closed connections"),
    "sse": ("Server-Sent Events (SSE)", "one stream each, no jobIds", "ended streams"),
    "longpoll": ("long-polling", "long-polls for all jobs", "failed polls"),
}
clock = time.perf_counter  # not loop.time(): uvloop's has millisecond resolution


# --- server process ---------------------------------------------------------------------


def free_ports(n: int) -> list[int]:
    """n distinct free ports (all held at once while they are picked)."""
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
                 for _ in range(n)]
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]


def jobwire_command() -> list[str]:
    exe = Path(sys.executable).parent / "jobwire"
    if exe.exists():
        return [str(exe)]
    found = shutil.which("jobwire")
    if found:
        return [found]
    return [sys.executable, "-m", "jobwire.cli"]


@dataclass
class Proc:
    """A process we started (a `jobwire serve` instance or redis-server), with its output."""

    name: str
    url: str
    proc: subprocess.Popen[bytes]
    log: BinaryIO

    @property
    def pid(self) -> int:
        return self.proc.pid


@dataclass
class Cluster:
    """The jobwire instances under test and, with more than one, the Redis they share."""

    servers: list[Proc] = field(default_factory=list)
    redis: Proc | None = None

    @property
    def procs(self) -> list[Proc]:
        return [*self.servers, *([self.redis] if self.redis else [])]

    def stop(self) -> None:
        for p in self.procs:  # the instances first, then the Redis they use
            stop_process(p.proc)


def spawn(command: list[str], log: BinaryIO, env: dict[str, str] | None = None
          ) -> subprocess.Popen[bytes]:
    return subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL, stdout=log,
                            stderr=subprocess.STDOUT)


def start_server(port: int, secret: str, log: BinaryIO, redis_url: str | None = None
                 ) -> subprocess.Popen[bytes]:
    env = {**os.environ, "JOBWIRE_SECRET": secret, "JOBWIRE_HOST": "127.0.0.1",
           "JOBWIRE_LOG_LEVEL": os.environ.get("JOBWIRE_LOG_LEVEL", "warning")}
    if redis_url:
        env["JOBWIRE_REDIS_URL"] = redis_url
    return spawn([*jobwire_command(), "serve", "--port", str(port)], log, env)


def start_redis(port: int, workdir: str, log: BinaryIO) -> subprocess.Popen[bytes]:
    """A private redis-server: loopback only, nothing saved (its dir is a temporary one)."""
    return spawn(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                  "--appendonly", "no", "--dir", workdir], log)


def wait_ready(name: str, proc: subprocess.Popen[bytes], probe: Callable[[], bool],
               what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited with status {proc.returncode} at start-up")
        if probe():
            return
        time.sleep(0.05)
    raise RuntimeError(f"{name} did not {what} within {timeout:.0f} s")


def wait_healthy(name: str, url: str, proc: subprocess.Popen[bytes], timeout: float) -> None:
    """Until `url` (/healthz, or /readyz once a Redis broker is subscribed) answers 200."""
    with httpx.Client(timeout=1.0) as client:
        def probe() -> bool:
            with contextlib.suppress(httpx.HTTPError):
                return client.get(url).status_code == 200
            return False

        wait_ready(name, proc, probe, f"answer {urlsplit(url).path} with 200", timeout)


def wait_redis(port: int, proc: subprocess.Popen[bytes], timeout: float) -> None:
    def probe() -> bool:
        with contextlib.suppress(OSError), \
                socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            s.sendall(b"PING\r\n")
            return s.recv(64).startswith(b"+PONG")
        return False

    wait_ready("redis-server", proc, probe, "answer PING", timeout)


def start_cluster(cluster: Cluster, instances: int, secret: str,
                  stack: contextlib.ExitStack) -> None:
    """Into `cluster`: one jobwire instance with the in-process broker, or `instances` of them
    sharing a private redis-server. Every process is stopped when `stack` closes (or by
    Cluster.stop); their logs stay readable until then, even if one failed to start."""
    stack.callback(cluster.stop)

    def new_log() -> BinaryIO:
        return stack.enter_context(tempfile.TemporaryFile())

    ports = free_ports(instances + (instances > 1))
    redis_url = None
    if instances > 1:
        port = ports.pop()
        redis_url = f"redis://127.0.0.1:{port}/0"
        workdir = stack.enter_context(tempfile.TemporaryDirectory(prefix="ws_latency-redis-"))
        log = new_log()
        cluster.redis = Proc("redis-server", redis_url, start_redis(port, workdir, log), log)
        wait_redis(port, cluster.redis.proc, START_TIMEOUT)
    for i, port in enumerate(ports):  # start them all, then wait for each
        log = new_log()
        name = "server" if instances == 1 else f"instance {i}"
        proc = start_server(port, secret, log, redis_url)
        cluster.servers.append(Proc(name, f"http://127.0.0.1:{port}", proc, log))
    for s in cluster.servers:
        wait_healthy(s.name, s.url + ("/readyz" if redis_url else "/healthz"), s.proc,
                     START_TIMEOUT)


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    """Stop a process we started, by its PID: SIGTERM, then SIGKILL if it lingers."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(STOP_TIMEOUT)


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, from /proc/<pid>/stat."""
    with open(f"/proc/{pid}/stat", "rb") as fh:
        fields = fh.read().rsplit(b")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # fields 14 and 15 of stat(5)


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status", "rb") as fh:
        for line in fh:
            if line.startswith(b"VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def log_tail(log: BinaryIO, lines: int = 30) -> tuple[int, str]:
    """(number of error-looking lines, the last `lines` lines) of the server's output."""
    log.flush()
    log.seek(0)
    text = log.read().decode(errors="replace").splitlines()
    errors = sum(1 for ln in text if "Traceback" in ln or "ERROR" in ln or "CRITICAL" in ln)
    return errors, "\n".join(text[-lines:])


# --- clients ----------------------------------------------------------------------------

_ts_cache: dict[str, float] = {}


def ts_seconds(ts: str) -> float:
    """Unix seconds of an ISO 8601 timestamp; many events share one, so it is cached."""
    value = _ts_cache.get(ts)
    if value is None:
        value = _ts_cache[ts] = datetime.fromisoformat(ts).timestamp()
    return value


@dataclass
class Stats:
    latencies: list[float] = field(default_factory=list)
    delivered: int = 0
    gaps: int = 0  # events missing according to per-job seq
    duplicates: int = 0  # seq not above the last one seen
    foreign: int = 0  # events of another user (must be 0)
    errors: list[Any] = field(default_factory=list)  # `error` messages received
    closed: list[str] = field(default_factory=list)  # connections closed under us
    other: int = 0  # messages of an unexpected type
    resubscribed: int = 0  # subscribes answered `unavailable` (retry), sent again
    target: float = math.inf  # delivered count that ends the straggler wait
    done: asyncio.Event = field(default_factory=asyncio.Event)


class Client:
    """One user's subscriber over some transport. Every message it receives is accounted here,
    the same way for every transport: latency, per-job seq (gaps, duplicates), ownership."""

    def __init__(self, user: str, stats: Stats):
        self.user = user
        self.stats = stats
        self.subscribed = asyncio.Event()
        self.answered = asyncio.Event()  # `subscribed`, or `unavailable` to a subscribe
        self.seqs: dict[str, int] = {}
        self.task: asyncio.Task[None] | None = None
        self.closing = False  # set when we close it ourselves

    def extensions(self) -> str:
        """The WebSocket extensions negotiated (none over HTTP)."""
        return ""

    def handle(self, msg: dict[str, Any], t: float) -> None:
        """One message from the server, received at wall time t."""
        stats = self.stats
        kind = msg.get("type")
        if kind == "status_update" or kind == "job_completed":
            stats.latencies.append(t - ts_seconds(msg["timestamp"]))
            stats.delivered += 1
            if stats.delivered >= stats.target:
                stats.done.set()
            seqs = self.seqs
            job, seq = msg["jobId"], msg["seq"]
            last = seqs.get(job, 0)
            if seq > last + 1:
                stats.gaps += seq - last - 1
            elif seq <= last:
                stats.duplicates += 1
            seqs[job] = max(seq, last)
            if msg["userId"] != self.user:
                stats.foreign += 1
        elif kind == "heartbeat":
            pass
        elif kind == "subscribed":
            self.subscribed.set()
            self.answered.set()
        elif kind == "error":
            if msg.get("code") == "unavailable" and not self.subscribed.is_set():
                stats.resubscribed += 1
                self.answered.set()
            else:
                stats.errors.append(msg)
        else:
            stats.other += 1

    def unavailable(self) -> None:
        """A subscribe answered `unavailable` over HTTP (503): to be sent again."""
        self.stats.resubscribed += 1
        self.answered.set()

    async def subscribe(self) -> None:
        """Ask for every job of the user; `answered` is set when the server has replied."""
        raise NotImplementedError

    async def subscribe_until_done(self) -> None:
        """Until `subscribed`: a Redis broker that could not answer says `unavailable`; retry,
        as told, backing off. Bounded by the caller's CONNECT_TIMEOUT."""
        attempt = 0
        while True:
            self.answered.clear()
            await self.subscribe()
            await self.answered.wait()
            if self.subscribed.is_set():
                return
            attempt = min(attempt + 1, 5)
            await asyncio.sleep(random.uniform(0.1, 0.3) * attempt)

    async def close(self) -> None:
        raise NotImplementedError


class WsClient(Client):
    """`GET /ws/jobs` with the token in the query, then `subscribe` `all: true`."""

    def __init__(self, user: str, ws: ClientConnection, stats: Stats):
        super().__init__(user, stats)
        self.ws = ws

    def extensions(self) -> str:
        return self.ws.response.headers.get("Sec-WebSocket-Extensions", "")

    async def receive(self) -> None:
        handle, loads, now = self.handle, orjson.loads, time.time
        try:
            async for raw in self.ws:
                t = now()
                handle(loads(raw), t)
        except ConnectionClosed:
            pass
        if not self.closing:
            self.stats.closed.append(f"{self.user}: code {self.ws.close_code} "
                                     f"{self.ws.close_reason or ''}".rstrip())

    async def subscribe(self) -> None:
        await self.ws.send(orjson.dumps({"type": "subscribe", "all": True}).decode())

    async def close(self) -> None:
        await self.ws.close()


@functools.cache
def ssl_context() -> ssl.SSLContext:
    """One for every HTTP client: httpx would otherwise load the CA bundle for each one
    (~50 ms apiece), though nothing here uses TLS."""
    return ssl.create_default_context()


class HttpClient(Client):
    """A reader over plain HTTP with the user's token: its own httpx client and connection,
    since each holds a request open."""

    def __init__(self, user: str, base_url: str, token: str, stats: Stats, read: float):
        super().__init__(user, stats)
        self.http = httpx.AsyncClient(
            base_url=base_url, headers={"Authorization": f"Bearer {token}"},
            timeout=httpx.Timeout(POST_TIMEOUT, read=read), verify=ssl_context(),
            limits=httpx.Limits(max_connections=1, max_keepalive_connections=1))

    def refused(self, what: str, r: httpx.Response) -> RuntimeError:
        return RuntimeError(f"{self.user}: {what} answered {r.status_code}: {r.text[:200]}")

    async def stop_task(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)

    async def close(self) -> None:
        await self.stop_task()
        await self.http.aclose()


class SseClient(HttpClient):
    """`GET /api/v2/jobs/stream` without `jobIds`: every job of the user, as one stream."""

    def __init__(self, user: str, base_url: str, token: str, stats: Stats):
        super().__init__(user, base_url, token, stats, read=STREAM_READ_TIMEOUT)

    async def subscribe(self) -> None:
        await self.stop_task()  # a stream that did not end in `subscribed`
        r = await self.http.send(self.http.build_request("GET", SSE_PATH), stream=True)
        if r.status_code != 200:
            await r.aread()
            await r.aclose()
            if r.status_code != 503:
                raise self.refused("stream", r)
            self.unavailable()
            return
        self.task = asyncio.create_task(self.receive(r))

    async def receive(self, response: httpx.Response) -> None:
        handle, loads, now = self.handle, orjson.loads, time.time
        try:
            async for sse in EventSource(response).aiter_sse():
                t = now()
                if sse.data:
                    handle(loads(sse.data), t)
            reason = "stream ended"
        except httpx.HTTPError as exc:
            reason = f"stream failed: {type(exc).__name__}: {exc}"
        finally:
            await response.aclose()
        if not self.closing:
            self.stats.closed.append(f"{self.user}: {reason}")


class LongPollClient(HttpClient):
    """`GET /api/v2/jobs/poll` without `last_seen` for a cursor, then long-polls from it,
    each answer's cursor the next request's `last_seen`. A failed poll is retried from the
    same cursor (nothing is lost by it), and counted."""

    def __init__(self, user: str, base_url: str, token: str, stats: Stats):
        super().__init__(user, base_url, token, stats, read=LONGPOLL_WAIT + POST_TIMEOUT)
        self.cursor = ""

    async def subscribe(self) -> None:
        r = await self.http.get(POLL_PATH)
        if r.status_code == 503:
            self.unavailable()
        elif r.status_code != 200:
            raise self.refused("poll", r)
        else:
            self.cursor = orjson.loads(r.content)["cursor"]
            self.subscribed.set()
            self.answered.set()
            self.task = asyncio.create_task(self.receive())

    async def receive(self) -> None:
        handle, loads, now, stats = self.handle, orjson.loads, time.time, self.stats
        params: dict[str, str | float] = {"timeout": LONGPOLL_WAIT}
        failures = 0
        while failures < MAX_POLL_FAILURES:
            params["last_seen"] = self.cursor
            try:
                r = await self.http.get(POLL_PATH, params=params)
            except httpx.HTTPError as exc:
                problem = f"poll not answered: {type(exc).__name__}: {exc}"
            else:
                t = now()
                if r.status_code == 200:
                    failures = 0
                    body = loads(r.content)
                    stats.errors.extend(body.get("errors", ()))
                    if "error" in body:  # cursor_expired: states instead of events
                        stats.errors.append({"type": "error", **body["error"]})
                    for msg in body["events"]:
                        handle(msg, t)
                    self.cursor = body["cursor"]
                    continue
                problem = f"poll answered {r.status_code}: {r.text[:200]}"
            if self.closing:
                return
            failures += 1
            stats.closed.append(f"{self.user}: {problem}")
            await asyncio.sleep(0.1 * failures)


async def open_client(transport: str, base_url: str, user: str, token: str,
                      stats: Stats) -> Client:
    """A client of `user` on the instance at `base_url`, subscribed to all its jobs."""
    client: Client
    if transport == "websocket":
        ws_url = base_url.replace("http://", "ws://") + "/ws/jobs"
        ws = await connect(f"{ws_url}?token={token}", open_timeout=CONNECT_TIMEOUT,
                           max_size=2**20, close_timeout=CLOSE_TIMEOUT)
        client = WsClient(user, ws, stats)
        client.task = asyncio.create_task(client.receive())
    else:
        cls = SseClient if transport == "sse" else LongPollClient
        client = cls(user, base_url, token, stats)
    try:
        await client.subscribe_until_done()
    except BaseException:  # e.g. cancelled by the caller's CONNECT_TIMEOUT
        if not isinstance(client, WsClient):  # a WsClient's connection is closed with it
            await asyncio.shield(client.close())
        raise
    return client


async def close_clients(clients: list[Client]) -> None:
    for c in clients:
        c.closing = True
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(
            asyncio.gather(*(c.close() for c in clients), return_exceptions=True),
            CLOSE_TIMEOUT)
    tasks = [c.task for c in clients if c.task is not None]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


# --- publisher --------------------------------------------------------------------------


@dataclass
class PublishStats:
    sent: int = 0
    batches: int = 0
    accepted: int = 0  # acked with an event id: delivered at once
    conflated: int = 0  # acked with id null: held back by progress conflation
    refused: int = 0  # per-item 409/422
    http_errors: int = 0  # whole batches answered with a non-202 or not answered
    samples: list[str] = field(default_factory=list)  # the first few refusals/errors
    started: float = 0.0  # clock() at the schedule's origin
    last_sent: float = 0.0  # clock() when the last batch was sent
    post_ms: list[float] = field(default_factory=list)

    def note(self, text: str) -> None:
        if len(self.samples) < 5:
            self.samples.append(text)


def job_slots(users: list[str], jobs_per_user: int) -> list[tuple[str, str]]:
    """(jobId, userId) per slot; consecutive slots belong to different users."""
    return [(f"{users[s % len(users)]}-job{s // len(users)}", users[s % len(users)])
            for s in range(len(users) * jobs_per_user)]


@dataclass
class Lane:
    """The updates published through one instance: its own jobs, at its share of the rate,
    one request in flight at a time."""

    url: str
    slots: list[tuple[str, str]]
    total: int
    rate: float
    phase: float  # its ticks' offset, so that the lanes' batches alternate
    sent: int = 0
    batches: int = 0


def make_lanes(urls: list[str], users: int, slots: list[tuple[str, str]], total: int,
               rate: float) -> list[Lane]:
    """Job j of user u is pinned to instance (u + j) % N, so every user has jobs on every
    instance and no job is ever published through two instances: with one request in flight
    per lane, every job's updates are committed in order. Client u is on instance u % N, so
    (N-1)/N of the updates are published on another instance than their client's. Each lane
    gets its jobs' share of the updates; its ticks come every N * TICK, offset by i * TICK,
    so batch k goes to instance k % N."""
    n = len(urls)
    owned: list[list[tuple[str, str]]] = [[] for _ in urls]
    for s, slot in enumerate(slots):
        owned[(s % users + s // users) % n].append(slot)
    shares = [0, *itertools.accumulate(len(o) for o in owned)]
    cut = [round(total * c / len(slots)) for c in shares]  # the totals add up exactly
    return [Lane(url, own, cut[i + 1] - cut[i], rate * len(own) / len(slots), i * TICK)
            for i, (url, own) in enumerate(zip(urls, owned, strict=True))]


async def publish(http: httpx.AsyncClient, token: str, lanes: list[Lane],
                  out: PublishStats) -> None:
    """All lanes at once, from one schedule origin (one lane, ticks every TICK, with N = 1)."""
    out.started = clock()
    async with asyncio.TaskGroup() as group:
        for lane in lanes:
            if lane.total:
                group.create_task(publish_lane(http, token, lane, TICK * len(lanes), out))


async def publish_lane(http: httpx.AsyncClient, token: str, lane: Lane, period: float,
                       out: PublishStats) -> None:
    """Paced by an absolute schedule: batch k at out.started + lane.phase + k * period."""
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    slots, total = lane.slots, lane.total
    nslots = len(slots)
    per_job_max = math.ceil(total / nslots)
    step = 100.0 / (per_job_max + 1)
    counts = [0] * nslots
    per_tick = lane.rate * period
    dumps, now_utc = orjson.dumps, datetime.now
    start = out.started + lane.phase
    k = 0
    while lane.sent < total:
        k += 1
        delay = start + k * period - clock()
        if delay > 0:
            await asyncio.sleep(delay)
        else:  # behind schedule: merge every overdue tick into this request
            k = max(k, int((clock() - start) / period))
        due = min(total, round(k * per_tick))
        while lane.sent < due:
            n = min(due - lane.sent, MAX_BATCH)
            ts = now_utc(UTC).isoformat()
            batch = []
            for g in range(lane.sent, lane.sent + n):
                s = g % nslots
                c = counts[s] = counts[s] + 1
                job_id, user_id = slots[s]
                batch.append({"jobId": job_id, "userId": user_id, "status": "processing",
                              "progress": round(c * step, 4), "currentOperation": f"step {c}",
                              "timestamp": ts})
            out.last_sent = t0 = clock()
            lane.sent += n
            out.sent += n
            out.batches += 1
            lane.batches += 1
            await post_batch(http, lane.url, headers, dumps(batch), n, out)
            out.post_ms.append((clock() - t0) * 1000)


async def post_batch(http: httpx.AsyncClient, url: str, headers: dict[str, str], body: bytes,
                     n: int, out: PublishStats) -> None:
    try:
        r = await http.post(url, content=body, headers=headers)
    except httpx.HTTPError as exc:
        out.http_errors += 1
        out.refused += n
        out.note(f"batch not answered: {type(exc).__name__}: {exc}")
        return
    if r.status_code != 202:
        out.http_errors += 1
        out.refused += n
        out.note(f"batch answered {r.status_code}: {r.text[:200]}")
        return
    for item in orjson.loads(r.content)["results"]:
        if "status" in item:
            out.refused += 1
            out.note(f"item refused: {orjson.dumps(item).decode()[:200]}")
        elif item.get("id") is None:
            out.conflated += 1
        else:
            out.accepted += 1


# --- the run ----------------------------------------------------------------------------


def percentile(sorted_values: list[float], p: float) -> float | None:
    if not sorted_values:
        return None
    rank = max(1, math.ceil(p / 100 * len(sorted_values)))  # nearest rank
    return sorted_values[rank - 1]


async def bench(args: argparse.Namespace, cluster: Cluster, secret: str) -> dict[str, Any]:
    auth = JwtAuth(secret=secret)
    users = [f"u{i}" for i in range(args.clients)]
    total = round(args.rate * args.duration)
    jobs_per_user = max(MIN_JOBS_PER_USER,
                        math.ceil(args.rate / (args.clients * PER_JOB_RATE)))
    slots = job_slots(users, jobs_per_user)
    stats = Stats()
    clients: list[Client] = []
    servers, procs = cluster.servers, cluster.procs
    n = len(servers)
    lanes = make_lanes([s.url + "/api/v2/jobs/status" for s in servers], len(users), slots, total,
                        args.rate)
    rss_start = [rss_mib(p.pid) for p in procs]

    async def connect_all() -> None:  # client i on instance i % n
        pending = [asyncio.create_task(open_client(args.transport, servers[i % n].url, u,
                                                   auth.mint(u, "user", ttl=3600), stats))
                   for i, u in enumerate(users)]
        try:
            for task in pending:
                clients.append(await task)
        finally:
            for task in pending:
                task.cancel()
            done = await asyncio.gather(*pending, return_exceptions=True)
            clients[:] = [c for c in done if isinstance(c, Client)]

    pub = PublishStats()
    limits = httpx.Limits(max_connections=n, max_keepalive_connections=n)  # one per instance
    async with httpx.AsyncClient(timeout=POST_TIMEOUT, limits=limits) as http:
        try:
            try:
                await asyncio.wait_for(connect_all(), CONNECT_TIMEOUT)
            except TimeoutError:
                seen = [orjson.dumps(e).decode()[:200] for e in stats.errors[:3]]
                raise RuntimeError(f"only {len(clients)}/{len(users)} clients subscribed "
                                   f"within {CONNECT_TIMEOUT:.0f} s; {len(stats.errors)} "
                                   f"error messages {seen}, {len(stats.closed)} connections "
                                   f"closed {stats.closed[:3]}") from None
            extensions = clients[0].extensions()
            ptoken = auth.mint("bench-publisher", "publisher", ttl=3600)
            cpu0, wall0, own0 = [cpu_seconds(p.pid) for p in procs], clock(), time.process_time()
            try:
                await asyncio.wait_for(publish(http, ptoken, lanes, pub),
                                       args.duration * 2 + 30)
            except TimeoutError:
                pub.note("publishing did not finish in time: aborted")
            expected = pub.accepted + pub.conflated
            stats.target = expected
            if stats.delivered >= expected:
                stats.done.set()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stats.done.wait(), STRAGGLER_WAIT)
            cpu1, wall1, own1 = [cpu_seconds(p.pid) for p in procs], clock(), time.process_time()
            rss_end = [rss_mib(p.pid) for p in procs]
        finally:
            await close_clients(clients)

    elapsed = max(pub.last_sent - pub.started, 1e-9)
    achieved = pub.sent / elapsed
    lat = sorted(x * 1000 for x in stats.latencies)
    measured = wall1 - wall0
    usage = [{"name": p.name, "pid": p.pid, "url": p.url, "cpuSeconds": round(c1 - c0, 3),
              "cpuPercent": round(100 * (c1 - c0) / max(measured, 1e-9), 1),
              "rssMiB": round(r1, 1), "rssStartMiB": round(r0, 1)}
             for p, c0, c1, r0, r1 in zip(procs, cpu0, cpu1, rss_start, rss_end, strict=True)]
    cpu = sum(c1 - c0 for c0, c1 in zip(cpu0[:n], cpu1[:n], strict=True))  # jobwire only
    own = own1 - own0
    post_ms = sorted(pub.post_ms)
    warnings = []
    if achieved < 0.95 * args.rate:
        warnings.append(f"achieved publish rate {achieved:.0f}/s is below 95 % of the "
                        f"target {args.rate:g}/s: the generator or the server is the bottleneck")
    if own > BENCH_SATURATED * measured:
        warnings.append(f"the benchmark process (generator and all clients) used "
                        f"{100 * own / measured:.0f} % of a core: it is likely the bottleneck, "
                        "and its own queueing is part of the latencies")
    lost = max(0, expected - stats.delivered)
    if lost or pub.refused or pub.http_errors:
        warnings.append(f"{lost} events lost, {pub.refused} updates refused, "
                        f"{pub.http_errors} batch requests failed")
    if stats.resubscribed:
        warnings.append(f"{stats.resubscribed} subscribes were answered `unavailable` (the "
                        "broker could not answer) and sent again before the run")
    if pub.conflated:
        warnings.append(f"{pub.conflated} updates were conflated by the server (held back)")
    if stats.gaps or stats.duplicates or stats.foreign or stats.closed or stats.errors:
        warnings.append(f"seq gaps {stats.gaps}, duplicates {stats.duplicates}, foreign "
                        f"{stats.foreign}, {TRANSPORTS[args.transport][2]} "
                        f"{len(stats.closed)}, "
                        f"error messages {len(stats.errors)}")

    def ms(v: float | None) -> float | None:
        return None if v is None else round(v, 3)

    def us_per_message(cpu_seconds: float) -> float | None:
        return round(cpu_seconds * 1e6 / stats.delivered, 1) if stats.delivered else None

    result = {
        "transport": args.transport,
        "clients": args.clients,
        "subscribed": len(clients),
        "jobs": len(slots),
        "jobsPerUser": jobs_per_user,
        "perJobRate": round(args.rate / len(slots), 3),
        "wsExtensions": extensions,
        "targetRate": args.rate,
        "duration": args.duration,
        "updatesSent": pub.sent,
        "batches": pub.batches,
        "publishSeconds": round(elapsed, 3),
        "achievedRate": round(achieved, 1),
        "postMs": {"p50": ms(percentile(post_ms, 50)), "p99": ms(percentile(post_ms, 99)),
                   "max": ms(post_ms[-1] if post_ms else None)},
        "accepted": pub.accepted,
        "conflated": pub.conflated,
        "refused": pub.refused,
        "httpErrors": pub.http_errors,
        "eventsExpected": expected,
        "eventsDelivered": stats.delivered,
        "eventsLost": lost,
        "seqGaps": stats.gaps,
        "duplicates": stats.duplicates,
        "foreignEvents": stats.foreign,
        "errorMessages": stats.errors[:5],
        "connectionsClosed": stats.closed[:5],
        "otherMessages": stats.other,
        "subscribeRetries": stats.resubscribed,
        "latencyMs": {"p50": ms(percentile(lat, 50)), "p95": ms(percentile(lat, 95)),
                      "p99": ms(percentile(lat, 99)), "max": ms(lat[-1] if lat else None),
                      "min": ms(lat[0] if lat else None), "n": len(lat)},
        "serverCpuSeconds": round(cpu, 3),
        "measuredSeconds": round(measured, 3),
        "serverCpuUsPerMessage": us_per_message(cpu),
        "serverRssMiB": round(sum(rss_end[:n]), 1),
        "serverRssStartMiB": round(sum(rss_start[:n]), 1),
        "benchCpuSeconds": round(own, 3),
        "problems": pub.samples,
        "warnings": warnings,
    }
    if n > 1:  # sums above, per process here
        result["instances"] = [{**u, "clients": len(range(i, args.clients, n)),
                                "jobs": len(lane.slots), "updates": lane.sent,
                                "batches": lane.batches}
                               for i, (u, lane) in enumerate(zip(usage, lanes, strict=False))]
        result["redis"] = usage[n]
        result["cpuUsPerMessageWithRedis"] = us_per_message(cpu + cpu1[n] - cpu0[n])
    return result


def human(r: dict[str, Any]) -> str:
    lat, post = r["latencyMs"], r["postMs"]

    def f(v: float | None) -> str:
        return "-" if v is None else f"{v:.2f}"

    instances = r.get("instances", [])
    if instances:
        server = (f"  servers     {len(instances)} instances sharing redis-server pid "
                  f"{r['redis']['pid']} on {r['redis']['url']}")
        summed = f"; sum of {len(instances)} instances"
    else:
        server, summed = f"  server      pid {r['serverPid']} on {r['url']}", ""
    title, follow, closed = TRANSPORTS[r["transport"]]
    if r["transport"] == "websocket":
        extra = ("; permessage-deflate: "
                 f"{'yes' if 'permessage-deflate' in r['wsExtensions'] else 'no'}")
    elif r["transport"] == "longpoll":
        extra = f"; long-poll timeout {LONGPOLL_WAIT} s"
    else:
        extra = ""
    lines = [
        f"jobwire {title} latency benchmark",
        f"{server}, conflation limit {r['conflation']} updates/s per job{extra}",
        f"  workload    {r['clients']} clients (users u0..u{r['clients'] - 1}, one each, "
        f"{follow}), {r['subscribed']} subscribed; {r['jobs']} jobs "
        f"({r['jobsPerUser']} per user, ~{r['perJobRate']:g} updates/s each: spread, "
        f"no conflation expected)",
        f"  publish     {r['updatesSent']} updates in {r['batches']} batches over "
        f"{r['publishSeconds']:.2f} s: {r['achievedRate']:.1f} updates/s (target "
        f"{r['targetRate']:g}, {100 * r['achievedRate'] / r['targetRate']:.1f} %); "
        f"POST ms p50 {f(post['p50'])} p99 {f(post['p99'])} max {f(post['max'])}",
        f"  acks        accepted {r['accepted']}, conflated {r['conflated']}, "
        f"refused {r['refused']}, failed batch requests {r['httpErrors']}",
        f"  events      expected {r['eventsExpected']}, delivered {r['eventsDelivered']}, "
        f"lost {r['eventsLost']} (seq gaps {r['seqGaps']}, duplicates {r['duplicates']}, "
        f"foreign {r['foreignEvents']}, {closed} {len(r['connectionsClosed'])})",
        f"  latency ms  p50 {f(lat['p50'])}  p95 {f(lat['p95'])}  p99 {f(lat['p99'])}  "
        f"max {f(lat['max'])}  (min {f(lat['min'])}, n={lat['n']})",
        f"  server CPU  {r['serverCpuSeconds']:.2f} s over {r['measuredSeconds']:.2f} s "
        f"({100 * r['serverCpuSeconds'] / max(r['measuredSeconds'], 1e-9):.0f} % of a core), "
        f"{r['serverCpuUsPerMessage'] or 0:.0f} µs per delivered message{summed}",
        f"  server RSS  {r['serverRssMiB']:.1f} MiB at the end "
        f"({r['serverRssStartMiB']:.1f} MiB before the clients connected){summed}",
    ]
    lines += [f"  {u['name']:<10}  pid {u['pid']} on {u['url']}: {u['clients']} clients; "
              f"publishes for {u['jobs']} jobs, {u['updates']} updates in {u['batches']} "
              f"batches; CPU {u['cpuSeconds']:.2f} s ({u['cpuPercent']:.0f} % "
              f"of a core), RSS {u['rssMiB']:.1f} MiB ({u['rssStartMiB']:.1f} before)"
              for u in instances]
    if instances:
        redis = r["redis"]
        lines.append(f"  redis       pid {redis['pid']}: CPU {redis['cpuSeconds']:.2f} s "
                     f"({redis['cpuPercent']:.0f} % of a core), RSS {redis['rssMiB']:.1f} MiB; "
                     f"jobwire + Redis: {r['cpuUsPerMessageWithRedis'] or 0:.0f} µs per "
                     "delivered message")
    lines += [
        f"  bench CPU   {r['benchCpuSeconds']:.2f} s (generator and all clients, one process)",
    ]
    lines += [f"  problem     {p}" for p in r["problems"]]
    lines += [f"  error msg   {orjson.dumps(e).decode()[:200]}" for e in r["errorMessages"]]
    lines += [f"  closed      {c}" for c in r["connectionsClosed"]]
    if r.get("serverLogErrors"):
        lines.append(f"  server log  {r['serverLogErrors']} error lines; last lines:\n"
                     + r["serverLogTail"])
    lines += [f"WARNING: {w}" for w in r["warnings"]]
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--clients", type=int, default=100, help="clients (default 100)")
    p.add_argument("--rate", type=float, default=1000, help="updates/s (default 1000)")
    p.add_argument("--duration", type=float, default=10, help="seconds (default 10)")
    p.add_argument("--instances", type=int, default=1,
                   help="jobwire instances; above 1 they share a private redis-server "
                        "(default 1: one instance, in-process broker)")
    p.add_argument("--transport", choices=list(TRANSPORTS), default="websocket",
                   help="the clients' transport (default websocket)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    args = p.parse_args(argv)
    if args.clients < 1 or args.rate <= 0 or args.duration <= 0 or args.instances < 1:
        p.error("--clients, --rate, --duration and --instances must be positive")
    if args.instances > 1 and not shutil.which("redis-server"):
        p.error("--instances above 1 needs redis-server on the PATH")
    problem = raise_open_file_limit(args.clients + FD_MARGIN)
    if problem:
        p.error(problem)
    return args


def raise_open_file_limit(need: int) -> str | None:
    """This process holds one socket per client (the instances, which inherit the limit,
    hold their share): raise the soft limit if needed, or say why it cannot be."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or need <= soft:
        return None
    if hard != resource.RLIM_INFINITY and need > hard:
        return f"about {need} open files are needed, and the limit is {hard}: use fewer clients"
    resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))
    return None


def run(coro: Any) -> Any:
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


def logs(procs: list[Proc], everything: bool = False) -> tuple[int, str]:
    """Error-looking lines over the processes' logs, and the last lines: of the one process,
    or, labelled, of each that logged errors (of each, with `everything`)."""
    tails = [(p.name, *log_tail(p.log)) for p in procs]
    errors = sum(e for _, e, _ in tails)
    if len(tails) == 1:
        return errors, tails[0][2]
    return errors, "\n".join(f"[{name}]\n{tail}" for name, e, tail in tails
                             if tail and (e or everything))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    secret = secrets.token_urlsafe(32)
    with contextlib.ExitStack() as stack:
        cluster = Cluster()
        try:
            start_cluster(cluster, args.instances, secret, stack)
        except RuntimeError as exc:
            print(f"ws_latency: {exc}\n{logs(cluster.procs, everything=True)[1]}",
                  file=sys.stderr)
            return 2
        try:
            overall = args.duration * 3 + START_TIMEOUT + CONNECT_TIMEOUT + 60
            result = run(asyncio.wait_for(bench(args, cluster, secret), overall))
            result.update(serverPid=cluster.servers[0].pid, url=cluster.servers[0].url,
                          conflation=os.environ.get("JOBWIRE_MAX_UPDATES_PER_JOB_PER_SECOND",
                                                    "10"))
            for p in cluster.procs:
                if p.proc.poll() is not None:
                    result["warnings"].append(f"{p.name} exited with status "
                                              f"{p.proc.returncode}")
        finally:
            cluster.stop()
        result["serverLogErrors"], result["serverLogTail"] = logs(cluster.procs)
        if result["serverLogErrors"]:
            result["warnings"].append(f"{result['serverLogErrors']} error lines in the "
                                      "server log")
    if args.json:
        print(orjson.dumps(result).decode())
        for w in result["warnings"]:
            print(f"WARNING: {w}", file=sys.stderr)
    else:
        print(human(result))
    bad = (result["eventsLost"] or result["refused"] or result["httpErrors"]
           or result["subscribed"] < args.clients)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
