"""One publisher per load. Every load publishes the same updates (per job a seq from 1 and a
rising progress, jobs spread over the listening users, <= 2 updates/s per job so jobwire's
progress conflation never applies) on an absolute schedule; they differ in how the updates
reach the server:

- batch10, idle: an HTTP batch every 10 ms, one request in flight; overdue ticks merge into the
  next request, so the average rate holds while the server keeps up.
- batch1: an HTTP batch every 1 ms, as several workers would send them: up to 8 requests in
  flight on 8 keep-alive connections, so a batch holds 1 ms of updates whatever the server's
  answer time (a server that answers slowly does not get fewer, larger batches). Only when all
  8 wait do ticks merge. A job's updates are 500 ms apart, so they cannot overtake each other.
- single: one update per HTTP request, from --workers keep-alive connections, one request in
  flight on each; every job belongs to one connection, so its updates arrive in order.
- direct: no HTTP at all: the generator writes into Redis and the server only fans out. jobwire
  commits through its own Redis broker (as `jobwire.reporter.RedisPublisher` does); the peers
  through a Socket.IO emitter process (benchmarks/peers/emitter.{js,py}) fed JSON lines.

A server that cannot keep up gets at most 2 x duration (+ 5 s) of publishing, then it stops."""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from jobwire.broker.redis import RedisBroker
from jobwire.errors import JobwireError
from jobwire.loadtest.http1 import Connection, HttpError
from jobwire.protocol import parse_update

from .servers import LOADGEN_CORE, PEER_PYTHON, PEERS, Server, pinned

LOADS = ("batch10", "batch1", "single", "direct", "idle")
TICKS = {"batch10": 0.010, "batch1": 0.001, "direct": 0.010, "idle": 0.010}  # between batches
IN_FLIGHT = {"batch1": 8}  # requests (connections) at once; others: 1
MAX_BATCH = 1000  # jobwire's default JOBWIRE_MAX_BATCH_ITEMS, used for every server
REQUEST_TIMEOUT = 30.0
EMITTER_TIMEOUT = 30.0  # the emitter's start, and its last publishes after stdin closes
clock = time.perf_counter


@dataclass
class Published:
    sent: int = 0
    accepted: int = 0  # items that make one message each
    conflated: int = 0  # jobwire only: acked without an event (should stay 0)
    refused: int = 0
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0
    max_lag: float = 0.0
    post_times: list[float] = field(default_factory=list)  # one request (or write), to answer

    def refuse(self, n: int, why: str) -> None:
        self.refused += n
        self.errors.append(why[:200])

    def count_ack(self, event_id: str | None) -> None:
        """jobwire's answer to one update: an event id, or none while conflation holds it."""
        if event_id is None:
            self.conflated += 1
        else:
            self.accepted += 1


@dataclass
class Target:
    """Where a load goes: the server's URL, a publisher token (jobwire), the run's Redis."""

    server: Server
    base: str
    token: str
    redis_url: str | None


def job_slots(users: list[str], jobs_per_user: int) -> list[tuple[str, str]]:
    """(jobId, user); consecutive slots belong to different users, so load spreads evenly."""
    n = len(users)
    return [(f"{users[s % n]}:j{s // n}", users[s % n]) for s in range(n * jobs_per_user)]


class Updates:
    """The run's updates: slot by slot, each job's next one."""

    def __init__(self, server: Server, slots: list[tuple[str, str]], total: int):
        self.jobwire = server.name == "jobwire"
        self.slots = slots
        self.counts = [0] * len(slots)
        self.step = 99.0 / (math.ceil(total / len(slots)) + 1)

    def next(self, s: int, ts: str) -> Any:
        """The next update of slot `s`, as jobwire takes it, or for a peer the event jobwire
        would send, addressed to the user's room (so every client gets the same message)."""
        self.counts[s] += 1
        seq = self.counts[s]
        job, user = self.slots[s]
        update = {"jobId": job, "userId": user, "status": "processing",
                  "progress": round(min(seq * self.step, 99.0), 4),
                  "currentOperation": f"step {seq}", "timestamp": ts}
        if self.jobwire:
            return update
        event = {"type": "status_update", "id": f"{int(time.time() * 1000)}-{seq}", "seq": seq,
                 **update, "workerId": None, "etaSeconds": None}
        return {"room": user, "data": event}


def now_iso() -> str:
    return datetime.now(UTC).isoformat()


# --- batches on a schedule ----------------------------------------------------------------

Send = Callable[[list[Any]], Awaitable[None]]


async def scheduled_batches(updates: Updates, rate: float, duration: float, tick: float,
                            send: Send, out: Published, in_flight: int = 1) -> None:
    """A batch every `tick` on an absolute schedule, at most `in_flight` at once; overdue
    ticks merge."""
    total = round(rate * duration)
    n_slots = len(updates.slots)
    gate = asyncio.Semaphore(in_flight)
    flying: set[asyncio.Task[None]] = set()

    async def one(batch: list[Any]) -> None:
        t = clock()
        try:
            await send(batch)
        finally:
            out.post_times.append(clock() - t)
            gate.release()

    t0 = clock()
    stop_at = t0 + 2 * duration + 5
    k = 0
    while out.sent < total and clock() < stop_at:
        k += 1
        delay = t0 + k * tick - clock()
        if delay > 0:
            await asyncio.sleep(delay)
        else:
            out.max_lag = max(out.max_lag, -delay)
            k = max(k, int((clock() - t0) / tick))
        due = min(total, round(k * tick * rate))
        while out.sent < due:
            await gate.acquire()
            n = min(due - out.sent, MAX_BATCH)
            ts = now_iso()
            batch = [updates.next(g % n_slots, ts) for g in range(out.sent, out.sent + n)]
            out.sent += n
            task = asyncio.create_task(one(batch))
            flying.add(task)
            task.add_done_callback(flying.discard)
    await asyncio.gather(*flying)
    out.seconds = clock() - t0


def http_batches(target: Target, out: Published, connections: int = 1
                 ) -> tuple[Send, Callable[[], Awaitable[None]]]:
    """POST each batch (on a free one of `connections`): jobwire's /api/v2/jobs/status, the
    peers' /publish."""
    jobwire = target.server.name == "jobwire"
    headers = {"Content-Type": "application/json"}
    if jobwire:
        headers["Authorization"] = f"Bearer {target.token}"
    url = target.base + ("/api/v2/jobs/status" if jobwire else "/publish")
    conns = [Connection(url, headers) for _ in range(connections)]
    free: asyncio.Queue[Connection] = asyncio.Queue()
    for c in conns:
        free.put_nowait(c)

    async def send(batch: list[Any]) -> None:
        conn = await free.get()
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT):
                status, body = await conn.post(orjson.dumps(batch))
        except (HttpError, TimeoutError) as exc:
            conn.close()
            return out.refuse(len(batch), f"{type(exc).__name__}: {exc}")
        finally:
            free.put_nowait(conn)
        if status != 202:
            return out.refuse(len(batch), f"{status}: {body[:200]!r}")
        if not jobwire:
            out.accepted += len(batch)
            return
        for item in orjson.loads(body)["results"]:
            if "status" in item:
                out.refuse(1, f"refused: {item}")
            else:
                out.count_ack(item.get("id"))

    async def close() -> None:
        for c in conns:
            c.close()

    return send, close


def broker_batches(target: Target, out: Published) -> tuple[Send, Callable[[], Awaitable[None]]]:
    """jobwire, direct: commit each batch with the Redis broker, publish-only (no start())."""
    assert target.redis_url
    broker = RedisBroker(target.redis_url)

    async def send(batch: list[Any]) -> None:
        try:
            acks = await broker.publish_many([parse_update(u) for u in batch])
        except JobwireError as exc:
            return out.refuse(len(batch), f"{type(exc).__name__}: {exc}")
        for ack in acks:
            if isinstance(ack, JobwireError):
                out.refuse(1, f"{type(ack).__name__}: {ack}")
            else:
                out.count_ack(ack.id)

    return send, broker.stop


async def emitter_batches(target: Target, out: Published
                          ) -> tuple[Send, Callable[[], Awaitable[None]]]:
    """A peer, direct: each batch one JSON line to the Socket.IO emitter process (on the
    generator's core), which emits every item to its room through Redis. The emitter says
    `ready` once connected, and `emitted N` once every publish went out after stdin closed."""
    assert target.redis_url
    script = (["node", str(PEERS / "emitter.js")] if target.server.name == "node"
              else [str(PEER_PYTHON), str(PEERS / "emitter.py")])
    proc = await asyncio.create_subprocess_exec(
        *pinned(LOADGEN_CORE, [*script, "--redis", target.redis_url]),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
    assert proc.stdin and proc.stdout
    stdin, stdout = proc.stdin, proc.stdout

    async def said(word: bytes) -> bytes:
        async with asyncio.timeout(EMITTER_TIMEOUT):
            line = await stdout.readline()
        if not line.startswith(word):
            raise RuntimeError(f"emitter: expected {word.decode()!r}, got {line[:200]!r}")
        return line

    try:
        await said(b"ready")
    except BaseException:
        await stop_emitter(proc)
        raise
    written = 0

    async def send(batch: list[Any]) -> None:
        nonlocal written
        stdin.write(orjson.dumps(batch) + b"\n")
        await stdin.drain()
        written += len(batch)

    async def close() -> None:
        try:
            stdin.close()
            out.accepted += int((await said(b"emitted")).split()[1])
            if out.accepted < written:
                out.refuse(written - out.accepted, "the emitter lost items")
        finally:
            await stop_emitter(proc)

    return send, close


async def stop_emitter(proc: asyncio.subprocess.Process) -> None:
    """By its PID: SIGTERM, then SIGKILL if it lingers."""
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            proc.terminate()
        try:
            async with asyncio.timeout(5):
                await proc.wait()
        except TimeoutError:
            proc.kill()
            await proc.wait()


# --- one update per request ---------------------------------------------------------------

async def single_updates(target: Target, updates: Updates, rate: float, duration: float,
                         workers: int, out: Published) -> None:
    """The k-th update is due at start + k / rate and goes to slot k mod slots; a slot's
    updates all go through one connection (slot mod workers), one request in flight each."""
    n_slots = len(updates.slots)
    workers = min(workers, n_slots)
    total = round(rate * duration)
    owned: list[list[int]] = [[] for _ in range(workers)]
    for k in range(total):
        owned[k % n_slots % workers].append(k)
    jobwire = target.server.name == "jobwire"
    headers = {"Content-Type": "application/json"}
    if jobwire:
        headers["Authorization"] = f"Bearer {target.token}"
    t0 = clock()
    stop_at = t0 + 2 * duration + 5

    async def worker(ks: list[int]) -> None:
        conn = Connection(target.base + "/publish", headers)
        try:
            for k in ks:
                if clock() >= stop_at:
                    return
                delay = t0 + k / rate - clock()
                if delay > 0:
                    await asyncio.sleep(delay)
                else:
                    out.max_lag = max(out.max_lag, -delay)
                s = k % n_slots
                item = updates.next(s, now_iso())
                out.sent += 1
                t = clock()
                try:
                    async with asyncio.timeout(REQUEST_TIMEOUT):
                        if jobwire:
                            path = f"POST /api/v2/jobs/{item.pop('jobId')}/status HTTP/1.1\r\n"
                            body = orjson.dumps(item)
                            r = await conn.send(path.encode() + conn.fixed + b"Content-Length: "
                                                b"%d\r\n\r\n" % len(body) + body)
                            status, answer = r.status, r.body
                        else:
                            status, answer = await conn.post(orjson.dumps([item]))
                except (HttpError, TimeoutError) as exc:
                    conn.close()
                    out.refuse(1, f"{type(exc).__name__}: {exc}")
                    continue
                out.post_times.append(clock() - t)
                if status != 202:
                    out.refuse(1, f"{status}: {answer[:200]!r}")
                elif jobwire:
                    out.count_ack(orjson.loads(answer).get("id"))
                else:
                    out.accepted += 1
        finally:
            conn.close()

    await asyncio.gather(*(worker(ks) for ks in owned))
    out.seconds = clock() - t0


# --- the load, by name --------------------------------------------------------------------

async def publish(load: str, target: Target, updates: Updates, rate: float, duration: float,
                  workers: int, out: Published) -> None:
    if load == "single":
        return await single_updates(target, updates, rate, duration, workers, out)
    if load == "direct":
        send, close = (broker_batches(target, out) if target.server.name == "jobwire"
                       else await emitter_batches(target, out))
    else:
        send, close = http_batches(target, out, IN_FLIGHT.get(load, 1))
    try:
        await scheduled_batches(updates, rate, duration, TICKS[load], send, out,
                                IN_FLIGHT.get(load, 1))
    finally:
        await close()
