#!/usr/bin/env python3
"""End-to-end WebSocket, SSE or long-polling latency benchmark for jobwire.

A thin wrapper over `jobwire loadtest --spawn` (the package `jobwire.loadtest` does the work):
it starts its own `jobwire serve` on a free port (random secret, in-process broker), connects
N clients (one new user each, following all its jobs with its own user token), publishes
R updates/s for D seconds over `POST /api/v2/jobs/status` batches, and measures for every
delivered event: receive wall time - the event's `timestamp` (the wall time its batch was
sent). Prints a human summary, or one JSON object with `--json`, and writes the result file
(jobwire.loadtest.results: command, commit, machine, times, options and every figure) to
--out, by default benchmarks/results/ws_latency-<UTC time>.json.

`--transport` picks the clients' kind: `websocket` (default; `subscribe` `all: true`), `sse`
(one stream each, without `jobIds`), `longpoll`, `poll` (regular polling) or `mixed`.

With `--instances N` above 1, it starts a private redis-server (loopback, free port, nothing
saved) and N instances sharing it: client i connects to instance i % N, and every job is
published through one instance ((N-1)/N of the events cross instances). Server CPU and RSS are
reported per instance, with the redis-server's beside them.

Workload: updates are spread over the users with several jobs each, so that every job gets at
most ~2 updates/s, under the server's default progress conflation limit (10 per job per
second); each job's last update is `completed`. Publishing is paced by an absolute schedule
(a batch every 10 ms); overdue batches go out merged, so the rate stays on target.

    .venv/bin/python benchmarks/ws_latency.py [--clients 100] [--rate 1000] [--duration 10]
                                               [--instances 1] [--processes 1] [--json]
                                               [--out PATH]
                                               [--transport websocket|sse|longpoll|poll|mixed]

Exit status: 0 when every expected event arrived and nothing was refused, 1 otherwise,
2 when a server (or redis-server) could not be started.
"""

from __future__ import annotations

import argparse
import shutil
import sys

from jobwire.loadtest import main as loadtest_main
from jobwire.loadtest import results
from jobwire.loadtest.options import CHOICES, Options, validate

NAME = "ws_latency"


def parse_args(argv: list[str] | None) -> Options:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--clients", type=int, default=100, help="clients (default 100)")
    p.add_argument("--rate", type=float, default=1000, help="updates/s (default 1000)")
    p.add_argument("--duration", type=float, default=10, help="seconds (default 10)")
    p.add_argument("--instances", type=int, default=1,
                   help="jobwire instances; above 1 they share a private redis-server "
                        "(default 1: one instance, in-process broker)")
    p.add_argument("--transport", choices=["websocket", *CHOICES], default="websocket",
                   help="the clients' transport (default websocket)")
    p.add_argument("--processes", type=int, default=1,
                   help="the load generator's reader processes (default 1: in the process "
                        "that publishes; see `jobwire loadtest --processes`)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    results.add_out_option(p)
    args = p.parse_args(argv)
    if args.instances > 1 and not shutil.which("redis-server"):
        p.error("--instances above 1 needs redis-server on the PATH")
    o = Options(spawn=True, instances=args.instances, connections=args.clients,
                rate=args.rate, duration=args.duration, json=args.json,
                transport="ws" if args.transport == "websocket" else args.transport,
                concurrent=max(1, args.clients), progress=sys.stderr.isatty(),
                processes=args.processes, title="latency benchmark",
                json_path=args.out or str(results.default_path(NAME)))
    problems = validate(o)
    if problems:
        p.error("; ".join(problems))
    return o


def main(argv: list[str] | None = None) -> int:
    return loadtest_main(parse_args(argv), NAME)


if __name__ == "__main__":
    sys.exit(main())
