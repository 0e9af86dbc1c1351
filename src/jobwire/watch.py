"""`jobwire watch [JOB_ID…] [--all]`: live progress bars for jobs, until they end.

One bar per job: status, progress, ETA (the server's `etaSeconds`, counted down locally) and
the current operation. Named jobs are watched until each has ended (a job not known yet is
waited for). With `--all`, or with no JOB_ID, every job of the token's user that is running
when the watch starts, or that starts while it runs, is watched; jobs already finished are
not shown, and with none running the command waits for one to start.

Exit status: 0 all watched jobs completed, 1 any failed, 2 any cancelled (and none failed),
3 the watch itself failed (no token, token refused, a job id refused, no transport),
130 interrupted. When stdout is not a terminal a line per job is printed as it ends.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from typing import Any

TERMINAL = ("completed", "failed", "cancelled")
STYLES = {"queued": "dim", "processing": "cyan", "stalled": "magenta", "completed": "green",
          "failed": "red", "cancelled": "yellow"}


def register(sub: Any) -> None:
    """Add the `watch` subcommand to the `jobwire` parser's subparsers."""
    p = sub.add_parser("watch", help="show live progress of jobs until they end",
                       description=__doc__.split("\n\n", 1)[1],
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("job_ids", nargs="*", metavar="JOB_ID", help="jobs to watch")
    p.add_argument("--all", action="store_true",
                   help="watch every running job of yours (the default without JOB_ID)")
    p.add_argument("--url", default=os.environ.get("JOBWIRE_URL", "http://127.0.0.1:3000"),
                   help="server URL [JOBWIRE_URL, default http://127.0.0.1:3000]")
    p.add_argument("--token", help="a user or admin token [JOBWIRE_TOKEN]")
    p.add_argument("--transports", default="websocket,sse,longpoll,poll",
                   help="transports to try, in order [websocket,sse,longpoll,poll]")
    p.set_defaults(func=cmd_watch)


def cmd_watch(args: argparse.Namespace) -> int:
    from rich.console import Console

    console = Console()
    token = args.token or os.environ.get("JOBWIRE_TOKEN")
    if not token:
        console.print("jobwire watch: a token is needed: --token or JOBWIRE_TOKEN", style="red")
        return 3
    transports = [t.strip() for t in args.transports.split(",") if t.strip()]
    try:
        return asyncio.run(watch(args.url, token, args.job_ids, args.all or not args.job_ids,
                                 transports, console))
    except KeyboardInterrupt:
        return 130


def outcome(statuses: list[str], refused: bool) -> int:
    if refused:
        return 3
    if "failed" in statuses:
        return 1
    if "cancelled" in statuses:
        return 2
    return 0


async def watch(url: str, token: str, job_ids: list[str], all_jobs: bool,
                transports: list[str], console: Any) -> int:
    from .client import ClientError, JobwireClient

    board = Board(console)
    named = list(dict.fromkeys(job_ids))
    watched = set(named)
    client = JobwireClient(url, token, job_ids=None if all_jobs else named,
                           transports=transports)
    first = True
    try:
        async with client:
            with board.progress:
                async for item in client:
                    if item["type"] == "snapshot":
                        board.note(item, first)
                        for state in item["jobs"]:
                            over = state["status"] in TERMINAL and state["jobId"] not in watched
                            if all_jobs and first and over:
                                continue  # already over when the watch began: not shown
                            watched.add(state["jobId"])
                            board.update(state)
                        for job_id in client.refused:
                            board.refuse(job_id)
                        first = False
                    elif "jobId" in item:
                        watched.add(item["jobId"])
                        board.update(item)
                    if watched and all(j in board.ended or j in client.refused
                                       for j in watched):
                        break
    except ClientError as exc:
        console.print(f"jobwire watch: {exc}", style="red")
        return 3
    return outcome([board.ended[j] for j in watched if j in board.ended],
                   any(j in client.refused for j in watched))


class Board:
    """The rich progress display: one task per job."""

    def __init__(self, console: Any):
        from rich.progress import Progress

        self.console = console
        self.progress = Progress(*_columns(), console=console)
        self.tasks: dict[str, Any] = {}
        self.ended: dict[str, str] = {}  # job id -> terminal status
        self.transport: str | None = None

    def note(self, snapshot: dict[str, Any], first: bool) -> None:
        transport = snapshot["transport"]
        if first or transport != self.transport:
            verb = "watching" if first else "reconnected"
            self.progress.console.print(f"[dim]{verb} over {transport}[/dim]")
        self.transport = transport

    def update(self, state: dict[str, Any]) -> None:
        job_id, status = state["jobId"], state.get("status") or "queued"
        label = "stalled" if state.get("stalled") else status
        operation = state.get("currentOperation") or ""
        if status == "failed" and state.get("error") is not None:
            operation = f"error: {state['error']}"
        fields = {"status": f"[{STYLES.get(label, '')}]{label}[/]", "operation": operation,
                  "eta": state.get("etaSeconds"), "eta_at": time.monotonic()}
        progress = float(state.get("progress") or 0)
        if job_id not in self.tasks:
            self.tasks[job_id] = self.progress.add_task(job_id, total=100, completed=progress,
                                                        **fields)
        else:
            self.progress.update(self.tasks[job_id], completed=progress, **fields)
        if status in TERMINAL and job_id not in self.ended:
            self.ended[job_id] = status
            self.progress.stop_task(self.tasks[job_id])
            if not self.console.is_terminal:
                self.progress.console.print(f"{job_id}: {status} {progress:g}% {operation}")

    def refuse(self, job_id: str) -> None:
        if job_id not in self.ended:
            self.ended[job_id] = "refused"
            self.progress.console.print(f"{job_id}: refused (not your job)", style="red")


def _columns() -> list[Any]:
    """Job, status, bar, percentage, ETA, current operation (rich is imported only here and
    in `cmd_watch`, so other `jobwire` commands start without it)."""
    from rich.progress import BarColumn, ProgressColumn, Task, TaskProgressColumn, TextColumn
    from rich.text import Text

    class EtaColumn(ProgressColumn):
        """The server's `etaSeconds`, counted down since it arrived."""

        def render(self, task: Task) -> Text:
            eta = task.fields.get("eta")
            if eta is None or task.finished:
                return Text("ETA -:--", style="dim")
            left = max(0, round(eta - (time.monotonic() - task.fields["eta_at"])))
            return Text(f"ETA {left // 60}:{left % 60:02d}", style="progress.remaining")

    return [TextColumn("[bold]{task.description}"), TextColumn("{task.fields[status]}"),
            BarColumn(), TaskProgressColumn(), EtaColumn(),
            TextColumn("{task.fields[operation]}")]
