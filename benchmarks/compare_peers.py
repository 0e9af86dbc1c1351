"""Side by side: jobwire, python-socketio and Node socket.io on the same WebSocket workload.

    .venv/bin/python benchmarks/compare_peers.py [--clients 1000] [--rates 10000,2000]
        [--duration 15] [--modes memory,redis] [--servers jobwire,node,python] [--json]
        [--out PATH]
    .venv/bin/python benchmarks/compare_peers.py --setup-only

Setup (every run, quick when nothing changed): `npm ci` into benchmarks/peers/node_modules
(socket.io 4.8 + @socket.io/redis-adapter, from package-lock.json) and a venv at
benchmarks/peers/.venv with python-socketio 5.x, uvicorn[standard] and redis from PyPI.

Workload, the same for every server: N clients over plain WebSocket, each its own user; R
updates/s in total for D seconds, published over HTTP in a batch every 10 ms, spread over jobs
(>= 5 per user, <= 2 updates/s per job, so that jobwire's progress conflation never applies).
jobwire: `/ws/jobs` + `subscribe all:true`, publishing through `POST /api/v2/jobs/status`.
Peers (benchmarks/peers/socketio_server.{js,py}): Engine.IO v4 over WebSocket, `subscribe` to
the user's room, publishing through `POST /publish` [{room, data}]; `data` is the same event
object jobwire would send, so every client receives messages of the same size and shape.

Every server gets a fresh process per run, pinned to core 0; the generator (this process) and
Redis (--modes redis: a private redis-server per run) are pinned to core 1. Measured per run:
delivered/expected (per-job seq: gaps, duplicates), publish-to-receipt latency, server CPU over
the publish window and the drain (/proc/<pid>/stat), CPU per delivered message, RSS idle and per
connected idle client, and connect time (WebSocket open to subscription acknowledged) while
ramping N connections --concurrent at a time. Every run's figures, the peers' versions and
the machine go to the result file (--out, default benchmarks/results/compare_peers-<UTC
time>.json).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import math
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
from websockets.asyncio.client import ClientConnection, connect

from jobwire.auth import JwtAuth
from jobwire.loadtest import procs, results
from jobwire.loadtest.stats import summary, ts_seconds

HERE = Path(__file__).resolve().parent
PEERS = HERE / "peers"
PEER_VENV = PEERS / ".venv"
TICK = 0.010  # seconds between publish batches
MAX_BATCH = 1000  # jobwire's default JOBWIRE_MAX_BATCH_ITEMS, used for every server
PER_JOB_RATE = 2.0  # updates/s per job: well under jobwire's conflation limit (10/s)
MIN_JOBS_PER_USER = 5
SETTLE = 1.0  # seconds for RSS to settle before it is read
CONNECT_TIMEOUT = 30.0  # one client: WebSocket open to subscription acknowledged
SATURATED = 0.9  # share of its core above which the generator is the bottleneck
SERVER_CORE, LOADGEN_CORE = 0, 1
clock = time.perf_counter


# --- setup: the peers, from their registries ---------------------------------------------

def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def run_step(cmd: list[str], cwd: Path) -> None:
    print(f"setup: {' '.join(cmd)}", file=sys.stderr)
    subprocess.run(cmd, cwd=cwd, check=True, stdout=sys.stderr)


def setup_peers() -> dict[str, str]:
    """Install what changed (a stamp file remembers the lock/requirements digest) and return
    the installed versions."""
    node_stamp = PEERS / "node_modules" / ".compare-peers-stamp"
    lock = digest(PEERS / "package-lock.json")
    if not node_stamp.exists() or node_stamp.read_text() != lock:
        run_step(["npm", "ci", "--no-audit", "--no-fund"], PEERS)
        node_stamp.write_text(lock)
    py_stamp = PEER_VENV / ".compare-peers-stamp"
    reqs = digest(PEERS / "requirements.txt")
    if not py_stamp.exists() or py_stamp.read_text() != reqs:
        if not (PEER_VENV / "bin" / "python").exists():
            run_step([sys.executable, "-m", "venv", str(PEER_VENV)], PEERS)
        run_step([str(PEER_VENV / "bin" / "pip"), "install", "-q", "-r", "requirements.txt"],
                 PEERS)
        py_stamp.write_text(reqs)
    return peer_versions()


def peer_versions() -> dict[str, str]:
    out = {"node": subprocess.run(["node", "--version"], capture_output=True,
                                  text=True).stdout.strip()}
    for pkg in ("socket.io", "@socket.io/redis-adapter", "redis"):
        meta = json.loads((PEERS / "node_modules" / pkg / "package.json").read_text())
        out[f"npm:{pkg}"] = meta["version"]
    code = ("import importlib.metadata as m, json; print(json.dumps({p: m.version(p) for p in "
            "('python-socketio', 'python-engineio', 'uvicorn', 'uvloop', 'websockets', "
            "'redis')}))")
    found = subprocess.run([str(PEER_VENV / "bin" / "python"), "-c", code],
                           capture_output=True, text=True, check=True).stdout
    out.update({f"pypi:{k}": v for k, v in json.loads(found).items()})
    return out


# --- the servers --------------------------------------------------------------------------

@dataclass
class Server:
    """One server under test: how to start it, connect to it and publish to it."""

    name: str  # jobwire, node, python
    label: str

    def command(self, port: int, redis_url: str | None) -> tuple[list[str], dict[str, str]]:
        env = dict(os.environ)
        if self.name == "node":
            cmd = ["node", str(PEERS / "socketio_server.js"), "--port", str(port)]
            return cmd + (["--redis", redis_url] if redis_url else []), env
        if self.name == "python":
            cmd = [str(PEER_VENV / "bin" / "python"), str(PEERS / "socketio_server.py"),
                   "--port", str(port)]
            return cmd + (["--redis", redis_url] if redis_url else []), env
        env.update({  # the whole load comes from one address and one publisher: no limits
            "JOBWIRE_SECRET": SECRET, "JOBWIRE_JWT_ALGORITHM": "HS256",
            "JOBWIRE_HOST": "127.0.0.1", "JOBWIRE_LOG_LEVEL": "warning",
            "JOBWIRE_MAX_CONNECTIONS_PER_SECOND_PER_IP": "0",
            "JOBWIRE_MAX_CONNECTIONS_PER_SECOND_PER_USER": "0",
            "JOBWIRE_MAX_PUBLISHES_PER_SECOND": "0"})
        env.pop("JOBWIRE_REDIS_URL", None)
        if redis_url:
            env["JOBWIRE_REDIS_URL"] = redis_url
        return [*procs.jobwire_command(), "serve", "--port", str(port)], env

    def ready_path(self, redis_url: str | None) -> str:
        return "/readyz" if self.name == "jobwire" and redis_url else "/healthz"


SECRET = secrets.token_urlsafe(48)
SERVERS = {"jobwire": Server("jobwire", "jobwire"),
           "node": Server("node", "Node socket.io"),
           "python": Server("python", "python-socketio")}


CAN_PIN = (os.cpu_count() or 1) >= 2 and shutil.which("taskset") is not None


def pinned(core: int, cmd: list[str]) -> list[str]:
    """taskset execs the command, so the PID we hold is the server's own."""
    return ["taskset", "-c", str(core), *cmd] if CAN_PIN else cmd


@dataclass
class Running:
    proc: subprocess.Popen[bytes]
    log: Any
    url: str


def start(cmd: list[str], env: dict[str, str] | None, core: int,
          stack: contextlib.ExitStack) -> Running:
    log = stack.enter_context(tempfile.TemporaryFile())
    proc = subprocess.Popen(pinned(core, cmd), env=env, stdin=subprocess.DEVNULL, stdout=log,
                            stderr=subprocess.STDOUT)
    stack.callback(procs.stop_process, proc)  # by its PID, SIGTERM then SIGKILL
    return Running(proc, log, "")


def start_redis(stack: contextlib.ExitStack) -> tuple[Running, str]:
    (port,) = procs.free_ports(1)
    workdir = stack.enter_context(tempfile.TemporaryDirectory(prefix="compare-peers-redis-"))
    cmd = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
           "--appendonly", "no", "--dir", workdir]
    r = start(cmd, None, LOADGEN_CORE, stack)
    procs.wait_redis(port, r.proc, procs.START_TIMEOUT)
    return r, f"redis://127.0.0.1:{port}/0"


def start_server(server: Server, redis_url: str | None, stack: contextlib.ExitStack) -> Running:
    (port,) = procs.free_ports(1)
    cmd, env = server.command(port, redis_url)
    r = start(cmd, env, SERVER_CORE, stack)
    r.url = f"http://127.0.0.1:{port}"
    try:
        procs.wait_healthy(server.label, r.url + server.ready_path(redis_url), r.proc,
                           procs.START_TIMEOUT)
    except RuntimeError as exc:
        raise RuntimeError(f"{exc}\n{procs.log_tail(r.log)[1]}") from None
    return r


# --- what the clients receive --------------------------------------------------------------

@dataclass
class Tally:
    delivered: int = 0
    gaps: int = 0
    duplicates: int = 0
    bytes: int = 0
    latencies: list[float] = field(default_factory=list)
    connect_times: list[float] = field(default_factory=list)
    connect_failures: list[str] = field(default_factory=list)
    drops: int = 0
    seqs: dict[str, int] = field(default_factory=dict)  # per job, the last seq received
    target: float = math.inf  # messages expected, once publishing is over
    done: asyncio.Event = field(default_factory=asyncio.Event)  # set on reaching the target

    def expect(self, n: int) -> None:
        self.target = n
        if self.delivered >= n:
            self.done.set()

    def event(self, data: dict[str, Any], size: int, t: float) -> None:
        job, seq = data["jobId"], data["seq"]
        last = self.seqs.get(job, 0)
        if seq <= last:
            self.duplicates += 1
            return
        self.gaps += seq - last - 1
        self.seqs[job] = seq
        self.delivered += 1
        self.bytes += size
        self.latencies.append(t - ts_seconds(data["timestamp"]))
        if self.delivered >= self.target:
            self.done.set()


WS_OPTIONS = {"compression": None, "ping_interval": None, "proxy": None, "max_queue": 4096,
              "open_timeout": CONNECT_TIMEOUT, "close_timeout": 1}


async def jobwire_client(base: str, token: str) -> ClientConnection:
    """Connect to /ws/jobs and subscribe to every job of the user; return once subscribed."""
    ws = await connect(f"ws{base.removeprefix('http')}/ws/jobs?token={token}", **WS_OPTIONS)
    await ws.send('{"type":"subscribe","all":true}')
    while True:
        msg = orjson.loads(await ws.recv())
        if msg.get("type") == "subscribed":
            return ws
        if msg.get("type") == "error":
            raise RuntimeError(f"subscribe refused: {msg}")


async def jobwire_receive(ws: ClientConnection, tally: Tally) -> None:
    loads, now, event = orjson.loads, time.time, tally.event
    async for raw in ws:
        t = now()
        msg = loads(raw)
        if msg.get("type") in ("status_update", "job_completed"):
            event(msg, len(raw), t)


async def socketio_client(base: str, user: str) -> ClientConnection:
    """Engine.IO v4 over WebSocket only: open packet `0{...}`, then Socket.IO CONNECT to `/`
    with the token (`40{...}`), then `subscribe` with an ack id (`420[...]`, answered `430`)."""
    url = f"ws{base.removeprefix('http')}/socket.io/?EIO=4&transport=websocket"
    ws = await connect(url, **WS_OPTIONS)
    opened = await ws.recv()
    if not opened.startswith("0"):
        raise RuntimeError(f"expected the Engine.IO open packet, got {opened[:80]!r}")
    await ws.send("40" + orjson.dumps({"token": user}).decode())
    await expect(ws, "40")
    await ws.send('420["subscribe",' + orjson.dumps({"rooms": [user]}).decode() + "]")
    await expect(ws, "430")
    return ws


async def expect(ws: ClientConnection, prefix: str) -> str:
    while True:
        raw = await ws.recv()
        if raw == "2":
            await ws.send("3")
        elif raw.startswith(prefix):
            return raw
        else:
            raise RuntimeError(f"expected {prefix}..., got {raw[:120]!r}")


async def socketio_receive(ws: ClientConnection, tally: Tally) -> None:
    loads, now, event = orjson.loads, time.time, tally.event
    async for raw in ws:
        t = now()
        if raw.startswith("42"):  # EVENT on `/`: ["status_update", data]
            event(loads(raw[2:])[1], len(raw), t)
        elif raw == "2":  # the server's ping: answer or be dropped
            await ws.send("3")


@dataclass
class Clients:
    users: list[str] = field(default_factory=list)
    sockets: list[ClientConnection] = field(default_factory=list)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    async def close(self) -> None:
        for t in self.tasks:
            t.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        for ws in self.sockets:  # abruptly: 1000 polite closes would only slow the run down
            ws.transport.abort()


async def connect_all(server: Server, base: str, users: list[str], tokens: list[str],
                      concurrent: int, tally: Tally) -> Clients:
    gate = asyncio.Semaphore(concurrent)
    clients = Clients()

    async def one(user: str, token: str) -> None:
        async with gate:
            t0 = clock()
            try:
                async with asyncio.timeout(CONNECT_TIMEOUT):
                    if server.name == "jobwire":
                        ws = await jobwire_client(base, token)
                    else:
                        ws = await socketio_client(base, user)
            except Exception as exc:  # counted and reported, never fatal
                tally.connect_failures.append(f"{user}: {type(exc).__name__}: {exc}"[:200])
                return
            tally.connect_times.append(clock() - t0)
        clients.users.append(user)
        clients.sockets.append(ws)
        receive = jobwire_receive if server.name == "jobwire" else socketio_receive
        clients.tasks.append(asyncio.create_task(receive_guarded(receive, ws, tally)))

    await asyncio.gather(*(one(u, t) for u, t in zip(users, tokens, strict=True)))
    return clients


async def receive_guarded(receive: Any, ws: ClientConnection, tally: Tally) -> None:
    try:
        await receive(ws, tally)
    except asyncio.CancelledError:
        raise
    except Exception:
        pass
    tally.drops += 1  # the server closed or broke the connection mid-run


# --- publishing ---------------------------------------------------------------------------

@dataclass
class Published:
    sent: int = 0
    accepted: int = 0  # items that make one message each
    conflated: int = 0  # jobwire only: acked without an event (should stay 0)
    refused: int = 0
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0
    max_lag: float = 0.0
    post_times: list[float] = field(default_factory=list)  # one batch request, sent to answer


def job_slots(users: list[str], jobs_per_user: int) -> list[tuple[str, str]]:
    """(jobId, user); consecutive slots belong to different users, so load spreads evenly."""
    n = len(users)
    return [(f"{users[s % n]}:j{s // n}", users[s % n]) for s in range(n * jobs_per_user)]


def make_item(server: Server, job: str, user: str, seq: int, step: float, ts: str) -> Any:
    """One update, as jobwire takes it, or the event jobwire would send, for a peer's room."""
    update = {"jobId": job, "userId": user, "status": "processing",
              "progress": round(min(seq * step, 99.0), 4), "currentOperation": f"step {seq}",
              "timestamp": ts}
    if server.name == "jobwire":
        return update
    event = {"type": "status_update", "id": f"{int(time.time() * 1000)}-{seq}", "seq": seq,
             **update, "workerId": None, "etaSeconds": None}
    return {"room": user, "data": event}


async def publish(server: Server, base: str, token: str, slots: list[tuple[str, str]],
                  rate: float, duration: float, out: Published) -> None:
    """A batch every TICK on an absolute schedule, one request in flight; overdue ticks are
    merged into the next request so the average rate holds while the server keeps up. A server
    that cannot keep up gets at most 2 x duration (+ 5 s) of publishing, then it stops."""
    path = "/api/v2/jobs/status" if server.name == "jobwire" else "/publish"
    headers = {"Content-Type": "application/json"}
    if server.name == "jobwire":
        headers["Authorization"] = f"Bearer {token}"
    total = round(rate * duration)
    per_job = math.ceil(total / len(slots))
    step = 99.0 / (per_job + 1)
    counts = [0] * len(slots)
    t0 = clock()
    stop_at = t0 + 2 * duration + 5
    k = 0
    async with httpx.AsyncClient(base_url=base, timeout=30.0) as http:
        while out.sent < total and clock() < stop_at:
            k += 1
            delay = t0 + k * TICK - clock()
            if delay > 0:
                await asyncio.sleep(delay)
            else:
                out.max_lag = max(out.max_lag, -delay)
                k = max(k, int((clock() - t0) / TICK))
            due = min(total, round(k * TICK * rate))
            while out.sent < due:
                n = min(due - out.sent, MAX_BATCH)
                ts = datetime.now(UTC).isoformat()
                batch = []
                for g in range(out.sent, out.sent + n):
                    s = g % len(slots)
                    counts[s] += 1
                    batch.append(make_item(server, *slots[s], counts[s], step, ts))
                out.sent += n
                await post(http, server, path, headers, orjson.dumps(batch), n, out)
    out.seconds = clock() - t0


async def post(http: httpx.AsyncClient, server: Server, path: str, headers: dict[str, str],
               body: bytes, n: int, out: Published) -> None:
    t0 = clock()
    try:
        r = await http.post(path, content=body, headers=headers)
        out.post_times.append(clock() - t0)
    except httpx.HTTPError as exc:
        out.refused += n
        out.errors.append(f"{type(exc).__name__}: {exc}"[:200])
        return
    if r.status_code != 202:
        out.refused += n
        out.errors.append(f"{r.status_code}: {r.text[:200]}")
        return
    if server.name != "jobwire":
        out.accepted += n
        return
    for item in orjson.loads(r.content)["results"]:
        if "status" in item:
            out.refused += 1
        elif item.get("id") is None:
            out.conflated += 1
        else:
            out.accepted += 1


# --- one run ------------------------------------------------------------------------------

async def loop_lag(samples: list[float], stop: asyncio.Event) -> None:
    """How late this process's event loop runs: its own queueing shows in the latencies."""
    while not stop.is_set():
        t0 = clock()
        await asyncio.sleep(0.05)
        samples.append(clock() - t0 - 0.05)


async def measure(server: Server, base: str, server_pid: int, redis_pid: int | None,
                  args: argparse.Namespace, rate: float) -> dict[str, Any]:
    run = secrets.token_hex(3)
    users = [f"cp{run}-u{i}" for i in range(args.clients)]
    auth = JwtAuth(secret=SECRET, algorithm="HS256")
    tokens = ([auth.mint(u, "user", ttl=3600) for u in users] if server.name == "jobwire"
              else users)
    tally = Tally()

    await asyncio.sleep(SETTLE)
    rss_idle = procs.rss_mib(server_pid)
    ramp0 = clock()
    clients = await connect_all(server, base, users, tokens, args.concurrent, tally)
    ramp = clock() - ramp0
    await asyncio.sleep(SETTLE)
    rss_connected = procs.rss_mib(server_pid)
    connected = len(clients.sockets)
    try:
        if not clients.users:
            raise RuntimeError(f"{server.label}: no client connected, e.g. "
                               f"{tally.connect_failures[:1]}")
        jobs_per_user = max(MIN_JOBS_PER_USER, math.ceil(rate / (args.clients * PER_JOB_RATE)))
        slots = job_slots(clients.users, jobs_per_user)  # only users that are listening
        pub = Published()
        lags: list[float] = []
        stop = asyncio.Event()
        sampler = asyncio.create_task(loop_lag(lags, stop))
        cpu0 = procs.cpu_seconds(server_pid)
        redis0 = procs.cpu_seconds(redis_pid) if redis_pid else 0.0
        own0, t0 = time.process_time(), clock()
        await publish(server, base, auth.mint(f"cp{run}-pub", "publisher", ttl=3600)
                      if server.name == "jobwire" else "", slots, rate, args.duration, pub)
        tally.expect(pub.accepted)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(tally.done.wait(), args.drain)
        window = clock() - t0
        cpu = procs.cpu_seconds(server_pid) - cpu0
        redis_cpu = procs.cpu_seconds(redis_pid) - redis0 if redis_pid else None
        own = time.process_time() - own0
        rss_end = procs.rss_mib(server_pid)
        stop.set()
        await sampler
    finally:
        await clients.close()
    return report(server, rate, args, tally, pub, connected, ramp, window, cpu, redis_cpu,
                  own, lags, rss_idle, rss_connected, rss_end, jobs_per_user)


def report(server: Server, rate: float, args: argparse.Namespace, tally: Tally, pub: Published,
           connected: int, ramp: float, window: float, cpu: float, redis_cpu: float | None,
           own: float, lags: list[float], rss_idle: float, rss_connected: float,
           rss_end: float, jobs_per_user: int) -> dict[str, Any]:
    lat = summary(tally.latencies, 1000)
    notes = []
    if own > SATURATED * window:
        notes.append(f"generator saturated ({100 * own / window:.0f} % of its core)")
    lag99 = summary(lags, 1000)["p99"] or 0.0
    if lag99 > 50:
        notes.append(f"generator loop late by {lag99:.0f} ms (p99)")
    if pub.sent < round(rate * args.duration):
        notes.append(f"publishing stopped: {pub.sent} of {round(rate * args.duration)} sent")
    if pub.seconds > 1.1 * args.duration:
        notes.append(f"publishing took {pub.seconds:.1f} s, not {args.duration:g} s")
    if cpu > 0.95 * window:
        notes.append(f"server saturated ({100 * cpu / window:.0f} % of its core)")
    lost = max(0, pub.accepted - tally.delivered)
    if lost:
        notes.append(f"{lost} not delivered within {args.drain:g} s of the last publish")
    if redis_cpu is not None:
        notes.append(f"Redis {100 * redis_cpu / window:.0f} % of a core, "
                     f"+{redis_cpu * 1e6 / max(tally.delivered, 1):.0f} µs/message")
    if tally.drops:
        notes.append(f"{tally.drops} connections dropped")
    if tally.connect_failures:
        notes.append(f"{len(tally.connect_failures)} failed to connect, e.g. "
                     f"{tally.connect_failures[0]}")
    if pub.errors:
        notes.append(f"{len(pub.errors)} publish errors, e.g. {pub.errors[0]}")
    return {
        "server": server.label, "mode": "redis" if redis_cpu is not None else "memory",
        "clients": args.clients, "connected": connected,
        "targetRate": rate, "achievedRate": round(pub.sent / max(pub.seconds, 1e-9), 1),
        "jobsPerUser": jobs_per_user, "sent": pub.sent, "expected": pub.accepted,
        "delivered": tally.delivered, "gaps": tally.gaps, "duplicates": tally.duplicates,
        "conflated": pub.conflated, "refused": pub.refused, "publishMaxLagMs":
            round(pub.max_lag * 1000, 1), "publishPostMs": summary(pub.post_times, 1000, (50, 99)),
        "latencyMs": lat, "avgMessageBytes": round(tally.bytes / max(tally.delivered, 1)),
        "windowSeconds": round(window, 2), "serverCpuSeconds": round(cpu, 3),
        "serverCpuPercent": round(100 * cpu / window, 1),
        "serverCpuUsPerMessage": round(cpu * 1e6 / tally.delivered, 1) if tally.delivered
        else None,
        "redisCpuSeconds": None if redis_cpu is None else round(redis_cpu, 3),
        "rssIdleMiB": round(rss_idle, 1), "rssConnectedMiB": round(rss_connected, 1),
        "rssEndMiB": round(rss_end, 1),
        "rssPerConnectionKiB": round((rss_connected - rss_idle) * 1024 / max(connected, 1), 1),
        "connectMs": summary(tally.connect_times, 1000, (50, 99)),
        "rampSeconds": round(ramp, 2), "concurrent": args.concurrent,
        "generatorCpuPercent": round(100 * own / window, 1),
        "generatorLoopLagMsP99": round(lag99, 1), "notes": notes}


def run_one(server: Server, mode: str, rate: float, args: argparse.Namespace) -> dict[str, Any]:
    with contextlib.ExitStack() as stack:
        redis_pid, redis_url = None, None
        if mode == "redis":
            r, redis_url = start_redis(stack)
            redis_pid = r.proc.pid
        s = start_server(server, redis_url, stack)
        print(f"run: {server.label}, {mode}, {rate:g}/s ...", file=sys.stderr, flush=True)
        with asyncio.Runner(loop_factory=loop_factory()) as runner:
            result = runner.run(measure(server, s.url, s.proc.pid, redis_pid, args, rate))
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


# --- output -------------------------------------------------------------------------------

def fmt_ms(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f}" if v < 100 else f"{v:.0f}"


def table(runs: list[dict[str, Any]]) -> str:
    head = ("| server | mode | updates/s target → achieved | delivered / expected | p50 ms | "
            "p99 ms | max ms | server CPU | **CPU µs / message** | RSS idle MiB | "
            "RSS / connection KiB | connect p50 / p99 ms | generator CPU | notes |")
    rows = [head, "|" + "---|" * 14]
    for r in runs:
        lat, con = r["latencyMs"], r["connectMs"]
        us = r["serverCpuUsPerMessage"]
        rows.append(
            f"| {r['server']} | {r['mode']} | {r['targetRate']:,.0f} → {r['achievedRate']:,.0f} "
            f"| {r['delivered']:,} / {r['expected']:,} | {fmt_ms(lat['p50'])} | "
            f"{fmt_ms(lat['p99'])} | {fmt_ms(lat['max'])} | {r['serverCpuPercent']:.0f} % "
            f"({r['serverCpuSeconds']:.1f} s) | **{'-' if us is None else f'{us:.0f}'}** | "
            f"{r['rssIdleMiB']:.0f} | {r['rssPerConnectionKiB']:.1f} | "
            f"{fmt_ms(con['p50'])} / {fmt_ms(con['p99'])} | {r['generatorCpuPercent']:.0f} % "
            f"| {'; '.join(r['notes']) or ''} |")
    return "\n".join(rows)


def verdicts(runs: list[dict[str, Any]]) -> list[str]:
    """The issue's targets: jobwire CPU/message <= Node socket.io's, <= 1/3 of python's."""
    out = []
    keyed = {(r["server"], r["mode"], r["targetRate"]): r["serverCpuUsPerMessage"]
             for r in runs}
    for (name, mode, rate), us in keyed.items():
        if name != "jobwire" or not us:
            continue
        for peer, limit in (("Node socket.io", 1.0), ("python-socketio", 1 / 3)):
            other = keyed.get((peer, mode, rate))
            if other:
                ratio = us / other
                ok = "met" if ratio <= limit else "NOT met"
                out.append(f"{mode}, {rate:,.0f}/s: jobwire / {peer} CPU per message = "
                           f"{us:.0f} / {other:.0f} µs = {ratio:.2f} (target ≤ {limit:.2f}): "
                           f"{ok}")
    return out


# --- main ---------------------------------------------------------------------------------

def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--clients", type=int, default=1000, help="connections, one user each")
    p.add_argument("--rates", default="10000,2000", help="updates/s in total, comma-separated")
    p.add_argument("--duration", type=float, default=15.0, help="seconds of publishing")
    p.add_argument("--drain", type=float, default=10.0,
                   help="seconds to wait for late messages after the last publish")
    p.add_argument("--concurrent", type=int, default=200,
                   help="connection attempts in flight while ramping up")
    p.add_argument("--modes", default="memory", help="memory, redis, or memory,redis")
    p.add_argument("--servers", default="jobwire,node,python",
                   help="which of jobwire, node, python, in run order")
    p.add_argument("--setup-only", action="store_true", help="install the peers and exit")
    p.add_argument("--json", action="store_true", help="print the result file's JSON object")
    results.add_out_option(p)
    args = p.parse_args()
    args.rates = [float(r) for r in args.rates.split(",")]
    args.modes = args.modes.split(",")
    args.servers = args.servers.split(",")
    bad = ([m for m in args.modes if m not in ("memory", "redis")]
           + [s for s in args.servers if s not in SERVERS])
    if bad:
        p.error(f"unknown mode or server: {', '.join(bad)}")
    return args


def main() -> int:
    args = parse_args()
    versions = setup_peers()
    if args.setup_only:
        print(json.dumps(versions, indent=2))
        return 0
    if CAN_PIN:
        os.sched_setaffinity(0, {LOADGEN_CORE})
    run = results.Run("compare_peers", {k: v for k, v in vars(args).items()
                                        if k not in ("json", "out", "setup_only")})
    run.machine["node"] = versions["node"]
    run.machine["peers"] = versions
    source = run.source
    measured = []
    for mode in args.modes:
        for rate in args.rates:
            for name in args.servers:  # the servers back to back at each point
                measured.append(run_one(SERVERS[name], mode, rate, args))
    lines = verdicts(measured)
    figures = {"pinned": CAN_PIN, "runs": measured, "verdicts": lines}
    run.save(figures, args.out)
    if args.json:
        print(json.dumps(run.record(figures), indent=2))
        return 0
    print(f"{args.clients} clients, {args.duration:g} s per run; servers pinned to core "
          f"{SERVER_CORE}, generator and Redis to core {LOADGEN_CORE}" if CAN_PIN
          else "not pinned (fewer than 2 cores or no taskset)")
    print("versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()))
    changed = source.get("srcChanged")
    print(f"jobwire: commit {source['commit']}" + (
        f" + uncommitted changes to {len(changed)} files under src/ (diff sha256 "
        f"{source['srcDiffSha256']}): {', '.join(changed)}" if changed else ""))
    print()
    print(table(measured))
    print()
    for line in lines:
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
