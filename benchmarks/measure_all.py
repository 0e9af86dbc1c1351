#!/usr/bin/env python3
"""Run every measurement BENCHMARKS.md and the README quote, one after the other, then render
them (benchmarks/render.py).

Each run writes its result file to benchmarks/results/ and runs under `flock LOCK`, so that no
other measured run shares the CPUs with it. Old result files are left in place: delete the ones
the new runs replace before rendering (or render again after deleting them).

    .venv/bin/python benchmarks/measure_all.py [--only connections,loadtest,...] [--list]
        [--lock /tmp/jobwire-cpu.lock]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from jobwire.loadtest import results

HERE = Path(__file__).resolve().parent
PY = sys.executable
NO_CONNECT_LIMITS = {"JOBWIRE_MAX_CONNECTIONS_PER_SECOND_PER_IP": "0",
                     "JOBWIRE_MAX_CONNECTIONS_PER_SECOND_PER_USER": "0"}
LOADTEST = "loadtest"  # runs of `jobwire loadtest --spawn`: the result file path is added


def loadtest(*args: str) -> list[str]:
    return [PY, "-m", "jobwire.cli", "loadtest", "--spawn", "--processes", "2", *args]


# (what, environment, command), in the order they run
RUNS: list[tuple[str, dict[str, str], list[str]]] = [
    *[("connections", {}, [PY, str(HERE / "connections.py"), "--connections", str(n),
                           "--concurrent", str(c)])
      for n, c in ((1000, 20), (1000, 50), (1000, 100), (10000, 100))],
    (LOADTEST, NO_CONNECT_LIMITS, loadtest("--connections", "10000", "--concurrent", "100",
                                           "--updates-per-second", "1000", "--duration", "15s")),
    (LOADTEST, NO_CONNECT_LIMITS, loadtest("--connections", "1000", "--updates-per-second",
                                           "10000", "--duration", "15s")),
    *[(LOADTEST, {}, loadtest("--transport", t, "--connections", "1000",
                              "--updates-per-second", "1000", "--duration", "20s"))
      for t in ("sse", "longpoll")],
    (LOADTEST, {}, loadtest("--instances", "2", "--connections", "1000",
                            "--updates-per-second", "10000", "--duration", "20s")),
    *[(LOADTEST, {}, loadtest("--connections", "1000", "--updates-per-second", "5000",
                              "--duration", "15s", "--ws-client", c))
      for c in ("picows", "websockets")],
    ("saturation", {}, [PY, str(HERE / "saturation.py"), "--rates",
                        "2000,5000,10000,15000,20000,30000,40000,50000,60000,70000",
                        "--stop-after", "1"]),
    ("compare_peers", {}, [PY, str(HERE / "compare_peers.py"), "--modes", "memory,redis"]),
    ("cpu_profile", {}, [PY, str(HERE / "cpu_profile.py")]),
    ("browser_latency", {}, [PY, str(HERE / "browser_latency.py")]),
    ("report_overhead", {}, [PY, str(HERE / "report_overhead.py")]),
    ("celery_progress", {}, [PY, str(HERE / "celery_progress" / "run.py")]),
]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--only", help="comma-separated kinds to run (default: all), e.g. "
                                  "connections,loadtest")
    p.add_argument("--list", action="store_true", help="print the commands and exit")
    p.add_argument("--lock", default="/tmp/jobwire-cpu.lock",
                   help="run each under `flock LOCK` (default /tmp/jobwire-cpu.lock; '' none)")
    args = p.parse_args()
    only = set(args.only.split(",")) if args.only else None
    lock = ["flock", args.lock] if args.lock and shutil.which("flock") else []
    failed = []
    for what, env, cmd in RUNS:
        if only and what not in only:
            continue
        if what == LOADTEST:
            cmd = [*cmd, "--json", str(results.default_path(what))]
        shown = " ".join([*(f"{k}={v}" for k, v in env.items()), *cmd])
        if args.list:
            print(shown)
            continue
        print(f"measure_all: {time.strftime('%H:%M:%S', time.gmtime())} UTC: {shown}",
              file=sys.stderr, flush=True)
        done = subprocess.run([*lock, *cmd], env={**os.environ, **env},
                              stdout=subprocess.DEVNULL, check=False)
        if done.returncode not in (0, 1):  # 1: it ran, and found a problem its file records
            print(f"measure_all: status {done.returncode}, no result file", file=sys.stderr)
            failed.append(shown)
    if args.list:
        return 0
    rendered = subprocess.run([PY, str(HERE / "render.py")], check=False).returncode
    for shown in failed:
        print(f"measure_all: failed: {shown}", file=sys.stderr)
    return 1 if failed else rendered


if __name__ == "__main__":
    sys.exit(main())
