#!/usr/bin/env python3
"""Run the Django example: a private redis-server (Celery's broker and jobwire's Redis), a
Celery worker, a fresh SQLite database with the demo users alice and bob, and uvicorn serving
Django with jobwire at /realtime/. Ctrl+C (or SIGTERM) stops everything, each by its PID.

    .venv/bin/python examples/django_celery/run.py [--port 8000] [--redis-url URL]
                                                   [--pages 20] [--delay 0.3] [--data DIR]

The secrets are made up for the run unless DJANGO_SECRET_KEY / JOBWIRE_SECRET are set.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(check, what: str, procs: list[subprocess.Popen[bytes]],
               timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(p.poll() is not None for p in procs):
            raise SystemExit(f"a process exited while waiting for {what}")
        try:
            if check():
                return
        except (OSError, httpx.HTTPError):
            pass
        time.sleep(0.1)  # another process starting: nothing to await but its port
    raise SystemExit(f"{what} did not start within {timeout:.0f} s")


def stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in reversed(procs):
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=8000, help="the site's port")
    parser.add_argument("--redis-url", help="use this Redis instead of a private redis-server")
    parser.add_argument("--pages", type=int, default=20, help="pages per crawl")
    parser.add_argument("--delay", type=float, default=0.3, help="seconds per page")
    parser.add_argument("--data", type=Path,
                        help="keep the database in this folder (default: a temporary one)")
    args = parser.parse_args()

    data = args.data or Path(tempfile.mkdtemp(prefix="jobwire-django-"))
    procs: list[subprocess.Popen[bytes]] = []
    try:
        redis_url = args.redis_url
        if redis_url is None:
            redis_port = free_port()
            redis_url = f"redis://127.0.0.1:{redis_port}/0"
            procs.append(subprocess.Popen(
                ["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "",
                 "--appendonly", "no", "--dir", str(data)], stdout=subprocess.DEVNULL))
            wait_until(lambda: socket.create_connection(("127.0.0.1", redis_port), 1).close()
                       or True, "redis-server", procs)
        env = {"DJANGO_SECRET_KEY": secrets.token_urlsafe(40),
               "JOBWIRE_SECRET": secrets.token_urlsafe(32), "JOBWIRE_LOG_LEVEL": "warning",
               **os.environ, "DJANGO_SETTINGS_MODULE": "project.settings",
               "DJANGO_DB": str(data / "db.sqlite3"), "REDIS_URL": redis_url,
               "CRAWL_PAGES": str(args.pages), "CRAWL_DELAY": str(args.delay)}
        python = sys.executable
        # The worker needs no database: it starts while the database is set up.
        procs.append(subprocess.Popen(
            [python, "-m", "celery", "-A", "project", "worker", "--pool=solo",
             "--without-gossip", "--without-mingle", "--without-heartbeat", "-l", "warning"],
            cwd=HERE, env=env))
        subprocess.run([python, "manage.py", "demo_setup"], cwd=HERE, env=env, check=True,
                       stdout=subprocess.DEVNULL)
        procs.append(subprocess.Popen(
            [python, "-m", "uvicorn", "project.asgi:application", "--host", "127.0.0.1",
             "--port", str(args.port), "--lifespan", "on", "--log-level", "warning"],
            cwd=HERE, env=env))
        base = f"http://127.0.0.1:{args.port}"
        wait_until(lambda: httpx.get(f"{base}/realtime/readyz", timeout=1).status_code == 200,
                   "the site", procs)
        print(f"\n  Open {base}/ and sign in as alice / alice-jobwire or bob / bob-jobwire."
              "\n  Ctrl+C to stop.\n", flush=True)
        while all(p.poll() is None for p in procs):
            time.sleep(0.5)  # until Ctrl+C / SIGTERM, or a process dies
        print("  a process exited: stopping", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        stop(procs)
        if args.data is None:
            shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # stop cleanly on SIGTERM too
    sys.exit(main())
