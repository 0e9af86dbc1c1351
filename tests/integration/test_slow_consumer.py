"""A client that stops reading is cut off without delaying anyone else or growing memory, on
both WebSocket paths (frames written straight to uvicorn's connections, and plain ASGI)."""

from __future__ import annotations

import asyncio
import statistics
import time
from datetime import UTC, datetime

import httpx
import orjson
import pytest
import websockets

from tests.conftest import WAIT, connect, start_server_on, wait_for_sessions

FAST = 100
EVENTS = 1000  # each a new job that ends at once: endings are never shed
PAD = "x" * 16000  # 16 MB in all: far more than the stalled peer's socket buffers hold


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("VmRSS:"))


async def run_round(server, tag: str, stalled: bool) -> list[float]:
    """Publish EVENTS updates to FAST users while (optionally) an admin watches everything
    and reads nothing; return every fast client's latencies in ms."""
    clients = await asyncio.gather(*(connect(server, server.token(f"{tag}{i}"))
                                     for i in range(FAST)))
    try:
        return await measure(server, tag, stalled, clients)
    finally:  # whatever failed, no socket is left open for the collector to find
        for c in clients:
            c.ws.transport.abort()


async def measure(server, tag: str, stalled: bool, clients) -> list[float]:
    await asyncio.gather(*(c.subscribe(all=True) for c in clients))
    stall = None
    if stalled:
        # max_queue=1: the library stops reading the socket once one message is waiting.
        stall = await websockets.connect(f"{server.ws_url}?token={server.token('root', 'admin')}",
                                         max_queue=1, max_size=None, open_timeout=WAIT)
    try:
        return await publish_and_read(server, tag, clients, stall)
    finally:
        if stall is not None:
            stall.transport.abort()


async def publish_and_read(server, tag: str, clients, stall) -> list[float]:
    if stall is not None:
        await stall.send(orjson.dumps({"type": "subscribe", "all": True}).decode())
        await wait_for_sessions(server, "websocket", FAST + 1)
    latencies: list[float] = []

    async def drain(client, user):
        want = EVENTS // FAST
        got = 0
        while got < want:
            msg = await client.recv(3 * WAIT)
            if msg.get("userId") == user and "jobId" in msg:
                sent = datetime.fromisoformat(msg["timestamp"]).timestamp()
                latencies.append((time.time() - sent) * 1000)
                got += 1

    readers = [asyncio.create_task(drain(c, f"{tag}{i}")) for i, c in enumerate(clients)]
    async with httpx.AsyncClient(base_url=server.url, timeout=WAIT) as http:
        headers = server.headers("w", "publisher")
        for start in range(0, EVENTS, 20):
            batch = [{"jobId": f"{tag}-{n}", "userId": f"{tag}{n % FAST}",
                      "status": "completed", "result": {"page": PAD},
                      "timestamp": datetime.now(UTC).isoformat()}
                     for n in range(start, start + 20)]
            r = await http.post("/api/v2/jobs/status", json=batch, headers=headers)
            assert r.status_code == 202
            await asyncio.sleep(0.01)  # a steady rate, like real workers
    await asyncio.wait_for(asyncio.gather(*readers), 6 * WAIT)
    for c in clients:
        await c.close()
    if stall is not None:
        # Cut off: the server dropped it (and only it).
        await wait_for_sessions(server, "websocket", 0, timeout=3 * WAIT)
    return latencies


@pytest.mark.parametrize("ws_path", ["fast", "asgi"])
async def test_stalled_client_is_cut_off_and_others_keep_their_latency(ws_path):
    srv = start_server_on(ws_path, max_outbox=64)
    try:
        await run_round(srv, "warm", stalled=False)  # warm-up: imports, caches
        baseline = sorted(await run_round(srv, "base", stalled=False))
        before = rss_kib(srv.process.pid)
        with_stall = sorted(await run_round(srv, "slow", stalled=True))
        grown = rss_kib(srv.process.pid) - before

        def p(values, q):
            return values[int(q * (len(values) - 1))]

        print(f"{ws_path}: fast clients p50/p99 ms: alone {statistics.median(baseline):.1f}/"
              f"{p(baseline, 0.99):.1f}, beside a stalled client "
              f"{statistics.median(with_stall):.1f}/{p(with_stall, 0.99):.1f}; "
              f"server RSS grew {grown / 1024:.1f} MiB")
        assert len(with_stall) == len(baseline) == EVENTS  # nobody else lost anything
        assert p(with_stall, 0.99) < max(3 * p(baseline, 0.99), p(baseline, 0.99) + 100)
        assert grown < 64 * 1024  # bounded: nowhere near the stalled peer's backlog
        async with httpx.AsyncClient(timeout=WAIT) as http:
            metrics = (await http.get(f"{srv.url}/metrics")).text
        assert "jobwire_slow_disconnects_total 1.0" in metrics
    finally:
        srv.stop()
