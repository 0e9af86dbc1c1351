"""A WebSocket reader that stops reading, on both paths (frames written straight to uvicorn's
connections, and plain ASGI sends): its progress is shed, then it is cut off, and the
server's memory stays bounded however much is published for it."""

from __future__ import annotations

import asyncio
import base64
import secrets
import socket
import time
from collections.abc import Iterator

import httpx
import orjson
import pytest
from websockets.frames import Frame, Opcode
from websockets.streams import StreamReader

from tests.conftest import WAIT, Server, connect, metric, start_server_on, wait_for_sessions
from tests.integration.test_slow_consumer import rss_kib

MAX_OUTBOX = 64
OPERATION = "x" * 1000  # the longest currentOperation is 1024 characters
PROGRESS_JOBS = 4
# Each publish below the outbox's size, so that a reader keeping up is never shed.
BATCH = 48
PROGRESS_BATCHES = 400  # of progress updates of about 1.1 KiB: 22 MB in all, far more than
# the socket buffers on both ends hold (the server's grows to 4 MiB)
NEW_JOB_BATCHES = 4  # small new jobs, never shed: what finally overflows the outbox
RSS_GROWTH_BOUND_KIB = 8 * 1024  # 8 MiB, against 22 MB published for the stalled reader
RECEIVE_BUFFER = 4096  # the stalled reader's SO_RCVBUF: a window of a few KiB


@pytest.fixture(scope="module", params=["fast", "asgi"])
def ws_path(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture(scope="module")
def server(ws_path: str) -> Iterator[Server]:
    srv = start_server_on(ws_path, max_outbox=MAX_OUTBOX, max_updates_per_job_per_second=0,
                          max_publishes_per_second=0, history_size=16, global_history_size=16)
    yield srv
    srv.stop()


def stalled_reader(server: Server, user: str) -> socket.socket:
    """A raw TCP client with a tiny receive buffer that completes the handshake, subscribes
    to all of `user`'s jobs, reads up to the `subscribed` answer and then nothing more."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)  # before connect:
    sock.settimeout(WAIT)  # the window scale is agreed in the handshake
    sock.connect(("127.0.0.1", server.port))
    key = base64.b64encode(secrets.token_bytes(16)).decode()
    sock.sendall((f"GET /ws/jobs?token={server.token(user)} HTTP/1.1\r\n"
                  f"Host: 127.0.0.1:{server.port}\r\nUpgrade: websocket\r\n"
                  f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                  "Sec-WebSocket-Version: 13\r\n\r\n").encode())
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(1)  # byte by byte: not a byte of the frames after it
    assert head.startswith(b"HTTP/1.1 101"), head
    subscribe = orjson.dumps({"type": "subscribe", "all": True})
    sock.sendall(Frame(Opcode.TEXT, subscribe).serialize(mask=True))
    stream = StreamReader()
    while True:
        stream.feed_data(sock.recv(4096))
        parser = Frame.parse(stream.read_exact, mask=False)
        while True:
            try:
                next(parser)
                break  # more to read
            except StopIteration as parsed:
                frame = parsed.value
                if orjson.loads(frame.data).get("type") == "subscribed":
                    return sock
                parser = Frame.parse(stream.read_exact, mask=False)


def read_until_eof(sock: socket.socket, timeout: float) -> int:
    """Read what is left until the server's end is closed; how many bytes that was."""
    received, deadline = 0, time.monotonic() + timeout
    while time.monotonic() < deadline:
        chunk = sock.recv(1 << 16)
        if not chunk:
            return received
        received += len(chunk)
    raise AssertionError(f"still open after {timeout} s and {received} bytes")


TCP_STATES = {"01": "ESTABLISHED", "04": "FIN_WAIT1", "05": "FIN_WAIT2", "07": "CLOSE"}


def tcp_state(local_port: int, remote_port: int) -> str:
    """The kernel's state of the IPv4 TCP socket between the two local ports (absent: gone)."""
    with open("/proc/net/tcp") as fh:
        for line in fh.readlines()[1:]:
            local, remote, state = line.split()[1:4]
            if (int(local.split(":")[1], 16), int(remote.split(":")[1], 16)) == (
                    local_port, remote_port):
                return TCP_STATES.get(state, state)
    return "gone"


async def test_a_reader_that_stops_reading_is_shed_then_cut_off_in_bounded_memory(
        server, ws_path, uid):
    stalled_user, other_user = f"{uid}-stalled", f"{uid}-other"
    other = await connect(server, server.token(other_user))
    await other.subscribe(all=True)
    sock = stalled_reader(server, stalled_user)
    await wait_for_sessions(server, "websocket", 2)
    shed_before = await metric(server, "jobwire_events_shed_total")
    slow_before = await metric(server, "jobwire_slow_disconnects_total")
    rss_before = rss_kib(server.process.pid)

    async with httpx.AsyncClient(base_url=server.url, timeout=WAIT) as http:
        headers = server.headers("pub", "publisher")
        # Progress of a few jobs, conflation off: once the stalled reader's buffers are
        # full, only the latest of each job is worth sending, the rest is shed.
        for b in range(PROGRESS_BATCHES):
            batch = [{"jobId": f"{uid}-p{n % PROGRESS_JOBS}", "userId": stalled_user,
                      "status": "processing", "progress": n / (PROGRESS_BATCHES * BATCH) * 100,
                      "currentOperation": OPERATION}
                     for n in range(b * BATCH, (b + 1) * BATCH)]
            r = await http.post("/api/v2/jobs/status", json=batch, headers=headers)
            assert r.status_code == 202, r.text
        # New jobs are never shed: the outbox overflows, and the reader is too slow.
        for b in range(NEW_JOB_BATCHES):
            batch = [{"jobId": f"{uid}-n{b}-{i}", "userId": stalled_user, "status": "queued"}
                     for i in range(BATCH)]
            r = await http.post("/api/v2/jobs/status", json=batch, headers=headers)
            assert r.status_code == 202, r.text
        # The others are served all along: one event behind all of that.
        r = await http.post(f"/api/v2/jobs/{uid}-o/status", headers=headers,
                            json={"userId": other_user, "status": "queued"})
        assert r.status_code == 202, r.text
        (event,) = await other.recv_until(lambda m: "jobId" in m, timeout=3 * WAIT)
        assert event["jobId"] == f"{uid}-o"

    # Shed, then cut off: its session is gone (the close frame could not get out, so after
    # the close grace the connection is cut), and only it.
    await wait_for_sessions(server, "websocket", 1, timeout=3 * WAIT)
    assert await metric(server, "jobwire_events_shed_total") > shed_before
    assert await metric(server, "jobwire_slow_disconnects_total") == slow_before + 1
    grown = rss_kib(server.process.pid) - rss_before
    # The fast path aborted the connection: the server's end is closed already, the kernel
    # sends what it holds and then its FIN. Plain ASGI cannot abort: the server closes once
    # the peer has read what it buffered (at most its high-water mark).
    server_end = tcp_state(server.port, sock.getsockname()[1])
    assert server_end == ("FIN_WAIT1" if ws_path == "fast" else "ESTABLISHED")
    started = time.monotonic()
    left = await asyncio.to_thread(read_until_eof, sock, WAIT)
    sock.close()
    print(f"{ws_path}: server RSS grew {grown} KiB; the stalled reader got {left} more bytes "
          f"and then EOF in {time.monotonic() - started:.2f} s")
    assert grown < RSS_GROWTH_BOUND_KIB
    assert left < 8 * 1024 * 1024  # what the buffers held, not what was published
    await other.close()
