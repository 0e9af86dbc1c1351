"""A group of readers in one event loop, driven by commands: the whole of them with
`--processes 1`, or one worker process's share (see workers.py, which carries the same commands
over a socket). Each command is a dict with "cmd" and gets a dict back:

  start   {clients: [[user, url, token, transport], ...], concurrent, pollInterval, wsClient}
  status  {p99} -> counts so far (connected, failed, rateLimited, delivered, pending, up, cpu, ...)
  cutoff  {timeout} -> {live: [users], samples}: clients not connected by now give up
  measure {sampleLag} -> {cpu}: the measured phase starts (from now the event loop's
          lateness is sampled, unless sampleLag is false: the loop is the caller's)
  drop    {n} -> {dropped}: force-close n random connected clients (they resume)
  finish  -> {cpuSeconds, lags, tallies: {transport: Tally fields}}: measure, then close all
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import time
from typing import Any

from .clients import Client, LongPollClient, PollClient, SseClient
from .stats import Tally, summary, tally_fields
from .ws import DEFAULT_WS_CLIENT, WS_CLIENTS

CLOSE_WAIT = 10.0  # seconds for every client to close at the end
LAG_PERIOD = 0.05
clock = time.perf_counter


def run_loop(coro: Any) -> Any:
    """Run a coroutine to its end on a new event loop: uvloop's if it is installed."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


def client_class(transport: str, ws_client: str = DEFAULT_WS_CLIENT) -> type[Client]:
    if transport == "ws":
        return WS_CLIENTS[ws_client]
    return {"sse": SseClient, "longpoll": LongPollClient, "poll": PollClient}[transport]


class ReaderGroup:
    """Clients, their tallies (one per transport) and tasks, and the loop-lateness sampler."""

    def __init__(self) -> None:
        self.clients: list[Client] = []
        self.tallies: dict[str, Tally] = {}
        self.tasks: list[asyncio.Task[None]] = []
        self.lags: list[float] = []
        self.sampler: asyncio.Task[None] | None = None
        self.cpu0 = 0.0
        self.finished = False

    async def handle(self, msg: dict[str, Any]) -> dict[str, Any]:
        cmd = msg["cmd"]
        if cmd == "start":
            return self.start(msg)
        if cmd == "status":
            return self.status(bool(msg.get("p99")))
        if cmd == "cutoff":
            return self.cutoff(msg["timeout"])
        if cmd == "measure":
            return self.measure(msg.get("sampleLag", True))
        if cmd == "drop":
            return {"dropped": self.drop(msg["n"])}
        if cmd == "finish":
            return await self.finish()
        raise ValueError(f"unknown command {cmd!r}")

    def start(self, msg: dict[str, Any]) -> dict[str, Any]:
        ws_client = msg.get("wsClient") or DEFAULT_WS_CLIENT
        for user, url, token, transport in msg["clients"]:
            tally = self.tallies.setdefault(transport, Tally())
            client = client_class(transport, ws_client)(user, url, token, tally)
            if isinstance(client, PollClient):
                client.interval = msg["pollInterval"]
            self.clients.append(client)
        gate = asyncio.Semaphore(msg["concurrent"])
        self.tasks = [asyncio.create_task(c.run(gate)) for c in self.clients]
        return {"pid": os.getpid()}

    def up(self) -> list[Client]:
        return [c for c in self.clients
                if c.ever_connected and not c.gave_up and c.connected.is_set()
                and c.forced_at is None]

    def status(self, p99: bool = False) -> dict[str, Any]:
        """Counts so far; with `p99`, also the p99 latency of the latest events."""
        ts = self.tallies.values()
        recent = [x for t in ts for x in t.latencies[-2000:]] if p99 else []
        return {
            "connected": sum(t.connected for t in ts),
            "failed": sum(1 for c in self.clients if c.gave_up and not c.ever_connected),
            "rateLimited": sum(t.rate_limited for t in ts),
            "delivered": sum(t.delivered for t in ts),
            "pending": sum(1 for c in self.clients if c.ever_connected
                           and c.forced_at is not None and not c.gave_up),
            "forced": sum(t.forced for t in ts),
            "reconnected": sum(t.reconnected for t in ts),
            "up": len(self.up()),
            "p99Ms": summary(recent, 1000, (99,))["p99"],
            "cpu": time.process_time(),
            "samples": [s for t in ts for s in t.samples][:3],
        }

    def cutoff(self, timeout: float) -> dict[str, Any]:
        for c, task in zip(self.clients, self.tasks, strict=True):
            if not c.ever_connected and not c.gave_up:
                task.cancel()
                c.gave_up = f"not connected within {timeout:g} s"
                c.tally.note("connect_failures", f"{c.user}: {c.gave_up}")
        return {"live": [c.user for c in self.clients if c.ever_connected and not c.gave_up],
                "samples": [s for t in self.tallies.values() for s in t.samples][:3]}

    def measure(self, sample_lag: bool) -> dict[str, Any]:
        self.cpu0 = time.process_time()
        if sample_lag:
            self.sampler = asyncio.create_task(self.sample_lag())
        return {"cpu": self.cpu0}

    async def sample_lag(self) -> None:
        while not self.finished:
            t0 = clock()
            await asyncio.sleep(LAG_PERIOD)
            self.lags.append(clock() - t0 - LAG_PERIOD)

    def drop(self, n: int) -> int:
        up = self.up()
        return sum(c.drop() for c in random.sample(up, min(n, len(up))))

    async def finish(self) -> dict[str, Any]:
        """The CPU used since `measure`, then every client closed, then the tallies."""
        cpu = time.process_time() - self.cpu0
        await self.close()
        return {"pid": os.getpid(), "cpuSeconds": cpu, "lags": self.lags,
                "clients": len(self.clients),
                "tallies": {t: tally_fields(tally) for t, tally in self.tallies.items()}}

    async def close(self) -> None:
        if self.finished:
            return
        self.finished = True
        for c in self.clients:
            c.closing = True
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*(c.close() for c in self.clients),
                                                  return_exceptions=True), CLOSE_WAIT)
        if self.sampler is not None:
            self.sampler.cancel()
            await asyncio.gather(self.sampler, return_exceptions=True)
