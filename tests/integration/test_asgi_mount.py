"""jobwire mounted under a prefix in a real FastAPI or Starlette app served by uvicorn
(tests/integration/mount_app.py): every transport and the publish API under the prefix, the
host's lifespan starting and stopping it, and in-process publishing from a host handler."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import dataclass

import httpx
import orjson
import pytest
import websockets
from httpx_sse import aconnect_sse

from jobwire.tokens import Tokens
from tests.conftest import WAIT, Client, _started, free_port, stop_process

PREFIX = "/realtime"


@dataclass
class Host:
    url: str
    tokens: Tokens
    process: subprocess.Popen[bytes]

    @property
    def ws_url(self) -> str:
        return self.url.replace("http", "ws", 1) + PREFIX + "/ws/jobs"

    def headers(self, user: str, role: str = "user") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens.mint(user, role)}"}

    def stop(self) -> None:
        stop_process(self.process)


def start_host(kind: str) -> Host:
    secret, port = secrets.token_urlsafe(32), free_port()
    env = {**os.environ, "JOBWIRE_SECRET": secret, "MOUNT_HOST": kind}
    process = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "tests.integration.mount_app:app", "--port",
         str(port), "--log-level", "warning", "--timeout-graceful-shutdown", "5"], env=env)
    host = Host(f"http://127.0.0.1:{port}", Tokens(secret), process)
    _started.append(host)
    deadline = time.monotonic() + 3 * WAIT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the host app exited with {process.returncode}")
        try:
            httpx.get(host.url + PREFIX + "/healthz", timeout=1)
            return host
        except httpx.TransportError:
            time.sleep(0.05)
    host.stop()
    raise RuntimeError("the host app did not start")


@pytest.fixture(scope="module")
def host():
    started = start_host("fastapi")
    yield started
    started.stop()


async def test_every_transport_and_the_publish_api_answer_under_the_prefix(host, uid):
    job, user = f"{uid}-job", f"{uid}-u"
    async with httpx.AsyncClient(base_url=host.url + PREFIX, timeout=WAIT) as http:
        r = await http.post(f"/api/v2/jobs/{job}/status", headers=host.headers("w", "publisher"),
                            json={"userId": user, "status": "queued"})
        assert r.status_code == 202
        queued = r.json()
        ws = Client(await websockets.connect(
            f"{host.ws_url}?token={host.tokens.mint(user)}", open_timeout=WAIT))
        assert (await ws.recv())["type"] == "authenticated"
        await ws.subscribe(jobIds=[job])
        async with aconnect_sse(http, "GET", "/api/v2/jobs/stream", params={"jobIds": job},
                                headers=host.headers(user)) as sse:
            stream = sse.aiter_sse()
            assert orjson.loads((await anext(stream)).data)["type"] == "subscribed"
            r = await http.post(f"/api/v2/jobs/{job}/status",
                                headers=host.headers("w", "publisher"),
                                json={"userId": user, "status": "processing", "progress": 5})
            processing = r.json()
            while (message := await anext(stream)).id != processing["id"]:
                pass
            assert orjson.loads(message.data)["progress"] == 5
        events = await ws.recv_until(lambda m: m.get("id") == processing["id"])
        assert events[-1]["status"] == "processing"
        await ws.close()
        r = await http.get("/api/v2/jobs/poll", headers=host.headers(user),
                           params={"last_seen": queued["id"], "timeout": 5})
        assert [e["id"] for e in r.json()["events"]] == [processing["id"]]
        r = await http.get(f"/api/v2/jobs/{job}", headers=host.headers(user))
        assert r.status_code == 200 and r.json()["progress"] == 5
        r = await http.get(f"/api/v2/jobs/{job}", headers=host.headers(f"{uid}-other"))
        assert r.status_code in (403, 404)


async def test_the_dashboard_library_and_health_are_under_the_prefix(host):
    async with httpx.AsyncClient(base_url=host.url, timeout=WAIT) as http:
        page = await http.get(PREFIX + "/")
        assert page.status_code == 200 and "text/html" in page.headers["content-type"]
        script = await http.get(PREFIX + "/static/jobwire.js")
        assert script.status_code == 200 and "javascript" in script.headers["content-type"]
        assert (await http.get(PREFIX + "/healthz")).json()["status"] == "ok"
        missing = await http.get(PREFIX + "/no-such-page")
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
        # The host's own routes are untouched.
        assert (await http.get("/hello")).json() == {"hello": "from the host"}


async def test_a_host_handler_publishes_in_process(host, uid):
    job, user = f"{uid}-job", f"{uid}-u"
    ws = Client(await websockets.connect(f"{host.ws_url}?token={host.tokens.mint(user)}",
                                         open_timeout=WAIT))
    assert (await ws.recv())["type"] == "authenticated"
    await ws.subscribe(jobIds=[job])
    async with httpx.AsyncClient(base_url=host.url, timeout=WAIT) as http:
        r = await http.post(f"/work/{job}", params={"user": user, "status": "processing",
                                                    "progress": 30})
        assert r.status_code == 200
        ack = r.json()
        assert set(ack) == {"jobId", "id", "seq"} and ack["jobId"] == job
        events = await ws.recv_until(lambda m: m.get("id") == ack["id"])
        assert events[-1]["currentOperation"] == "step 30.0"
        # Bad input raises jobwire's own errors in the host's code, and changes nothing.
        r = await http.post(f"/work/{job}", params={"user": user, "status": "exploded"})
        assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_update"
        r = await http.post(f"/work/{job}", params={"user": f"{uid}-thief",
                                                    "status": "processing"})
        assert r.status_code == 409 and r.json()["error"]["code"] == "owner_mismatch"
        r = await http.get(f"/realtime/api/v2/jobs/{job}", headers=host.headers(user))
        assert r.json()["id"] == ack["id"]
    await ws.close()


async def test_stopping_the_host_ends_connections_and_exits():
    host = start_host("fastapi")
    ws = Client(await websockets.connect(f"{host.ws_url}?token={host.tokens.mint('u')}",
                                         open_timeout=WAIT))
    assert (await ws.recv())["type"] == "authenticated"
    host.process.send_signal(signal.SIGTERM)
    assert await ws.expect_close(timeout=3 * WAIT) in (1001, 1012)
    # uvicorn re-raises the signal once it has shut down (lifespan included).
    assert host.process.wait(3 * WAIT) in (0, -signal.SIGTERM)


async def test_a_host_with_its_own_lifespan_runs_jobwire_inside_it():
    host = start_host("starlette")
    try:
        async with httpx.AsyncClient(base_url=host.url + PREFIX, timeout=WAIT) as http:
            r = await http.post("/api/v2/jobs/j1/status", headers=host.headers("w", "publisher"),
                                json={"userId": "u1", "status": "queued"})
            assert r.status_code == 202
            r = await http.get("/api/v2/jobs/j1", headers=host.headers("u1"))
            assert r.json()["status"] == "queued"
    finally:
        host.stop()


async def test_a_mount_that_was_never_started_says_so():
    host = start_host("unstarted")
    try:
        async with httpx.AsyncClient(base_url=host.url + PREFIX, timeout=WAIT) as http:
            r = await http.get("/api/v2/jobs/status", headers=host.headers("u1"))
            assert r.status_code == 503 and "not started" in r.json()["error"]["message"]
        with pytest.raises(websockets.InvalidStatus) as refused:
            await websockets.connect(host.ws_url, open_timeout=WAIT)
        assert refused.value.response.status_code == 403
    finally:
        host.stop()
