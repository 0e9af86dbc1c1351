"""deploy/nginx.conf in front of two instances sharing Redis: all four transports work
through it, and consecutive requests land on either instance."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import tempfile
from pathlib import Path

import httpx
import orjson
import pytest
from httpx_sse import aconnect_sse

from tests.conftest import (
    WAIT,
    Server,
    connect,
    eventually,
    free_port,
    metric,
    start_redis,
    start_server,
)

CONF = Path(__file__).resolve().parents[2] / "deploy" / "nginx.conf"


@pytest.fixture(scope="module")
def proxied():
    redis = start_redis()
    a = start_server(redis_url=redis.url)
    b = start_server(redis_url=redis.url, secret=a.secret)
    folder = tempfile.mkdtemp()
    port = free_port()
    conf = Path(folder) / "nginx.conf"
    conf.write_text(CONF.read_text().replace("@DIR@", folder).replace("@PORT@", str(port))
                    .replace("@PORT_A@", str(a.port)).replace("@PORT_B@", str(b.port)))
    nginx = subprocess.Popen([shutil.which("nginx") or "/usr/sbin/nginx", "-c", str(conf),
                              "-g", "daemon off;"], stderr=subprocess.DEVNULL)
    front = Server(f"http://127.0.0.1:{port}", f"ws://127.0.0.1:{port}/ws/jobs", a.auth,
                   nginx, a.env)
    asyncio.run(eventually(lambda: _serves(front.url)))
    yield front, a, b
    nginx.terminate()
    nginx.wait(WAIT)
    a.stop()
    b.stop()
    redis.stop()
    shutil.rmtree(folder, ignore_errors=True)


def _serves(url: str) -> bool:
    try:
        return httpx.get(url + "/healthz", timeout=1).status_code == 200
    except httpx.TransportError:
        return False


async def test_every_transport_through_nginx(proxied, uid):
    front, _, _ = proxied
    user = f"{uid}-u"
    headers = front.headers(user)
    ws = await connect(front, front.token(user))
    await ws.subscribe(all=True)
    async with httpx.AsyncClient(base_url=front.url, timeout=3 * WAIT) as http:
        publisher = front.headers("w", "publisher")
        first = (await http.post(f"/api/v2/jobs/{uid}/status", headers=publisher,
                                 json={"userId": user, "status": "queued"})).json()
        poll = asyncio.create_task(http.get("/api/v2/jobs/poll", headers=headers,
                                            params={"last_seen": first["id"], "timeout": 20}))
        async with aconnect_sse(http, "GET", "/api/v2/jobs/stream",
                                headers={**headers, "Last-Event-ID": first["id"]}) as sse:
            events = sse.aiter_sse()
            assert orjson.loads((await anext(events)).data)["type"] == "subscribed"
            second = (await http.post(f"/api/v2/jobs/{uid}/status", headers=publisher,
                                      json={"userId": user, "status": "processing",
                                            "progress": 5})).json()
            # Unbuffered: the event arrives while the stream is still open.
            streamed = orjson.loads((await asyncio.wait_for(anext(events), WAIT)).data)
        polled = (await asyncio.wait_for(poll, 2 * WAIT)).json()["events"]
        state = (await http.get(f"/api/v2/jobs/{uid}", headers=headers)).json()
    got = await ws.recv_until(lambda m: m.get("seq") == 2)
    assert [m["id"] for m in got] == [first["id"], second["id"]]
    assert streamed["id"] == polled[0]["id"] == state["id"] == second["id"]
    await ws.close()


async def test_an_empty_long_poll_answers_through_the_proxy_at_its_timeout(proxied, uid):
    front, _, _ = proxied
    async with httpx.AsyncClient(base_url=front.url, timeout=3 * WAIT) as http:
        r = await http.get("/api/v2/jobs/poll", headers=front.headers(uid),
                           params={"last_seen": "0-0", "timeout": 3})
    assert r.status_code == 200 and r.json()["events"] == []


async def test_consecutive_requests_land_on_either_instance(proxied, uid):
    front, a, b = proxied
    before = [await metric(s, "jobwire_events_published_total") for s in (a, b)]
    async with httpx.AsyncClient(base_url=front.url, timeout=WAIT) as http:
        for n in range(4):
            r = await http.post(f"/api/v2/jobs/{uid}-{n}/status",
                                headers=front.headers("w", "publisher"),
                                json={"userId": f"{uid}-u", "status": "queued"})
            assert r.status_code == 202
    # Each instance counts the updates it accepted itself.
    moved = [await metric(s, "jobwire_events_published_total") - was
             for s, was in zip((a, b), before, strict=True)]
    assert sum(moved) == 4 and min(moved) > 0, moved
