"""Shared fixtures: real `jobwire serve` processes on free ports, and a WebSocket client
helper whose every wait is bounded."""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import websockets
from prometheus_client.parser import text_string_to_metric_families

from jobwire.auth import JwtAuth

# One scalable time unit for the few waits that need real time.
WAIT = float(os.environ.get("JOBWIRE_TEST_WAIT", "5"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    url: str
    ws_url: str
    auth: JwtAuth
    process: subprocess.Popen[bytes]
    env: dict[str, str] = field(default_factory=dict)

    @property
    def secret(self) -> str:
        return self.env["JOBWIRE_SECRET"]

    @property
    def port(self) -> int:
        return int(self.env["JOBWIRE_PORT"])

    def token(self, user: str, role: str = "user", ttl: float = 3600) -> str:
        return self.auth.mint(user, role, ttl=ttl)

    def headers(self, user: str, role: str = "user") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(user, role)}"}

    def stop(self) -> None:
        stop_process(self.process)


def stop_process(process: subprocess.Popen[Any]) -> None:
    """SIGTERM (a server drains), then kill if it has not exited in time: by its PID only."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


_started: list[Any] = []  # every process the tests start, stopped at the end whatever happens


@pytest.fixture(scope="session", autouse=True)
def _stop_leftovers() -> Iterator[None]:
    yield
    for process in _started:
        process.stop()


def start_server(*, secret: str | None = None, port: int | None = None,
                 env: dict[str, str] | None = None, stderr: Any = None,
                 **settings: Any) -> Server:
    """Start `jobwire serve` with `settings` as JOBWIRE_* variables; wait until it serves.
    Pass the `secret` and `port` of a stopped server to restart it in its place; `env`, more
    variables; `stderr`, a file for its log."""
    secret = secret or secrets.token_urlsafe(32)
    port = port or free_port()
    env = {**os.environ, "JOBWIRE_SECRET": secret, "JOBWIRE_PORT": str(port),
           "JOBWIRE_LOG_LEVEL": "warning", **(env or {})}
    env.update({f"JOBWIRE_{k.upper()}": str(v) for k, v in settings.items()})
    process = subprocess.Popen([sys.executable, "-m", "jobwire.cli", "serve"], env=env,
                               stderr=stderr)
    server = Server(f"http://127.0.0.1:{port}", f"ws://127.0.0.1:{port}/ws/jobs",
                    JwtAuth(secret=secret), process, env)
    _started.append(server)
    deadline = time.monotonic() + 3 * WAIT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"jobwire serve exited with {process.returncode}")
        try:
            if httpx.get(server.url + "/healthz", timeout=1).status_code == 200:
                return server
        except httpx.TransportError:
            time.sleep(0.05)
    server.stop()
    raise RuntimeError("jobwire serve did not become healthy")


def start_server_with_shim(shim: str, folder: Path) -> Server:
    """`start_server` with `shim` run by Python at start-up (a `sitecustomize` on PYTHONPATH,
    before jobwire loads): a fault or a missing feature put in place in the real process. Its
    log goes to `folder`/server.log."""
    (folder / "sitecustomize.py").write_text(shim)
    path = os.pathsep.join(p for p in (str(folder), os.environ.get("PYTHONPATH")) if p)
    with open(folder / "server.log", "wb") as log:
        return start_server(env={"PYTHONPATH": path}, stderr=log)


def start_server_on(ws_path: str, **settings: Any) -> Server:
    """`start_server` with its WebSockets on `ws_path`: "fast" (frames written straight to
    uvicorn's connections) or "asgi" (plain ASGI sends); /healthz must confirm it."""
    server = start_server(ws_fast_path="on" if ws_path == "fast" else "off", **settings)
    path = httpx.get(server.url + "/healthz", timeout=WAIT).json()["websocket"]
    if path != ws_path:
        server.stop()
        raise AssertionError(f"the server's WebSockets took the {path} path, not {ws_path}")
    return server


@pytest.fixture(scope="session")
def server() -> Iterator[Server]:
    """A shared server. Tests isolate themselves with unique user and job ids."""
    srv = start_server(heartbeat_seconds=30, auth_timeout_seconds=1, max_message_bytes=4096)
    yield srv
    srv.stop()


@pytest.fixture
def uid() -> str:
    """A fresh id prefix, so tests sharing a server never see each other's jobs."""
    return "t" + secrets.token_hex(4)


class Client:
    """A WebSocket client over the `websockets` library; heartbeats are skipped."""

    close_reason: str | None = None  # the server's, once expect_close has seen it

    def __init__(self, ws: websockets.ClientConnection):
        self.ws = ws

    async def send(self, message: dict[str, Any] | str | bytes) -> None:
        await self.ws.send(message if isinstance(message, str | bytes)
                           else orjson.dumps(message).decode())

    async def recv(self, timeout: float = WAIT) -> dict[str, Any]:
        while True:
            raw = await asyncio.wait_for(self.ws.recv(), timeout)
            msg = orjson.loads(raw)
            if msg.get("type") != "heartbeat":
                return msg

    async def recv_until(self, predicate: Any, timeout: float = WAIT) -> list[dict[str, Any]]:
        """Messages up to and including the first that satisfies `predicate`."""
        out: list[dict[str, Any]] = []
        async with asyncio.timeout(timeout):
            while True:
                msg = await self.recv(timeout)
                out.append(msg)
                if predicate(msg):
                    return out

    async def subscribe(self, **fields: Any) -> dict[str, Any]:
        await self.send({"type": "subscribe", **fields})
        msgs = await self.recv_until(lambda m: m["type"] == "subscribed")
        self.errors = msgs[:-1]
        return msgs[-1]

    async def expect_close(self, timeout: float = WAIT) -> int:
        async with asyncio.timeout(timeout):
            try:
                while True:
                    await self.ws.recv()
            except websockets.ConnectionClosed as exc:
                assert exc.rcvd is not None
                self.close_reason = exc.rcvd.reason
                return exc.rcvd.code
        raise AssertionError("unreachable")

    async def close(self) -> None:
        await self.ws.close()


async def connect(server: Server, token: str | None = None, *, valid: bool = True,
                  **kwargs: Any) -> Client:
    """Connect; with a `valid` token, also read the `authenticated` greeting."""
    url = server.ws_url + (f"?token={token}" if token else "")
    ws = await websockets.connect(url, open_timeout=WAIT, max_size=2**22, **kwargs)
    client = Client(ws)
    if token and valid:
        greeting = await client.recv()
        assert greeting["type"] == "authenticated", greeting
    return client


async def publish(server: Server, job_id: str, user: str, status: str = "processing",
                  expect: int = 202, **fields: Any) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=server.url, timeout=WAIT) as http:
        response = await http.post(f"/api/v2/jobs/{job_id}/status",
                                   headers=server.headers("pub", "publisher"),
                                   json={"userId": user, "status": status, **fields})
    assert response.status_code == expect, response.text
    return response.json()


async def wait_for_sessions(server: Server, transport: str, count: int,
                            timeout: float = WAIT) -> None:
    """Wait until /metrics shows `count` open sessions of `transport` (bounded)."""
    pattern = f'jobwire_connections{{transport="{transport}"}} '
    async with httpx.AsyncClient(base_url=server.url, timeout=WAIT) as http:
        async with asyncio.timeout(timeout):
            while True:
                text = (await http.get("/metrics")).text
                line = next((ln for ln in text.splitlines() if ln.startswith(pattern)), None)
                current = int(float(line.split()[-1])) if line else 0
                if current == count:
                    return
                await asyncio.sleep(0.02)


async def metric(server: Server, name: str, **labels: str) -> float:
    """One sample's value on /metrics, parsed as Prometheus text (names as exposed, such as
    `jobwire_rate_limited_total`). A missing sample is an error, never a silent zero."""
    async with httpx.AsyncClient(base_url=server.url, timeout=WAIT) as http:
        text = (await http.get("/metrics")).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return sample.value
    raise AssertionError(f"no sample {name} {labels} on /metrics")


@dataclass
class RedisServer:
    port: int
    process: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)


def start_redis(port: int | None = None, *args: str) -> RedisServer:
    """A private `redis-server` on a free port (nothing on disk), ready when it answers."""
    port = port or free_port()
    process = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", tempfile.gettempdir(), *args],
        stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 3 * WAIT
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.sendall(b"PING\r\n")
                if s.recv(64).startswith(b"+PONG"):
                    server = RedisServer(port, process)
                    _started.append(server)
                    return server
        except OSError:
            time.sleep(0.02)
    process.kill()
    raise RuntimeError("redis-server did not start")


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    server = start_redis()
    yield server
    server.stop()


async def eventually(check: Any, timeout: float = WAIT, interval: float = 0.02) -> None:
    """Wait until `check()` (sync or async) is true, bounded. For state that lives in
    another process (an HTTP answer), where there is no event to await."""
    async with asyncio.timeout(timeout):
        while True:
            result = check()
            if asyncio.iscoroutine(result):
                result = await result
            if result:
                return
            await asyncio.sleep(interval)  # polling another process: nothing to await
