"""`jobwire serve --workers N`: N processes on one port sharing a private redis-server, under a
supervisor that restarts a dead worker and drains them all on SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import WAIT, connect, eventually, free_port, publish, start_redis, start_server

CLIENTS = 24


def workers_of(pid: int) -> list[int]:
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [int(c) for c in children]


def sockets_of(pid: int) -> int:
    fds = Path(f"/proc/{pid}/fd")
    count = 0
    for fd in fds.iterdir():
        try:
            count += os.readlink(fd).startswith("socket:")
        except OSError:
            pass  # closed while listed
    return count


def listening(pid: int, port: int) -> bool:
    """Whether `pid` holds a socket listening on `port` (/proc/net/tcp lists the listening
    sockets of the machine by inode; the process's fds name the inodes it holds)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(f"socket:[{fields[9]}]")
    fds = Path(f"/proc/{pid}/fd")
    held = set()
    for fd in fds.iterdir():
        try:
            held.add(os.readlink(fd))
        except OSError:
            pass  # closed while listed
    return bool(inodes & held)


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


@pytest.fixture
def redis():
    server = start_redis()
    yield server
    server.stop()


async def test_workers_share_the_port_and_every_event_reaches_every_client(redis, uid):
    server = start_server(workers=2, redis_url=redis.url)
    try:
        pids = workers_of(server.process.pid)
        assert len(pids) == 2
        await eventually(lambda: all(listening(pid, server.port) for pid in pids))
        before = {pid: sockets_of(pid) for pid in pids}
        user = f"{uid}-u"
        clients = [await connect(server, server.token(user)) for _ in range(CLIENTS)]
        for client in clients:
            await client.subscribe(all=True)
        # The kernel spread the connections: both workers hold some of them.
        assert all(sockets_of(pid) > before[pid] for pid in pids)
        for n in range(5):  # each publish lands on either worker
            await publish(server, f"{uid}-j{n}", user, "queued")
        for client in clients:
            events = await client.recv_until(
                lambda m: m.get("jobId") == f"{uid}-j4")
            assert sorted(e["jobId"] for e in events if "jobId" in e) == [
                f"{uid}-j{n}" for n in range(5)]
            await client.close()
    finally:
        server.stop()


async def test_a_dead_worker_is_replaced(redis, uid):
    server = start_server(workers=2, redis_url=redis.url)
    try:
        victim, survivor = workers_of(server.process.pid)
        os.kill(victim, signal.SIGKILL)
        await eventually(lambda: len(workers_of(server.process.pid)) == 2
                         and victim not in workers_of(server.process.pid), timeout=3 * WAIT)
        assert survivor in workers_of(server.process.pid)
        await eventually(lambda: all(listening(p, server.port)
                                     for p in workers_of(server.process.pid)))
        user = f"{uid}-u"
        client = await connect(server, server.token(user))
        await client.subscribe(all=True)
        await publish(server, f"{uid}-j", user, "queued")
        (event,) = await client.recv_until(lambda m: m.get("jobId") == f"{uid}-j")
        assert event["type"] == "status_update"
        await client.close()
    finally:
        server.stop()


async def test_sigterm_drains_every_worker(redis, uid):
    server = start_server(workers=2, redis_url=redis.url)
    pids = workers_of(server.process.pid)
    await eventually(lambda: all(listening(pid, server.port) for pid in pids))
    clients = [await connect(server, server.token(f"{uid}-{i}")) for i in range(8)]
    server.process.send_signal(signal.SIGTERM)
    for client in clients:
        assert await client.expect_close() == 1012  # server restarting
    assert await asyncio.to_thread(server.process.wait, WAIT) == 0
    assert all(gone(pid) for pid in pids)  # stopped, and reaped by the supervisor


@pytest.mark.parametrize(("workers", "env", "complaint"), [
    ("2", {}, "JOBWIRE_REDIS_URL"),
    ("2", {"JOBWIRE_REDIS_URL": "redis://127.0.0.1:1/0", "JOBWIRE_PORT": "0"},
     "fixed JOBWIRE_PORT"),
    ("0", {"JOBWIRE_REDIS_URL": "redis://127.0.0.1:1/0"}, "must be at least 1"),
    ("two", {"JOBWIRE_REDIS_URL": "redis://127.0.0.1:1/0"}, "invalid int value"),
])
def test_bad_worker_settings_are_refused(workers, env, complaint):
    result = subprocess.run(
        [sys.executable, "-m", "jobwire.cli", "serve", "--workers", workers],
        env={**os.environ, "JOBWIRE_SECRET": "s" * 32, "JOBWIRE_PORT": str(free_port()),
             **env},
        capture_output=True, text=True, timeout=WAIT)
    assert result.returncode == 2
    assert complaint in result.stderr

