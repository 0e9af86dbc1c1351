#!/usr/bin/env python3
"""Run the whole example on this machine: a private redis-server, `jobwire serve` on it, a
small generated web site to crawl, a Celery worker, and a few crawls for user `alice`.
Prints the dashboard link; Ctrl+C stops everything (each process by its PID).

    .venv/bin/python examples/celery_crawler/run.py [--port 3000] [--jobs 3] [--pages 60]
                                                    [--delay 0.15] [--once]

`--once` exits when every crawl has ended (exit status 0 if all completed).
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


def wait_until(check, what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except (OSError, httpx.HTTPError):
            pass
        time.sleep(0.1)
    raise SystemExit(f"{what} did not start")


def make_site(root: Path, pages: int) -> None:
    """A site of `pages` pages, each linking to the next few (and one dead link)."""
    for i in range(1, pages + 1):
        links = "".join(f'<a href="/page-{j}.html">page {j}</a> '
                        for j in range(i + 1, min(pages, i + 3) + 1))
        if i == pages // 2:
            links += '<a href="/missing.html">broken</a>'
        (root / f"page-{i}.html").write_text(f"<html><body><h1>Page {i}</h1>{links}"
                                             "</body></html>")
    (root / "index.html").write_text('<a href="/page-1.html">start</a>')


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=3000, help="jobwire's port")
    parser.add_argument("--jobs", type=int, default=3, help="crawls to start")
    parser.add_argument("--pages", type=int, default=60, help="pages of the generated site")
    parser.add_argument("--delay", type=float, default=0.15, help="seconds between pages")
    parser.add_argument("--once", action="store_true", help="exit when the crawls have ended")
    args = parser.parse_args()

    secret = secrets.token_urlsafe(32)
    redis_port, site_port = free_port(), free_port()
    redis_url = f"redis://127.0.0.1:{redis_port}/0"
    site = Path(tempfile.mkdtemp(prefix="jobwire-site-"))
    make_site(site, args.pages)
    env = {**os.environ, "JOBWIRE_SECRET": secret, "JOBWIRE_REDIS_URL": redis_url,
           "JOBWIRE_PORT": str(args.port), "CELERY_BROKER_URL": redis_url,
           "JOBWIRE_LOG_LEVEL": "warning"}
    procs: list[subprocess.Popen[bytes]] = []
    try:
        procs.append(subprocess.Popen(
            ["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no"], stdout=subprocess.DEVNULL))
        wait_until(lambda: socket.create_connection(("127.0.0.1", redis_port), 1).close()
                   or True, "redis-server")
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "http.server", str(site_port), "--bind", "127.0.0.1",
             "--directory", str(site)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        procs.append(subprocess.Popen([sys.executable, "-m", "jobwire.cli", "serve"], env=env))
        base = f"http://127.0.0.1:{args.port}"
        wait_until(lambda: httpx.get(f"{base}/readyz", timeout=1).status_code == 200,
                   "jobwire serve")
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "tasks", "worker", "--pool=solo",
             "--without-gossip", "--without-mingle", "-l", "warning"], cwd=HERE, env=env))

        from jobwire.auth import JwtAuth

        auth = JwtAuth(secret=secret)
        print(f"\n  alice's dashboard: {base}/?token={auth.mint('alice', 'user', ttl=86400)}")
        print(f"  admin's dashboard: {base}/?token={auth.mint('admin', 'admin', ttl=86400)}\n")

        os.environ.update(env)  # this process sends the tasks and publishes `queued`
        sys.path.insert(0, str(HERE))
        import tasks

        start = f"http://127.0.0.1:{site_port}/"
        sent = [tasks.crawl.delay(start, max_pages=args.pages, delay=args.delay,
                                  user_id="alice") for _ in range(args.jobs)]
        print("  started crawls:", ", ".join(r.id for r in sent), flush=True)
        if not args.once:
            print("  Ctrl+C to stop.", flush=True)
            try:
                signal.pause()  # until Ctrl+C (SIGINT) or SIGTERM
            except KeyboardInterrupt:
                pass
            return 0
        headers = {"Authorization": f"Bearer {auth.mint('alice', 'user')}"}
        deadline = time.monotonic() + args.jobs * (args.pages * (args.delay + 0.05) + 10)
        while time.monotonic() < deadline:
            states = [httpx.get(f"{base}/api/v2/jobs/{r.id}", headers=headers).json()
                      for r in sent]
            if all(s.get("type") == "job_completed" for s in states):
                for s in states:
                    print(f"  {s['jobId']}: {s['status']} {s.get('result') or s.get('error')}")
                return 0 if all(s["status"] == "completed" for s in states) else 1
            time.sleep(0.5)  # polling the example's own API while waiting, then exit
        print("  the crawls did not end in time")
        return 1
    finally:
        for proc in reversed(procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(5)
        shutil.rmtree(site, ignore_errors=True)


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # stop cleanly on SIGTERM too
    sys.exit(main())
