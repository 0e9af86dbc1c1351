#!/usr/bin/env python3
"""The load process of the celery-progress comparison: N watching users, each of whom starts
one crawl (a Celery task) and watches it until it ends, as a browser tab would.

- `--system celery-progress`: each user polls `/celery-progress/<task_id>/` as
  `CeleryProgressBar` does (celery_progress.js): a request, then, if the answer is not
  `complete`, a pause of the poll interval before the next; one keep-alive connection per
  user (httpx).
- `--system jobwire --transport ws|sse`: each user opens one WebSocket (in-band `auth`, then
  `subscribe` to the task id, as jobwire.js does) or one SSE stream (`?jobIds=`), with a token
  of its own, and keeps it open after the job ended, as a page does, until every watcher has
  seen its job end; then all close.

Every report of the task carries the time it was made ("fetching page i/N sent <time>" in
celery-progress's `description` and in jobwire's `currentOperation`); a watcher notes, for
each page, the delay from that time to the first answer or event that shows it, and for the
end the delay from the task's `finishedAt` to seeing it complete. Each user's page opens at a
random moment within one poll interval of sending its task (the same for both systems); the
CPU of the processes named by `--pid NAME=PID` (and their children) is read from /proc just
before the first task is sent and just after the last watcher is done (its connection
closed). Prints one JSON object; run by run.py, which starts the servers, the worker and
Redis."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import resource
import sys
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson
import websockets

from jobwire.auth import JwtAuth
from jobwire.loadtest.procs import cpu_seconds

SENT = re.compile(r"fetching page (\d+)/\d+ sent ([\d.]+)")
EVENTS = ("status_update", "job_completed", "job_stalled")
ENDED = ("completed", "failed", "cancelled")


@dataclass
class Watcher:
    user: str
    task_id: str
    token: str = ""
    requests: int = 0  # HTTP requests made to the server that serves the watchers
    started: float = 0.0
    ended: float = 0.0
    delays: dict[int, float] = field(default_factory=dict)  # page → seconds, first sight
    completion: float | None = None  # seconds from the task's end to seeing it
    outcome: str | None = None
    errors: list[str] = field(default_factory=list)

    def saw(self, text: Any, now: float) -> None:
        m = SENT.search(text) if isinstance(text, str) else None
        if m and int(m[1]) not in self.delays:
            self.delays[int(m[1])] = now - float(m[2])

    def finished(self, outcome: str, result: Any, now: float) -> None:
        self.outcome = outcome
        if isinstance(result, dict) and isinstance(result.get("finishedAt"), int | float):
            self.completion = now - result["finishedAt"]

    def summary(self) -> dict[str, Any]:
        return {"user": self.user, "taskId": self.task_id, "requests": self.requests,
                "watchSeconds": self.ended - self.started,
                "delays": {str(k): v for k, v in sorted(self.delays.items())},
                "completion": self.completion, "outcome": self.outcome, "errors": self.errors}


# --- the watchers -------------------------------------------------------------------------

async def poll_celery_progress(w: Watcher, base: str, interval: float) -> None:
    """CeleryProgressBar.connect(): fetch, hand the answer to onData, and unless it said
    `complete`, setTimeout(connect, pollInterval). An HTTP error stops it, as in the JS."""
    async with httpx.AsyncClient(base_url=base, timeout=60) as http:
        while True:
            resp = await http.get(f"/celery-progress/{w.task_id}/")
            now = time.time()
            w.requests += 1
            if resp.status_code != 200:
                w.errors.append(f"HTTP {resp.status_code}")
                return
            data = resp.json()
            w.saw((data.get("progress") or {}).get("description"), now)
            if data.get("complete") is True and data.get("state") != "RETRY":
                w.finished("completed" if data.get("success") else str(data.get("state")),
                           data.get("result"), now)
                return
            await asyncio.sleep(interval)


def on_message(w: Watcher, msg: dict[str, Any], now: float) -> bool:
    """One jobwire message; True once the job has ended."""
    kind = msg.get("type")
    if kind == "error":
        w.errors.append(f"{msg.get('code')}: {msg.get('message')}")
    jobs = msg.get("jobs", []) if kind == "subscribed" else [msg] if kind in EVENTS else []
    for job in jobs:
        if job.get("jobId") != w.task_id:
            continue
        w.saw(job.get("currentOperation"), now)
        if job.get("status") in ENDED:
            w.finished(job["status"], job.get("result"), now)
            return True
    return False


class Everyone:
    """Counts the watchers that have seen their job end. A jobwire page keeps its connection
    after a job ends (jobwire.js does not close it: the page may start another), so jobwire
    watchers hold theirs until every watcher is done and close together, within the measured
    window. (Closing each one the moment its job ended delays the events of the others still
    watching, which is not what pages do.)"""

    def __init__(self, watchers: int):
        self.left = watchers
        self.done = asyncio.Event()

    def end(self, w: Watcher) -> None:
        if not w.ended:  # once per watcher, whichever way it ended
            w.ended = time.time()
            self.left -= 1
            if self.left == 0:
                self.done.set()


async def watch_jobwire_ws(w: Watcher, base: str, everyone: Everyone) -> None:
    url = base.replace("http://", "ws://", 1) + "/ws/jobs"
    async with websockets.connect(url, max_size=None) as ws:
        w.requests += 1  # the upgrade; nothing more is asked for
        await ws.send(orjson.dumps({"type": "auth", "token": w.token}).decode())
        await ws.send(orjson.dumps({"type": "subscribe", "jobIds": [w.task_id]}).decode())
        async for raw in ws:
            if on_message(w, orjson.loads(raw), time.time()):
                everyone.end(w)
                await everyone.done.wait()
                return


async def watch_jobwire_sse(w: Watcher, base: str, everyone: Everyone) -> None:
    async with httpx.AsyncClient(base_url=base, timeout=httpx.Timeout(60, read=None)) as http, \
            http.stream("GET", "/api/v2/jobs/stream", params={"jobIds": w.task_id},
                        headers={"Authorization": f"Bearer {w.token}"}) as resp:
        w.requests += 1
        if resp.status_code != 200:
            w.errors.append(f"HTTP {resp.status_code}")
            return
        async for line in resp.aiter_lines():
            if line.startswith("data:") and on_message(w, orjson.loads(line[5:]), time.time()):
                everyone.end(w)
                await everyone.done.wait()
                return


async def watch(w: Watcher, args: argparse.Namespace, opens_after: float,
                everyone: Everyone) -> None:
    # The page opens a moment after the task is sent. Were every user to start at once, the
    # phase between polls and reports would be the same for all of them, and the polling
    # delays would measure that one phase rather than the spread real page loads give.
    await asyncio.sleep(opens_after)
    w.started = time.time()
    try:
        if args.system == "celery-progress":
            await poll_celery_progress(w, args.url, args.poll_interval)
        elif args.transport == "ws":
            await watch_jobwire_ws(w, args.url, everyone)
        else:
            await watch_jobwire_sse(w, args.url, everyone)
    except Exception as exc:  # one user's failure is recorded, the others go on
        w.errors.append(f"{type(exc).__name__}: {exc}")
    finally:
        everyone.end(w)  # polling stops at the end, as CeleryProgressBar does; or it failed


# --- CPU of the measured processes --------------------------------------------------------

def children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", "rb") as fh:
                    ppid = int(fh.read().rsplit(b")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            tree.setdefault(ppid, []).append(int(entry))
    return tree


def tree_cpu(pid: int) -> float:
    """CPU seconds of a process and its descendants (a worker pool's children, say)."""
    tree, todo, total = children(), [pid], 0.0
    while todo:
        p = todo.pop()
        used = cpu_seconds(p)
        total += 0.0 if used != used else used  # NaN: it has just exited
        todo.extend(tree.get(p, []))
    return total


def own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# --- the run ------------------------------------------------------------------------------

def sender(args: argparse.Namespace) -> Any:
    """The app's side: the Celery app, as a Django view would send the task."""
    import django

    django.setup()
    from benchsite.celery import app

    def send(w: Watcher) -> None:
        kwargs: dict[str, Any] = {"steps": args.steps, "interval": args.interval,
                                  "reporter": "celery_progress"
                                  if args.system == "celery-progress" else "jobwire"}
        if args.system == "jobwire":
            kwargs["user_id"] = w.user  # the job's owner: only this user may watch it
        app.send_task("crawler.crawl", kwargs=kwargs, task_id=w.task_id)

    return send


async def run(args: argparse.Namespace) -> dict[str, Any]:
    run_id = uuid.uuid4().hex[:8]
    watchers = [Watcher(f"user-{run_id}-{i}", str(uuid.uuid4())) for i in range(args.users)]
    if args.system == "jobwire":
        auth = JwtAuth(secret=os.environ["JOBWIRE_SECRET"])
        for w in watchers:  # the app hands each signed-in user a token of their own
            w.token = auth.mint(w.user, "user", ttl=3600)
    send = sender(args)
    pids = dict(item.split("=", 1) for item in args.pid)
    before = {name: tree_cpu(int(pid)) for name, pid in pids.items()}
    own_before, start = own_cpu(), time.time()
    running = []
    everyone = Everyone(len(watchers))
    phases = random.Random(args.users)  # the same openings for the same number of users
    for w in watchers:
        # Sent one after the other from a thread while earlier users already watch, as
        # requests to start a crawl would arrive.
        await asyncio.to_thread(send, w)
        running.append(asyncio.create_task(
            watch(w, args, phases.uniform(0, args.poll_interval), everyone)))
    _, pending = await asyncio.wait(running, timeout=args.timeout)
    for task in pending:
        task.cancel()
    end = time.time()
    after = {name: tree_cpu(int(pid)) for name, pid in pids.items()}
    return {"windowSeconds": end - start, "timedOut": len(pending),
            "cpuSeconds": {name: after[name] - before[name] for name in pids},
            "loadCpuSeconds": own_cpu() - own_before,
            "watchers": [w.summary() for w in watchers]}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--system", choices=("celery-progress", "jobwire"), required=True)
    p.add_argument("--transport", choices=("poll", "ws", "sse"), default="poll")
    p.add_argument("--url", required=True, help="the server the watchers talk to")
    p.add_argument("--users", type=int, required=True)
    p.add_argument("--steps", type=int, required=True)
    p.add_argument("--interval", type=float, required=True)
    p.add_argument("--poll-interval", type=float, default=0.5)
    p.add_argument("--timeout", type=float, required=True, help="seconds for all to end")
    p.add_argument("--pid", action="append", default=[], metavar="NAME=PID",
                   help="a process whose CPU to measure over the run (repeatable)")
    args = p.parse_args()
    print(json.dumps(asyncio.run(run(args))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
