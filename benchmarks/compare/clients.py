"""The WebSocket readers: jobwire's own protocol and Engine.IO v4 / Socket.IO for the peers,
connected a bounded number at a time, and the Tally of what they receive (per-job seq: gaps,
duplicates; publish-to-receipt latency)."""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass, field
from typing import Any

import orjson
from websockets.asyncio.client import ClientConnection, connect

from jobwire.loadtest.stats import ts_seconds

from .servers import Server

CONNECT_TIMEOUT = 30.0  # one client: WebSocket open to subscription acknowledged
clock = time.perf_counter


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
