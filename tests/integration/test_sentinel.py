"""High availability: a master, a replica and three sentinels. The master is killed and the
service publishes and delivers again within 10 s, on the new master, delivery close behind
publishing; the replica is killed and durable mode acknowledges nothing meanwhile."""

from __future__ import annotations

import asyncio
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import redis as sync_redis

from tests.conftest import (
    WAIT,
    RedisServer,
    Server,
    connect,
    eventually,
    free_port,
    start_redis,
    start_server,
)

# Redis waits 5 s by default before a diskless full sync, in case more replicas come.
NO_SYNC_DELAY = ("--repl-diskless-sync-delay", "0")


def start_sentinel(folder: Path, master_port: int) -> subprocess.Popen[bytes]:
    port = free_port()
    conf = folder / f"sentinel-{port}.conf"
    conf.write_text(f"port {port}\nbind 127.0.0.1\n"
                    f"sentinel monitor main 127.0.0.1 {master_port} 2\n"
                    "sentinel down-after-milliseconds main 1000\n"
                    "sentinel failover-timeout main 5000\n")
    process = subprocess.Popen(["redis-server", str(conf), "--sentinel"],
                               stdout=subprocess.DEVNULL)
    process.port = port  # type: ignore[attr-defined]
    return process


def start_replica(master: RedisServer, port: int | None = None) -> RedisServer:
    return start_redis(port, *NO_SYNC_DELAY, "--replicaof", "127.0.0.1", str(master.port))


async def replica_online(master: RedisServer) -> None:
    primary = sync_redis.Redis(port=master.port)
    try:
        await eventually(
            lambda: primary.info("replication").get("slave0", {}).get("state") == "online",
            timeout=3 * WAIT)
    finally:
        primary.close()


@dataclass
class Sentinels:
    master: RedisServer
    replica: RedisServer
    url: str  # redis+sentinel://…/main


@pytest.fixture
async def ha() -> AsyncIterator[Sentinels]:
    with tempfile.TemporaryDirectory() as folder:
        master = start_redis(None, *NO_SYNC_DELAY)
        setup = Sentinels(master, start_replica(master), "")
        sentinels = [start_sentinel(Path(folder), master.port) for _ in range(3)]
        hosts = ",".join(f"127.0.0.1:{s.port}" for s in sentinels)  # type: ignore[attr-defined]
        setup.url = f"redis+sentinel://{hosts}/main"
        try:
            await replica_online(master)
            yield setup
        finally:
            for sentinel in sentinels:
                sentinel.kill()
                sentinel.wait(5)
            setup.replica.stop()
            master.stop()


async def post(http: httpx.AsyncClient, server: Server, job_id: str, user: str,
               event_id: str) -> httpx.Response:
    return await http.post(f"{server.url}/api/v2/jobs/{job_id}/status",
                           headers=server.headers("w", "publisher"),
                           json={"userId": user, "status": "queued", "eventId": event_id})


async def ready_again(http: httpx.AsyncClient, server: Server) -> float:
    """When /readyz answers 200 again, after it answered something else (bounded)."""
    went_down = False
    async with asyncio.timeout(20):
        while True:
            ready = (await http.get(f"{server.url}/readyz")).status_code == 200
            if ready and went_down:
                return time.monotonic()
            went_down = went_down or not ready
            await asyncio.sleep(0.05)


async def test_master_failover_is_followed_within_10_seconds(ha, uid):
    a = start_server(redis_url=ha.url, redis_durable_replicas=1)
    # With one replica, a durable publish cannot be confirmed once the replica has become
    # the master; b publishes without waiting for replicas.
    b = start_server(redis_url=ha.url, secret=a.secret)
    try:
        async with httpx.AsyncClient(timeout=WAIT) as http:
            for server in (a, b):
                await eventually(lambda s=server: _ready(http, s))
        user = f"{uid}-u"
        clients = [await connect(s, s.token(user)) for s in (a, b)]
        arrivals: list[dict[str, float]] = [{}, {}]  # per client: event id → when it came

        async def receive(n: int) -> None:
            while True:
                message = await clients[n].recv(timeout=30)
                if "jobId" in message:
                    arrivals[n][message["id"]] = time.monotonic()

        for client in clients:
            await client.subscribe(all=True)
        readers = [asyncio.create_task(receive(n)) for n in (0, 1)]
        acknowledged = []
        async with httpx.AsyncClient(timeout=WAIT) as http:
            async def publish(i: int, server: Server = a) -> bool:
                r = await post(http, server, f"{uid}-{i}", user, f"e{i}")
                if r.status_code == 202:
                    acknowledged.append(r.json()["id"])
                    return True
                assert r.status_code == 503
                return False

            for i in range(5):
                assert await publish(i)  # durable: the replica confirmed each
            ha.master.stop()
            killed = time.monotonic()
            ready = [asyncio.create_task(ready_again(http, s)) for s in (a, b)]
            i = 5
            await eventually(lambda: publish(i, b), timeout=15, interval=0.1)
            published = time.monotonic() - killed
            first_after = acknowledged[-1]
            for i in range(6, 10):
                assert await publish(i, b)
            ready_at = [await r - killed for r in ready]
            await eventually(lambda: all(acknowledged[-1] in got for got in arrivals),
                             timeout=3 * WAIT)
        for reader in readers:
            reader.cancel()
        delivered = [got[first_after] - killed for got in arrivals]
        for got in arrivals:
            assert list(got) == acknowledged  # every event, once, in order
        print(f"failover: publishing again {published:.2f} s after the master was killed, "
              f"delivery {max(delivered):.2f} s, /readyz 200 {max(ready_at):.2f} s")
        assert published < 10
        # Delivery follows the new master at once, not after a reconnect backoff.
        assert max(delivered) < published + 1.5
        assert max(ready_at) < published + 1.5
        for client in clients:
            await client.close()
    finally:
        a.stop()
        b.stop()


async def test_durable_mode_acknowledges_no_retry_the_replicas_did_not_confirm(ha, uid):
    server = start_server(redis_url=ha.url, redis_durable_replicas=1)
    user = f"{uid}-u"
    try:
        async with httpx.AsyncClient(timeout=3 * WAIT) as http:
            await eventually(lambda: _ready(http, server))
            assert (await post(http, server, f"{uid}-a", user, "a1")).status_code == 202
            ha.replica.stop()
            refused = await post(http, server, f"{uid}-b", user, "b1")
            assert refused.status_code == 503, refused.text
            assert "0 of 1 replicas confirmed" in refused.json()["error"]["message"]
            # The retry is deduplicated by its eventId: stored already, on the master only.
            retried = await post(http, server, f"{uid}-b", user, "b1")
            assert retried.status_code == 503, retried.text
            ha.replica = start_replica(ha.master, ha.replica.port)
            await replica_online(ha.master)
            confirmed = await post(http, server, f"{uid}-b", user, "b1")
            assert confirmed.status_code == 202, confirmed.text
            state = (await http.get(f"{server.url}/api/v2/jobs/{uid}-b",
                                    headers=server.headers(user))).json()
        assert (state["id"], state["seq"]) == (confirmed.json()["id"], 1)  # stored once
    finally:
        server.stop()


async def _ready(http: httpx.AsyncClient, server: Server) -> bool:
    return (await http.get(f"{server.url}/readyz")).status_code == 200
