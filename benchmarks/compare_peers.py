"""Side by side: jobwire, python-socketio and Node socket.io on the same WebSocket workloads.

    .venv/bin/python benchmarks/compare_peers.py [--loads batch10] [--clients 1000]
        [--rates 10000,2000] [--duration 15] [--modes memory,redis]
        [--servers jobwire,node,python] [--workers 50] [--idle-clients 5000]
        [--idle-seconds 20] [--idle-rate 1000] [--settle 1] [--json] [--out PATH]
    .venv/bin/python benchmarks/compare_peers.py --setup-only

Setup (quick when nothing changed), only for the servers asked for: `npm ci` into
benchmarks/peers/node_modules (socket.io 4.8, @socket.io/redis-adapter and
@socket.io/redis-emitter, from package-lock.json) and a venv at benchmarks/peers/.venv with
python-socketio 5.x, uvicorn[standard] and redis from PyPI.

The same for every server: N clients over plain WebSocket, each its own user, and R updates/s
in total for D seconds, spread over jobs (>= 5 per user, <= 2 updates/s per job, so that
jobwire's progress conflation never applies). jobwire: `/ws/jobs` + `subscribe all:true`.
Peers (benchmarks/peers/socketio_server.{js,py}): Engine.IO v4 over WebSocket, `subscribe` to
the user's room; every item is the event object jobwire would send, so every client receives
messages of the same size and shape. The loads (--loads, run in that order):

- batch10: an HTTP batch every 10 ms, one request in flight (jobwire `POST
  /api/v2/jobs/status`, the peers `POST /publish` [{room, data}]).
- batch1: a batch every 1 ms, up to 8 requests in flight on 8 connections, so every batch
  holds 1 ms of updates whatever the server's answer time.
- single: one update per request from --workers keep-alive connections, one request in flight
  each (jobwire `POST /api/v2/jobs/{jobId}/status`, the peers a one-item `/publish`).
- direct (--modes redis only): the generator writes into Redis in a batch every 10 ms and the
  server only fans out: jobwire's Redis broker commits (as `jobwire.reporter.RedisPublisher`
  does), the peers get Socket.IO's emitter (benchmarks/peers/emitter.{js,py}, on the
  generator's core).
- idle: --idle-clients connections, first nothing published for --idle-seconds (the server's
  CPU per connection-second), then --idle-rate updates/s in 10-ms batches (--rates unused).

Every server gets a fresh process per run, pinned to core 0; the generator (this process) and
Redis (--modes redis: a private redis-server per run) are pinned to core 1. Measured per run:
delivered/expected (per-job seq: gaps, duplicates), publish-to-receipt latency, server CPU over
the publish window and the drain (/proc/<pid>/stat), CPU per delivered message, Redis CPU per
delivered message, RSS idle and per connected idle client, and connect time (WebSocket open to
subscription acknowledged) while ramping N connections --concurrent at a time. Every run's
figures, the verdicts (jobwire against Node socket.io, and python-socketio on batch10), the
peers' versions and the machine go to the result file (--out, default
benchmarks/results/compare_peers-<UTC time>.json).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from compare.publishers import LOADS
from compare.report import table, verdicts
from compare.runs import run_one
from compare.servers import CAN_PIN, LOADGEN_CORE, SERVER_CORE, SERVERS, setup_peers

from jobwire.loadtest import results


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--loads", default="batch10",
                   help=f"comma-separated, run in that order: {', '.join(LOADS)}")
    p.add_argument("--clients", type=int, default=1000, help="connections, one user each")
    p.add_argument("--rates", default="10000,2000", help="updates/s in total, comma-separated")
    p.add_argument("--duration", type=float, default=15.0, help="seconds of publishing")
    p.add_argument("--drain", type=float, default=10.0,
                   help="seconds to wait for late messages after the last publish")
    p.add_argument("--concurrent", type=int, default=200,
                   help="connection attempts in flight while ramping up")
    p.add_argument("--modes", default="memory", help="memory, redis, or memory,redis")
    p.add_argument("--servers", default="jobwire,node,python",
                   help="which of jobwire, node, python, in run order")
    p.add_argument("--workers", type=int, default=50,
                   help="single: publishing connections, one request in flight each")
    p.add_argument("--idle-clients", type=int, default=5000, help="idle: connections")
    p.add_argument("--idle-seconds", type=float, default=20.0,
                   help="idle: seconds with nothing published")
    p.add_argument("--idle-rate", type=float, default=1000.0,
                   help="idle: updates/s published after the idle part")
    p.add_argument("--settle", type=float, default=1.0,
                   help="seconds for RSS and CPU to settle after the start and the ramp")
    p.add_argument("--profile", action="store_true",
                   help="sample jobwire's server with py-spy over the first 5 s of publishing "
                        "(its CPU figures then include the sampling's cost: a run of its own)")
    p.add_argument("--setup-only", action="store_true", help="install the peers and exit")
    p.add_argument("--json", action="store_true", help="print the result file's JSON object")
    results.add_out_option(p)
    args = p.parse_args()
    args.loads = args.loads.split(",")
    args.rates = [float(r) for r in args.rates.split(",")]
    args.modes = args.modes.split(",")
    args.servers = args.servers.split(",")
    bad = ([x for x in args.loads if x not in LOADS]
           + [m for m in args.modes if m not in ("memory", "redis")]
           + [s for s in args.servers if s not in SERVERS])
    if bad:
        p.error(f"unknown load, mode or server: {', '.join(bad)}")
    return args


def plan(args: argparse.Namespace) -> tuple[list[tuple[str, str, float]], list[str]]:
    """(load, mode, rate) in run order, and what is left out, with why."""
    points, skipped = [], []
    for load in args.loads:
        for mode in args.modes:
            if load == "direct" and mode != "redis":
                skipped.append(f"direct, {mode}: skipped, publishing straight into Redis "
                               "needs --modes redis")
                continue
            for rate in [args.idle_rate] if load == "idle" else args.rates:
                points.append((load, mode, rate))
    return points, skipped


def main() -> int:
    args = parse_args()
    versions = setup_peers(args.servers)
    if args.setup_only:
        print(json.dumps(versions, indent=2))
        return 0
    if CAN_PIN:
        os.sched_setaffinity(0, {LOADGEN_CORE})
    run = results.Run("compare_peers", {k: v for k, v in vars(args).items()
                                        if k not in ("json", "out", "setup_only")})
    if "node" in versions:
        run.machine["node"] = versions["node"]
    run.machine["peers"] = versions
    points, skipped = plan(args)
    measured = [run_one(load, SERVERS[name], mode, rate, args)
                for load, mode, rate in points
                for name in args.servers]  # the servers back to back at each point
    lines = verdicts(measured)
    figures: dict[str, Any] = {"pinned": CAN_PIN, "runs": measured, "verdicts": lines,
                               "skipped": skipped}
    run.save(figures, args.out)
    if args.json:
        print(json.dumps(run.record(figures), indent=2))
        return 0
    print_summary(args, versions, run.source, measured, lines + skipped)
    return 0


def print_summary(args: argparse.Namespace, versions: dict[str, str], source: dict[str, Any],
                  measured: list[dict[str, Any]], lines: list[str]) -> None:
    print(f"{args.clients} clients ({args.idle_clients} idle), {args.duration:g} s per run; "
          f"servers pinned to core {SERVER_CORE}, generator and Redis to core {LOADGEN_CORE}"
          if CAN_PIN else "not pinned (fewer than 2 cores or no taskset)")
    print("versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()))
    changed = source.get("srcChanged")
    print(f"jobwire: commit {source['commit']}" + (
        f" + uncommitted changes to {len(changed)} files under src/ (diff sha256 "
        f"{source['srcDiffSha256']}): {', '.join(changed)}" if changed else ""))
    print()
    print(table(measured))
    print()
    for line in lines:
        print(line)


if __name__ == "__main__":
    sys.exit(main())
