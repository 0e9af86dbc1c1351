"""The `jobwire` command and the Python publishers, as users run them."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys

import httpx
import jwt
import pytest

from jobwire.errors import Conflict, InvalidUpdate
from jobwire.publisher import AsyncPublisher, Publisher
from tests.conftest import WAIT, Server, connect, eventually, free_port

JOBWIRE = [sys.executable, "-m", "jobwire.cli"]


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*JOBWIRE, *args], capture_output=True, text=True, timeout=3 * WAIT,
                          env={**os.environ, **(env or {})})


def test_token_mints_a_verifiable_token():
    secret = "s" * 32
    out = run("token", "alice", "--role", "admin", "--ttl", "60",
              env={"JOBWIRE_SECRET": secret})
    assert out.returncode == 0, out.stderr
    claims = jwt.decode(out.stdout.strip(), secret, algorithms=["HS256"])
    assert claims["sub"] == "alice" and claims["role"] == "admin"
    assert claims["exp"] - claims["iat"] == 60


def test_token_adds_claims_of_your_own_and_refuses_bad_ones():
    env = {"JOBWIRE_SECRET": "s" * 32}
    out = run("token", "alice", "--claim", "tenant=acme", "--claim", "seats=[1, 2]", env=env)
    claims = jwt.decode(out.stdout.strip(), "s" * 32, algorithms=["HS256"])
    assert claims["tenant"] == "acme" and claims["seats"] == [1, 2] and claims["sub"] == "alice"
    for args, complaint in ((["--claim", "role=admin"], "claim role is set by jobwire itself"),
                            (["--claim", "novalue"], "use name=value"),
                            (["--role", "root"], "invalid choice")):
        out = run("token", "alice", *args, env=env)
        assert out.returncode == 2 and complaint in out.stderr and out.stdout == ""


def test_serve_refuses_to_start_without_a_secret():
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBWIRE_")}
    out = subprocess.run([*JOBWIRE, "serve", "--port", str(free_port())], capture_output=True,
                         text=True, timeout=3 * WAIT, env=env)
    assert out.returncode == 2 and "JOBWIRE_SECRET is required" in out.stderr


@pytest.mark.parametrize("env, message", [
    ({"JOBWIRE_PORT": "eighty"}, "JOBWIRE_PORT='eighty' is not a number"),
    ({"JOBWIRE_TRANSPORTS": "carrier-pigeon"}, "JOBWIRE_TRANSPORTS"),
    ({"JOBWIRE_HEARTBEAT_SECONDS": "0"}, "JOBWIRE_HEARTBEAT_SECONDS=0.0 must be at least"),
    ({"JOBWIRE_SECRET": "short"}, "at least 32 bytes for HS256"),
    ({"JOBWIRE_WS_FAST_PATH": "maybe"}, "JOBWIRE_WS_FAST_PATH='maybe': on or off"),
])
def test_bad_settings_are_reported_clearly(env, message):
    out = run("serve", env={"JOBWIRE_SECRET": "s" * 32, **env})
    assert out.returncode == 2 and message in out.stderr


def test_publish_command_and_python_publishers(server, uid):
    env = {"JOBWIRE_URL": server.url, "JOBWIRE_TOKEN": server.token("w", "publisher")}
    out = run("publish", f"{uid}-cli", "--user", "u1", "--status", "processing",
              "--progress", "45", "--operation", "page 120/300", env=env)
    assert out.returncode == 0, out.stderr
    assert re.fullmatch(r'\{"jobId": "[^"]+", "id": "\d+-\d+", "seq": 1\}\n', out.stdout)
    out = run("publish", f"{uid}-cli", "--user", "u2", "--status", "processing", env=env)
    assert out.returncode == 1 and "409" in out.stderr

    with Publisher(server.url, server.token("w", "publisher")) as publisher:
        ack = publisher.update(f"{uid}-sync", "u1", "queued")
        assert ack["seq"] == 1
        with pytest.raises(InvalidUpdate):
            publisher.update(f"{uid}-sync", "u1", "queued", progress=200)
        with pytest.raises(Conflict):
            publisher.update(f"{uid}-sync", "u9", "processing")
        results = publisher.publish_many([{"jobId": f"{uid}-sync", "userId": "u1",
                                           "status": "completed"}])
        assert results[0]["seq"] == 2


async def test_async_publisher(server, uid):
    async with AsyncPublisher(server.url, server.token("w", "publisher")) as publisher:
        ack = await publisher.update(f"{uid}-async", "u1", "processing", 10, "start")
        assert ack["seq"] == 1


async def test_demo_serves_live_jobs_to_its_printed_users():
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        *JOBWIRE, "demo", "--port", str(port), stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL, env={**os.environ, "JOBWIRE_LOG_LEVEL": "warning"})
    try:
        assert proc.stdout is not None
        async with asyncio.timeout(3 * WAIT):  # a demo that prints nothing fails, not hangs
            lines = [(await proc.stdout.readline()).decode() for _ in range(5)]
        found = re.search(r"alice +\(user\): \S+\?token=(\S+)", "".join(lines))
        assert found, lines
        server = Server(f"http://127.0.0.1:{port}", f"ws://127.0.0.1:{port}/ws/jobs",
                        None, proc)  # type: ignore[arg-type]
        async with httpx.AsyncClient(base_url=server.url, timeout=WAIT) as http:
            async def healthy() -> bool:
                try:
                    return (await http.get("/healthz")).status_code == 200
                except httpx.TransportError:
                    return False  # printed its users, not listening yet

            await eventually(healthy, 3 * WAIT)
        client = await connect(server, found.group(1))
        await client.subscribe(all=True)
        event = (await client.recv_until(lambda m: "jobId" in m, timeout=3 * WAIT))[-1]
        assert event["userId"] == "alice" and event["jobId"].startswith("crawl-")
        await client.close()
    finally:
        proc.terminate()
        await asyncio.wait_for(proc.wait(), WAIT)
