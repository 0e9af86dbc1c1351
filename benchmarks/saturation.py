#!/usr/bin/env python3
"""Saturation curve: 1,000 WebSocket clients at rising update rates, one private server each.

For every rate it runs `jobwire loadtest --spawn --connections 1000 --updates-per-second R
--duration D --processes P --json` (a fresh server per rate, in-process broker unless
--instances is above 1), then prints one table row per rate: rate wanted and achieved,
events delivered/expected, latency p50/p99 (publish to receipt), the server's CPU (% of a
core, and µs per delivered event, publish included) and the load generator's CPU (all its
processes, and the busiest one); and at the end the highest rate with p99 under --p99-limit
and nothing lost. The result file (--out, by default benchmarks/results/saturation-<UTC
time>.json) holds the rows and, for every rate, the whole result file its loadtest wrote.

    .venv/bin/python benchmarks/saturation.py [--rates 2000,5000,10000,15000,20000,30000]
        [--clients 1000] [--duration 15] [--processes 2] [--transport ws] [--instances 1]
        [--p99-limit 500] [--stop-after 2] [--lock /tmp/jobwire-cpu.lock] [--json]
        [--out PATH]

With --lock FILE every run is wrapped in `flock FILE`, so that no other measured run shares the
CPUs with it (and others can take their turn between two rates). --stop-after N stops after N
rates in a row that miss the limit (0: run them all).

Exit status: 0 when some rate met the limit, 1 when none did, 2 when a run could not start.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import orjson

from jobwire.loadtest import results

DEFAULT_RATES = "2000,5000,10000,15000,20000,30000"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rates", default=DEFAULT_RATES,
                   help=f"updates/s to try, comma-separated (default {DEFAULT_RATES})")
    p.add_argument("--clients", type=int, default=1000, help="connections (default 1000)")
    p.add_argument("--duration", type=float, default=15, help="seconds per rate (default 15)")
    p.add_argument("--processes", type=int, default=2,
                   help="the load generator's reader processes (default 2)")
    p.add_argument("--transport", default="ws", help="the readers' transport (default ws)")
    p.add_argument("--instances", type=int, default=1,
                   help="server instances; above 1 they share a private redis-server")
    p.add_argument("--p99-limit", type=float, default=500.0,
                   help="p99 latency (ms) a rate must stay under (default 500)")
    p.add_argument("--stop-after", type=int, default=2, metavar="N",
                   help="stop after N rates in a row missed the limit (default 2; 0: never)")
    p.add_argument("--lock", metavar="FILE", help="run each rate under `flock FILE`")
    p.add_argument("--json", action="store_true", help="print the rows as one JSON array")
    results.add_out_option(p)
    args = p.parse_args(argv)
    try:
        args.rate_list = [float(r) for r in args.rates.split(",") if r.strip()]
    except ValueError:
        p.error(f"--rates {args.rates!r}: comma-separated numbers, e.g. {DEFAULT_RATES}")
    if not args.rate_list or min(args.rate_list) <= 0:
        p.error("--rates: at least one positive rate")
    if args.lock and not shutil.which("flock"):
        p.error("--lock needs flock(1) on the PATH")
    return args


def command(args: argparse.Namespace, rate: float, out: Path) -> list[str]:
    cmd = [sys.executable, "-m", "jobwire.cli", "loadtest", "--spawn",
           "--connections", str(args.clients), "--updates-per-second", f"{rate:g}",
           "--duration", f"{args.duration:g}", "--processes", str(args.processes),
           "--transport", args.transport, "--json", str(out)]
    if args.instances > 1:
        cmd += ["--instances", str(args.instances)]
    return (["flock", args.lock] if args.lock else []) + cmd


def run(args: argparse.Namespace, rate: float) -> dict[str, Any] | None:
    """One rate's loadtest result file, or None (its error printed) if it could not run."""
    timeout = 3 * args.duration + 300 + (3600 if args.lock else 0)  # the lock may be busy
    with tempfile.TemporaryDirectory(prefix="saturation-") as tmp:
        out = Path(tmp) / "run.json"
        try:
            proc = subprocess.run(command(args, rate, out), capture_output=True,
                                  timeout=timeout, check=False,
                                  env={**os.environ, "JOBWIRE_LOG_LEVEL": "warning"})
        except subprocess.TimeoutExpired:
            print(f"saturation: {rate:g}/s did not finish within {timeout:.0f} s",
                  file=sys.stderr)
            return None
        if not out.exists():
            print(f"saturation: {rate:g}/s could not run (status {proc.returncode}):\n"
                  f"{proc.stderr.decode(errors='replace')[-2000:]}", file=sys.stderr)
            return None
        return orjson.loads(out.read_bytes())


def row(rate: float, r: dict[str, Any], limit: float) -> dict[str, Any]:
    pub, gen = r["publish"], r["loadgen"]
    servers = [p for p in r["processes"] if p["role"] == "server"]
    busiest = max(gen["processes"], key=lambda p: p["cpuPercent"])
    p99 = r["latencyMs"]["p99"]
    return {
        "rate": rate, "achieved": pub["achievedRate"], "delivered": r["eventsDelivered"],
        "expected": r["eventsExpected"], "lost": r["eventsLost"], "gaps": r["seqGaps"],
        "duplicates": r["duplicates"], "p50": r["latencyMs"]["p50"], "p99": p99,
        "max": r["latencyMs"]["max"],
        "serverCpuPercent": round(sum(p["cpuPercent"] for p in servers), 1),
        "serverUsPerEvent": r["serverCpuUsPerEvent"],
        "redisCpuPercent": round(sum(p["cpuPercent"] for p in r["processes"]
                                     if p["role"] == "redis"), 1),
        "loadgenCpuPercent": gen["cpuPercent"], "loadgenUsPerEvent": gen["cpuUsPerEvent"],
        "busiestLoadgen": f"{busiest['role']} {busiest['cpuPercent']:.0f} %",
        "refused": pub["refused"], "failedBatches": pub["httpErrors"],
        "problems": [*pub["problems"], *r["problems"]][:5],
        "ok": bool(r["ok"]), "meets": bool(r["ok"] and not r["eventsLost"] and p99 is not None
                                           and p99 < limit),
        "bottleneck": r["bottleneck"]}


def table(rows: list[dict[str, Any]], limit: float) -> str:
    head = ("| updates/s wanted → achieved | delivered / expected | p50 ms | p99 ms | "
            "server CPU | server µs/event | loadgen CPU (busiest process) | loadgen µs/event "
            f"| p99 < {limit:g} ms, no loss |")
    lines = [head, "|" + "---|" * head.count(" | ") + "---|"]
    for x in rows:
        lines.append(
            f"| {x['rate']:,.0f} → {x['achieved']:,.0f} | {x['delivered']:,} / "
            f"{x['expected']:,} | {x['p50']} | {x['p99']} | {x['serverCpuPercent']:.0f} % "
            + (f"(+ Redis {x['redisCpuPercent']:.0f} %) " if x["redisCpuPercent"] else "")
            + f"| {x['serverUsPerEvent']} | {x['loadgenCpuPercent']:.0f} % "
            f"({x['busiestLoadgen']}) | {x['loadgenUsPerEvent']} | "
            f"{'yes' if x['meets'] else 'no'} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    record = results.Run("saturation", {k: v for k, v in vars(args).items()
                                        if k not in ("json", "out")})
    rows: list[dict[str, Any]] = []
    runs: list[dict[str, Any]] = []
    misses = 0
    for rate in args.rate_list:
        print(f"saturation: {args.clients} {args.transport} clients at {rate:g}/s ...",
              file=sys.stderr, flush=True)
        r = run(args, rate)
        if r is None:
            return 2
        runs.append(r)
        rows.append(x := row(rate, r["result"], args.p99_limit))
        print(f"saturation: {rate:g}/s: p99 {x['p99']} ms, {x['delivered']}/{x['expected']} "
              f"delivered, server {x['serverCpuPercent']:.0f} %, loadgen "
              f"{x['loadgenCpuPercent']:.0f} %"
              + "".join(f"\n  {b}" for b in [*x["bottleneck"], *x["problems"]]),
              file=sys.stderr, flush=True)
        misses = 0 if x["meets"] else misses + 1
        if args.stop_after and misses >= args.stop_after:
            break
    best = max((x["rate"] for x in rows if x["meets"]), default=None)
    summary = {"rows": rows, "highestRateMeetingLimit": best, "p99LimitMs": args.p99_limit}
    record.save({**summary, "runs": runs}, args.out)
    if args.json:
        print(orjson.dumps(summary).decode())
    else:
        print(table(rows, args.p99_limit))
        print(f"\nhighest rate with p99 < {args.p99_limit:g} ms and nothing lost: "
              + (f"{best:,.0f} updates/s" if best else "none"))
    return 0 if best else 1


if __name__ == "__main__":
    sys.exit(main())
