"""Processes: a private `jobwire serve` (or several sharing a private redis-server) started for
`--spawn`, and CPU and memory of any local process read from /proc."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO
from urllib.parse import urlsplit

import httpx

START_TIMEOUT = 20.0  # server start-up (healthz answering 200)
STOP_TIMEOUT = 10.0  # server shutdown after SIGTERM, before SIGKILL
CLK_TCK = os.sysconf("SC_CLK_TCK")


def free_ports(n: int) -> list[int]:
    """n distinct free ports (all held at once while they are picked)."""
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
                 for _ in range(n)]
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]


def jobwire_command() -> list[str]:
    exe = Path(sys.executable).parent / "jobwire"
    if exe.exists():
        return [str(exe)]
    found = shutil.which("jobwire")
    if found:
        return [found]
    return [sys.executable, "-m", "jobwire.cli"]


@dataclass
class Proc:
    """A process we started (a `jobwire serve` instance or redis-server), with its output."""

    name: str
    url: str
    proc: subprocess.Popen[bytes]
    log: BinaryIO

    @property
    def pid(self) -> int:
        return self.proc.pid


@dataclass
class Cluster:
    """The jobwire instances started and, with more than one, the Redis they share."""

    servers: list[Proc] = field(default_factory=list)
    redis: Proc | None = None

    @property
    def procs(self) -> list[Proc]:
        return [*self.servers, *([self.redis] if self.redis else [])]

    def stop(self) -> None:
        for p in self.procs:  # the instances first, then the Redis they use
            stop_process(p.proc)

    def logs(self, everything: bool = False) -> tuple[int, str]:
        """Error-looking lines over the processes' logs, and the last lines: of the one
        process, or, labelled, of each that logged errors (of each, with `everything`)."""
        tails = [(p.name, *log_tail(p.log)) for p in self.procs]
        errors = sum(e for _, e, _ in tails)
        if len(tails) == 1:
            return errors, tails[0][2]
        return errors, "\n".join(f"[{name}]\n{tail}" for name, e, tail in tails
                                 if tail and (e or everything))


def _spawn(command: list[str], log: BinaryIO, env: dict[str, str] | None = None
           ) -> subprocess.Popen[bytes]:
    return subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL, stdout=log,
                            stderr=subprocess.STDOUT)


def start_server(port: int, secret: str, log: BinaryIO, redis_url: str | None = None
                 ) -> subprocess.Popen[bytes]:
    env = {**os.environ, "JOBWIRE_SECRET": secret, "JOBWIRE_HOST": "127.0.0.1",
           "JOBWIRE_JWT_ALGORITHM": "HS256",
           "JOBWIRE_LOG_LEVEL": os.environ.get("JOBWIRE_LOG_LEVEL", "warning")}
    if redis_url:
        env["JOBWIRE_REDIS_URL"] = redis_url
    return _spawn([*jobwire_command(), "serve", "--port", str(port)], log, env)


def start_redis(port: int, workdir: str, log: BinaryIO) -> subprocess.Popen[bytes]:
    """A private redis-server: loopback only, nothing saved (its dir is a temporary one)."""
    return _spawn(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                   "--appendonly", "no", "--dir", workdir], log)


def wait_ready(name: str, proc: subprocess.Popen[bytes], probe: Callable[[], bool],
               what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited with status {proc.returncode} at start-up")
        if probe():
            return
        time.sleep(0.05)
    raise RuntimeError(f"{name} did not {what} within {timeout:.0f} s")


def wait_healthy(name: str, url: str, proc: subprocess.Popen[bytes], timeout: float) -> None:
    """Until `url` (/healthz, or /readyz once a Redis broker is subscribed) answers 200."""
    with httpx.Client(timeout=1.0) as client:
        def probe() -> bool:
            with contextlib.suppress(httpx.HTTPError):
                return client.get(url).status_code == 200
            return False

        wait_ready(name, proc, probe, f"answer {urlsplit(url).path} with 200", timeout)


def wait_redis(port: int, proc: subprocess.Popen[bytes], timeout: float) -> None:
    def probe() -> bool:
        with contextlib.suppress(OSError), \
                socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            s.sendall(b"PING\r\n")
            return s.recv(64).startswith(b"+PONG")
        return False

    wait_ready("redis-server", proc, probe, "answer PING", timeout)


def start_cluster(cluster: Cluster, instances: int, secret: str,
                  stack: contextlib.ExitStack) -> None:
    """Into `cluster`: one jobwire instance with the in-process broker, or `instances` of them
    sharing a private redis-server. Every process is stopped when `stack` closes (or by
    Cluster.stop); their logs stay readable until then, even if one failed to start."""
    stack.callback(cluster.stop)

    def new_log() -> BinaryIO:
        return stack.enter_context(tempfile.TemporaryFile())

    if instances > 1 and not shutil.which("redis-server"):
        raise RuntimeError("more than one instance needs redis-server on the PATH")
    ports = free_ports(instances + (instances > 1))
    redis_url = None
    if instances > 1:
        port = ports.pop()
        redis_url = f"redis://127.0.0.1:{port}/0"
        workdir = stack.enter_context(tempfile.TemporaryDirectory(prefix="jobwire-redis-"))
        log = new_log()
        cluster.redis = Proc("redis-server", redis_url, start_redis(port, workdir, log), log)
        wait_redis(port, cluster.redis.proc, START_TIMEOUT)
    for i, port in enumerate(ports):  # start them all, then wait for each
        log = new_log()
        name = "server" if instances == 1 else f"instance {i}"
        proc = start_server(port, secret, log, redis_url)
        cluster.servers.append(Proc(name, f"http://127.0.0.1:{port}", proc, log))
    for s in cluster.servers:
        wait_healthy(s.name, s.url + ("/readyz" if redis_url else "/healthz"), s.proc,
                     START_TIMEOUT)


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    """Stop a process we started, by its PID: SIGTERM, then SIGKILL if it lingers."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(STOP_TIMEOUT)


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, from /proc/<pid>/stat (NaN once it is gone)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            fields = fh.read().rsplit(b")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # fields 14 and 15 of stat(5)


def rss_mib(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status", "rb") as fh:
            for line in fh:
                if line.startswith(b"VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def log_tail(log: BinaryIO, lines: int = 30) -> tuple[int, str]:
    """(number of error-looking lines, the last `lines` lines) of a process's output."""
    log.flush()
    log.seek(0)
    text = log.read().decode(errors="replace").splitlines()
    errors = sum(1 for ln in text if "Traceback" in ln or "ERROR" in ln or "CRITICAL" in ln)
    return errors, "\n".join(text[-lines:])
