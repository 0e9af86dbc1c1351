#!/usr/bin/env python3
"""Side by side: celery-progress and jobwire watching the same Celery task.

For each system and each number of watching users N, everything starts afresh: a private
redis-server (Celery's broker on db 0, its result backend on db 1, and jobwire's shared Redis),
a Celery worker (`--pool=threads -c N`, so the N crawls run together) with the Django project
in this folder, and the server the watchers talk to:

- celery-progress: Django 5.2 with `celery_progress.urls`, served by uvicorn (one process,
  uvloop and httptools, Django's ASGI handler; gunicorn is not installed here); the task
  reports with `ProgressRecorder(self).set_progress(...)` into the Redis result backend and the
  watchers poll `/celery-progress/<task_id>/` at celery_progress.js's default `pollInterval`
  (read from the installed package's static file);
- jobwire: the task reports with `jobwire.integrations.celery.report_progress(...)`, the
  worker publishing straight into Redis, and the watchers connect to `jobwire serve` (one
  process, `JOBWIRE_REDIS_URL` on the same Redis) over WebSocket or SSE, one token per user.

The server is pinned to core 0 and everything else (Redis, the worker, the load process,
watchers.py) to core 1, when there are two cores and taskset. Per watching user it reports the
HTTP requests per minute made to the server, the server's CPU (every process of it, from
/proc/<pid>/stat) per minute, and the delay from the task's progress call to the user seeing
it (p50 / p95 / max), with Redis's and the worker's CPU beside them. Writes the result file
(benchmarks/results/celery_progress-<UTC time>.json, or --out) and prints a table.

    .venv/bin/python benchmarks/celery_progress/run.py [--users 50,200]
        [--systems celery-progress,jobwire-ws,jobwire-sse] [--steps 20] [--interval 1.0]
        [--poll-interval SECONDS] [--out PATH]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import httpx

from jobwire.loadtest import procs, results

HERE = Path(__file__).resolve().parent

PY = sys.executable
SERVER_CORE, OTHER_CORE = 0, 1
CAN_PIN = (os.cpu_count() or 1) >= 2 and shutil.which("taskset") is not None
# system → (the package's reporting, the watchers' transport)
SYSTEMS = {"celery-progress": ("celery-progress", "poll"), "jobwire-ws": ("jobwire", "ws"),
           "jobwire-sse": ("jobwire", "sse")}
POLL_DEFAULT = re.compile(r"this\.pollInterval\s*=\s*options\.pollInterval\s*\|\|\s*(\d+)")


def poll_interval_default() -> tuple[float, str]:
    """celery_progress.js's default pollInterval (ms → s), and where it was read."""
    import celery_progress

    js = Path(celery_progress.__file__).parent / "static" / "celery_progress" / \
        "celery_progress.js"
    for number, line in enumerate(js.read_text().splitlines(), 1):
        m = POLL_DEFAULT.search(line)
        if m:
            return int(m[1]) / 1000, f"celery_progress/static/celery_progress/" \
                                     f"celery_progress.js:{number}: {line.strip()}"
    raise SystemExit(f"no default pollInterval found in {js}")


def versions() -> dict[str, str | None]:
    out = results.library_versions(("django", "celery", "celery-progress", "kombu",
                                    "redis", "uvicorn", "websockets", "httpx"))
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        text = subprocess.run(["redis-server", "--version"], capture_output=True, text=True,
                              timeout=10, check=False).stdout
        m = re.search(r"v=(\S+)", text)
        out["redis-server"] = m[1] if m else None
    return out


def pinned(core: int, cmd: list[str]) -> list[str]:
    """taskset execs the command, so the PID we hold is the program's own."""
    return ["taskset", "-c", str(core), *cmd] if CAN_PIN else cmd


def start(cmd: list[str], core: int, stack: contextlib.ExitStack,
          env: dict[str, str] | None = None) -> tuple[subprocess.Popen[bytes], Any]:
    log = stack.enter_context(tempfile.TemporaryFile())
    proc = subprocess.Popen(pinned(core, cmd), env=env, cwd=HERE, stdin=subprocess.DEVNULL,
                            stdout=log, stderr=subprocess.STDOUT)
    stack.callback(procs.stop_process, proc)  # by its PID: SIGTERM, then SIGKILL
    return proc, log


def wait_for_worker(broker: str, proc: subprocess.Popen[bytes], log: Any) -> None:
    """Until the worker answers a remote-control ping (it then consumes the queue)."""
    from celery import Celery

    app = Celery(broker=broker)
    try:
        try:
            procs.wait_ready("celery worker", proc, lambda: bool(app.control.ping(timeout=0.5)),
                             "answer a ping", procs.START_TIMEOUT)
        except RuntimeError as exc:
            raise RuntimeError(f"{exc}\n{procs.log_tail(log)[1]}") from None
    finally:
        app.close()


def percentiles(values: list[float]) -> dict[str, float | None]:
    """p50 / p95 / max in milliseconds (nearest rank), and how many."""
    if not values:
        return {"p50": None, "p95": None, "max": None, "count": 0}
    ms = sorted(v * 1000 for v in values)

    def rank(q: float) -> float:
        return round(ms[max(0, math.ceil(q * len(ms)) - 1)], 1)

    return {"p50": rank(0.50), "p95": rank(0.95), "max": round(ms[-1], 1), "count": len(ms)}


def summarize(system: str, users: int, args: argparse.Namespace,
              load: dict[str, Any]) -> dict[str, Any]:
    watchers = load["watchers"]
    minutes = sum(w["watchSeconds"] for w in watchers) / 60  # user-minutes of watching
    cpu = load["cpuSeconds"]
    delays = [d for w in watchers for d in w["delays"].values()]
    completions = [w["completion"] for w in watchers if w["completion"] is not None]
    errors = [f"{w['user']}: {e}" for w in watchers for e in w["errors"]]
    # Which reports went unseen, by whom: to tell a polling gap from a lost event.
    missed = [f"{w['user']} page {step}" for w in watchers for step in range(1, args.steps + 1)
              if str(step) not in w["delays"]]

    def per_user_minute(seconds: float) -> float | None:
        return round(seconds * 1000 / minutes, 2) if minutes else None

    return {
        "system": system, "package": SYSTEMS[system][0], "transport": SYSTEMS[system][1],
        "users": users, "windowSeconds": round(load["windowSeconds"], 2),
        "watchMinutes": round(minutes, 3),
        "httpRequests": sum(w["requests"] for w in watchers),
        "requestsPerUserMinute": round(sum(w["requests"] for w in watchers) / minutes, 2)
        if minutes else None,
        "serverCpuSeconds": round(cpu["server"], 3),
        "serverCpuMsPerUserMinute": per_user_minute(cpu["server"]),
        "serverCpuPercent": round(100 * cpu["server"] / load["windowSeconds"], 1),
        "redisCpuSeconds": round(cpu["redis"], 3),
        "redisCpuMsPerUserMinute": per_user_minute(cpu["redis"]),
        "workerCpuSeconds": round(cpu["worker"], 3),
        "loadCpuPercent": round(100 * load["loadCpuSeconds"] / load["windowSeconds"], 1),
        "reportsSent": users * args.steps, "reportsSeen": len(delays),
        "usersWithEveryReport": sum(1 for w in watchers if len(w["delays"]) == args.steps),
        "completed": sum(1 for w in watchers if w["outcome"] == "completed"),
        "delayMs": percentiles(delays), "completionDelayMs": percentiles(completions),
        "timedOut": load["timedOut"], "errors": errors[:20], "errorCount": len(errors),
        "missed": missed[:40],
    }


def run_one(system: str, users: int, args: argparse.Namespace) -> dict[str, Any]:
    package, transport = SYSTEMS[system]
    with contextlib.ExitStack() as stack:
        redis_port, server_port = procs.free_ports(2)
        workdir = stack.enter_context(tempfile.TemporaryDirectory(prefix="celery-progress-"))
        redis, _ = start(["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1",
                          "--save", "", "--appendonly", "no", "--dir", workdir], OTHER_CORE,
                         stack)
        procs.wait_redis(redis_port, redis, procs.START_TIMEOUT)
        redis_url = f"redis://127.0.0.1:{redis_port}"
        env = {**os.environ, "DJANGO_SETTINGS_MODULE": "benchsite.settings",
               "PYTHONPATH": os.pathsep.join(filter(None, (str(HERE),
                                                            os.environ.get("PYTHONPATH")))),
               "CELERY_BROKER_URL": f"{redis_url}/0", "CELERY_RESULT_BACKEND": f"{redis_url}/1",
               "JOBWIRE_LOG_LEVEL": "warning"}
        if package == "jobwire":
            env.update(JOBWIRE_REDIS_URL=f"{redis_url}/0", JOBWIRE_SECRET=secrets.token_urlsafe(32))
        worker, worker_log = start(
            [PY, "-m", "celery", "-A", "benchsite", "worker", "--pool=threads", "-c", str(users),
             "--without-gossip", "--without-mingle", "--without-heartbeat", "-l", "warning"],
            OTHER_CORE, stack, env)
        wait_for_worker(f"{redis_url}/0", worker, worker_log)

        url = f"http://127.0.0.1:{server_port}"
        if package == "celery-progress":
            server, log = start([PY, "-m", "uvicorn", "benchsite.asgi:application", "--host",
                                 "127.0.0.1", "--port", str(server_port), "--loop", "uvloop",
                                 "--http", "httptools", "--no-access-log", "--log-level",
                                 "warning"], SERVER_CORE, stack, env)
            ready = f"{url}/celery-progress/warm-up/"
        else:
            server, log = start([*procs.jobwire_command(), "serve", "--host", "127.0.0.1",
                                 "--port", str(server_port)], SERVER_CORE, stack, env)
            ready = f"{url}/readyz"
        try:
            procs.wait_healthy(system, ready, server, procs.START_TIMEOUT)
        except RuntimeError as exc:
            raise RuntimeError(f"{exc}\n{procs.log_tail(log)[1]}") from None
        with httpx.Client(timeout=5) as http:  # first requests import and warm code paths
            for _ in range(20):
                http.get(ready)

        timeout = (args.steps + 1) * args.interval + 60
        cmd = [PY, str(HERE / "watchers.py"), "--system", package, "--transport", transport,
               "--url", url, "--users", str(users), "--steps", str(args.steps),
               "--interval", str(args.interval), "--poll-interval", str(args.poll_interval),
               "--timeout", str(timeout), "--pid", f"server={server.pid}",
               "--pid", f"redis={redis.pid}", "--pid", f"worker={worker.pid}"]
        print(f"celery_progress: {system}, {users} users ...", file=sys.stderr, flush=True)
        done = subprocess.run(pinned(OTHER_CORE, cmd), env=env, cwd=HERE, capture_output=True,
                              text=True, timeout=timeout + 60, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"watchers.py failed ({done.returncode}):\n{done.stderr[-3000:]}")
        load = json.loads(done.stdout)
        problems = procs.log_tail(worker_log)[0] + procs.log_tail(log)[0]
    row = summarize(system, users, args, load)
    row["logErrors"] = problems  # error-looking lines in the worker's and server's output
    return row


def table(rows: list[dict[str, Any]]) -> str:
    def trio(d: dict[str, Any]) -> str:
        return " / ".join("-" if d[k] is None else f"{d[k]:g}" for k in ("p50", "p95", "max"))

    lines = [f"{'system':<16}{'users':>6}{'req/user/min':>14}{'CPU ms/user/min':>17}"
             f"{'Redis ms/user/min':>19}{'seen/sent':>12}  delay p50/p95/max ms"]
    for r in rows:
        lines.append(f"{r['system']:<16}{r['users']:>6}{r['requestsPerUserMinute']:>14}"
                     f"{r['serverCpuMsPerUserMinute']:>17}{r['redisCpuMsPerUserMinute']:>19}"
                     f"{r['reportsSeen']:>6}/{r['reportsSent']:<5}  {trio(r['delayMs'])}")
    return "\n".join(lines)


def main() -> int:
    default_poll, poll_source = poll_interval_default()
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--users", default="50,200", help="comma-separated numbers of watchers")
    p.add_argument("--systems", default=",".join(SYSTEMS),
                   help=f"comma-separated, in run order: {', '.join(SYSTEMS)}")
    p.add_argument("--steps", type=int, default=20, help="progress reports per task")
    p.add_argument("--interval", type=float, default=1.0, help="seconds between reports")
    p.add_argument("--poll-interval", type=float, default=default_poll,
                   help=f"celery-progress's polling pause (default {default_poll:g} s, "
                        "celery_progress.js's default)")
    p.add_argument("--json", action="store_true", help="print the result file's JSON object")
    results.add_out_option(p)
    args = p.parse_args()
    users = [int(u) for u in args.users.split(",")]
    systems = args.systems.split(",")
    unknown = [s for s in systems if s not in SYSTEMS]
    if unknown:
        p.error(f"unknown system: {', '.join(unknown)}")
    run = results.Run("celery_progress", {
        "users": users, "systems": systems, "steps": args.steps, "interval": args.interval,
        "pollInterval": args.poll_interval, "pollIntervalDefault": default_poll,
        "pollIntervalSource": poll_source, "pinned": CAN_PIN,
        "server": {"celery-progress": "Django (ASGI) on uvicorn, one process",
                   "jobwire": "jobwire serve, one process"},
        "worker": "celery worker --pool=threads, concurrency = users"})
    rows = [run_one(system, n, args) for n in users for system in systems]
    figures = {"versions": versions(), "runs": rows}
    run.save(figures, args.out)
    if args.json:
        print(json.dumps(run.record(figures), indent=2))
    else:
        print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
