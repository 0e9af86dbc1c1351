"""High availability: a master, a replica and three sentinels; the master is killed and the
service publishes and delivers again within 10 s, on the new master."""

from __future__ import annotations

import subprocess
import tempfile
import time
from pathlib import Path

import httpx
import redis as sync_redis

from tests.conftest import WAIT, connect, eventually, free_port, start_redis, start_server


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


async def test_master_failover_is_followed_within_10_seconds(uid):
    with tempfile.TemporaryDirectory() as folder:
        # Redis waits 5 s by default before a diskless full sync, in case more replicas come.
        no_delay = ("--repl-diskless-sync-delay", "0")
        master = start_redis(None, *no_delay)
        replica = start_redis(None, *no_delay, "--replicaof", "127.0.0.1", str(master.port))
        sentinels = [start_sentinel(Path(folder), master.port) for _ in range(3)]
        hosts = ",".join(f"127.0.0.1:{s.port}" for s in sentinels)  # type: ignore[attr-defined]
        url = f"redis+sentinel://{hosts}/main"
        servers = []
        try:
            primary = sync_redis.Redis(port=master.port)
            await eventually(
                lambda: primary.info("replication").get("slave0", {}).get("state") == "online",
                timeout=3 * WAIT)
            primary.close()
            a = start_server(redis_url=url, redis_durable_replicas=1)
            # With one replica, a durable publish cannot be confirmed once the replica has
            # become the master; b publishes without waiting for replicas.
            b = start_server(redis_url=url, secret=a.secret)
            servers = [a, b]
            async with httpx.AsyncClient(timeout=WAIT) as http:
                for server in servers:
                    await eventually(lambda s=server: _ready(http, s))
            user = f"{uid}-u"
            client = await connect(a, a.token(user))
            await client.subscribe(all=True)
            acknowledged = []
            async with httpx.AsyncClient(timeout=WAIT) as http:
                async def publish(i: int, server=a) -> bool:
                    r = await http.post(f"{server.url}/api/v2/jobs/{uid}-{i}/status",
                                        headers=server.headers("w", "publisher"),
                                        json={"userId": user, "status": "queued",
                                              "eventId": f"e{i}"})
                    if r.status_code == 202:
                        acknowledged.append(r.json()["id"])
                        return True
                    assert r.status_code == 503
                    return False

                for i in range(5):
                    assert await publish(i)  # durable: the replica confirmed each
                master.stop()
                killed = time.monotonic()
                i = 5

                async def next_publish() -> bool:
                    return await publish(i, b)

                await eventually(next_publish, timeout=15, interval=0.1)
                failover = time.monotonic() - killed
                for i in range(6, 10):
                    assert await publish(i, b)
            got = await client.recv_until(lambda m: m.get("id") == acknowledged[-1],
                                          timeout=3 * WAIT)
            assert [m["id"] for m in got if "jobId" in m] == acknowledged
            print(f"failover: publishing again {failover:.2f} s after the master was killed")
            assert failover < 10
            await client.close()
        finally:
            for server in servers:
                server.stop()
            for sentinel in sentinels:
                sentinel.kill()
                sentinel.wait(5)
            replica.stop()
            master.stop()


async def _ready(http: httpx.AsyncClient, server) -> bool:
    return (await http.get(f"{server.url}/readyz")).status_code == 200
