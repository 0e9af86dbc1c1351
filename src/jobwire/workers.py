"""`jobwire serve` with JOBWIRE_WORKERS above 1: that many server processes on one port, to use
every core. Each worker binds the port with SO_REUSEPORT (the kernel spreads new connections
over them) and they share the Redis broker, as separate instances would. This process only
supervises: it restarts a worker that dies, and passes SIGTERM or SIGINT on, so that every
worker drains."""

from __future__ import annotations

import dataclasses
import logging
import os
import signal
import socket
import subprocess
import sys
import time

from .config import Settings, env_name

log = logging.getLogger("jobwire.workers")

WORKER_VARIABLE = "JOBWIRE_WORKER_INDEX"  # set for each worker: its number, from 0
RESTART_DELAY_SECONDS = 1.0  # before restarting a worker that died (not a crash loop)
POLL_SECONDS = 0.2
STOP_MARGIN_SECONDS = 5.0  # past the shutdown timeout, before a worker is killed


def worker_index() -> int | None:
    """This process's worker number, when it was started as one."""
    value = os.environ.get(WORKER_VARIABLE)
    return int(value) if value is not None and value.isdigit() else None


def shared_socket(host: str, port: int) -> socket.socket:
    """The listening socket of one worker: the same address as its siblings'."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    return sock


def worker_environment(settings: Settings, index: int) -> dict[str, str]:
    """The environment of worker `index`: every setting as resolved here (flags included),
    as one server process."""
    env = dict(os.environ)
    for f in dataclasses.fields(Settings):
        value = getattr(settings, f.name)
        if value is not None:
            env[env_name(f.name)] = str(value)
    env[env_name("workers")] = "1"
    env[WORKER_VARIABLE] = str(index)
    return env


class Supervisor:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.workers: dict[int, subprocess.Popen[bytes]] = {}
        self.stopping = False

    def start(self, index: int) -> None:
        command = [sys.executable, "-m", "jobwire.cli", "serve"]
        self.workers[index] = subprocess.Popen(
            command, env=worker_environment(self.settings, index), stdin=subprocess.DEVNULL)
        log.info("worker started", extra={"worker": index, "pid": self.workers[index].pid})

    def stop(self, signum: int, _frame: object = None) -> None:
        self.stopping = True
        for proc in self.workers.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM if signum == signal.SIGTERM else signum)

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self.stop)
        signal.signal(signal.SIGINT, self.stop)
        for index in range(self.settings.workers):
            self.start(index)
        died: dict[int, float] = {}  # worker -> when its restart is due
        while not self.stopping:
            time.sleep(POLL_SECONDS)  # a supervisor's idle loop: nothing else to await
            now = time.monotonic()
            for index, proc in list(self.workers.items()):
                if proc.poll() is not None and index not in died and not self.stopping:
                    log.warning("worker exited; restarting it",
                                extra={"worker": index, "status": proc.returncode})
                    died[index] = now + RESTART_DELAY_SECONDS
            for index, due in list(died.items()):
                if now >= due and not self.stopping:
                    del died[index]
                    self.start(index)
        return self.wait_all()

    def wait_all(self) -> int:
        deadline = time.monotonic() + self.settings.shutdown_timeout_seconds + STOP_MARGIN_SECONDS
        status = 0
        for index, proc in self.workers.items():
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("worker did not stop in time; killed", extra={"worker": index})
                proc.kill()
                proc.wait()
                status = 1
        return status
