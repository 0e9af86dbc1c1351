"""The servers under test and their Redis: installing the peers from their registries, and
starting every process pinned to its core, stopped by its PID when the run ends."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jobwire.loadtest import procs

PEERS = Path(__file__).resolve().parents[1] / "peers"
PEER_VENV = PEERS / ".venv"
PEER_PYTHON = PEER_VENV / "bin" / "python"
SERVER_CORE, LOADGEN_CORE = 0, 1
SECRET = secrets.token_urlsafe(48)
CAN_PIN = (os.cpu_count() or 1) >= 2 and shutil.which("taskset") is not None


# --- setup: the peers, from their registries ---------------------------------------------

def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def run_step(cmd: list[str], cwd: Path) -> None:
    print(f"setup: {' '.join(cmd)}", file=sys.stderr)
    subprocess.run(cmd, cwd=cwd, check=True, stdout=sys.stderr)


def setup_node() -> dict[str, str]:
    """`npm ci` when the lock changed (a stamp file remembers its digest); the versions."""
    stamp = PEERS / "node_modules" / ".compare-peers-stamp"
    lock = digest(PEERS / "package-lock.json")
    if not stamp.exists() or stamp.read_text() != lock:
        run_step(["npm", "ci", "--no-audit", "--no-fund"], PEERS)
        stamp.write_text(lock)
    out = {"node": subprocess.run(["node", "--version"], capture_output=True,
                                  text=True).stdout.strip()}
    for pkg in ("socket.io", "@socket.io/redis-adapter", "@socket.io/redis-emitter", "redis"):
        meta = json.loads((PEERS / "node_modules" / pkg / "package.json").read_text())
        out[f"npm:{pkg}"] = meta["version"]
    return out


def setup_python() -> dict[str, str]:
    """The peers' venv, installed when requirements.txt changed; the versions."""
    stamp = PEER_VENV / ".compare-peers-stamp"
    reqs = digest(PEERS / "requirements.txt")
    if not stamp.exists() or stamp.read_text() != reqs:
        if not PEER_PYTHON.exists():
            run_step([sys.executable, "-m", "venv", str(PEER_VENV)], PEERS)
        run_step([str(PEER_VENV / "bin" / "pip"), "install", "-q", "-r", "requirements.txt"],
                 PEERS)
        stamp.write_text(reqs)
    code = ("import importlib.metadata as m, json; print(json.dumps({p: m.version(p) for p in "
            "('python-socketio', 'python-engineio', 'uvicorn', 'uvloop', 'websockets', "
            "'redis')}))")
    found = subprocess.run([str(PEER_PYTHON), "-c", code], capture_output=True, text=True,
                           check=True).stdout
    return {f"pypi:{k}": v for k, v in json.loads(found).items()}


def setup_peers(servers: list[str]) -> dict[str, str]:
    """Install only the peers these runs start (a run without python needs no venv)."""
    versions: dict[str, str] = {}
    if "node" in servers:
        versions.update(setup_node())
    if "python" in servers:
        versions.update(setup_python())
    return versions


# --- the servers --------------------------------------------------------------------------

@dataclass
class Server:
    """One server under test: how to start it, connect to it and publish to it."""

    name: str  # jobwire, node, python
    label: str

    def command(self, port: int, redis_url: str | None) -> tuple[list[str], dict[str, str]]:
        env = dict(os.environ)
        if self.name in ("node", "python"):
            cmd = (["node", str(PEERS / "socketio_server.js")] if self.name == "node"
                   else [str(PEER_PYTHON), str(PEERS / "socketio_server.py")])
            cmd += ["--port", str(port)]
            return cmd + (["--redis", redis_url] if redis_url else []), env
        env.update({  # the whole load comes from one address and one publisher: no limits
            "JOBWIRE_SECRET": SECRET, "JOBWIRE_JWT_ALGORITHM": "HS256",
            "JOBWIRE_HOST": "127.0.0.1", "JOBWIRE_LOG_LEVEL": "warning",
            "JOBWIRE_MAX_CONNECTIONS_PER_SECOND_PER_IP": "0",
            "JOBWIRE_MAX_CONNECTIONS_PER_SECOND_PER_USER": "0",
            "JOBWIRE_MAX_PUBLISHES_PER_SECOND": "0"})
        env.pop("JOBWIRE_REDIS_URL", None)
        if redis_url:
            env["JOBWIRE_REDIS_URL"] = redis_url
        return [*procs.jobwire_command(), "serve", "--port", str(port)], env

    def ready_path(self, redis_url: str | None) -> str:
        return "/readyz" if self.name == "jobwire" and redis_url else "/healthz"


SERVERS = {"jobwire": Server("jobwire", "jobwire"),
           "node": Server("node", "Node socket.io"),
           "python": Server("python", "python-socketio")}


def pinned(core: int, cmd: list[str]) -> list[str]:
    """taskset execs the command, so the PID we hold is the process's own."""
    return ["taskset", "-c", str(core), *cmd] if CAN_PIN else cmd


@dataclass
class Running:
    proc: subprocess.Popen[bytes]
    log: Any
    url: str


def start(cmd: list[str], env: dict[str, str] | None, core: int,
          stack: contextlib.ExitStack) -> Running:
    log = stack.enter_context(tempfile.TemporaryFile())
    proc = subprocess.Popen(pinned(core, cmd), env=env, stdin=subprocess.DEVNULL, stdout=log,
                            stderr=subprocess.STDOUT)
    stack.callback(procs.stop_process, proc)  # by its PID, SIGTERM then SIGKILL
    return Running(proc, log, "")


def start_redis(stack: contextlib.ExitStack) -> tuple[Running, str]:
    (port,) = procs.free_ports(1)
    workdir = stack.enter_context(tempfile.TemporaryDirectory(prefix="compare-peers-redis-"))
    cmd = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
           "--appendonly", "no", "--dir", workdir]
    r = start(cmd, None, LOADGEN_CORE, stack)
    procs.wait_redis(port, r.proc, procs.START_TIMEOUT)
    return r, f"redis://127.0.0.1:{port}/0"


def start_server(server: Server, redis_url: str | None, stack: contextlib.ExitStack) -> Running:
    (port,) = procs.free_ports(1)
    cmd, env = server.command(port, redis_url)
    r = start(cmd, env, SERVER_CORE, stack)
    r.url = f"http://127.0.0.1:{port}"
    try:
        procs.wait_healthy(server.label, r.url + server.ready_path(redis_url), r.proc,
                           procs.START_TIMEOUT)
    except RuntimeError as exc:
        raise RuntimeError(f"{exc}\n{procs.log_tail(r.log)[1]}") from None
    return r
