#!/usr/bin/env python3
"""Single-update HTTP publishing: how many one-update `POST /api/v2/jobs/{jobId}/status`
requests per second one `jobwire serve` process sustains, and its CPU per request.

Workers mostly publish one update at a time (each task reports its own progress), so this is
the publish path most deployments run. For every rate, a fresh `jobwire serve` is started
pinned to one core (`taskset -c --server-core`), with the in-process broker or with a private
redis-server (pinned to the load generator's core); this process, pinned to the other core,
opens --connections keep-alive connections (the load generator's lean HTTP/1.1 client) and
each sends its share of the rate, one update per request and one request in flight, on an
absolute schedule. Each connection publishes for jobs of its own, every job about twice a
second (under progress conflation's limit, so every update is delivered at once), and each
job ends with a `completed` update. Nobody subscribes: this is the publish path alone.

Per rate, over the measured window (after --warmup seconds): requests answered per second,
publish latency p50/p99/max from the request written to the response parsed (and from the
request's scheduled time, which adds the time a late request waited to be sent), the server's
CPU µs per request (/proc/<pid>/stat), Redis's, the load generator's CPU, and errors. A rate
meets the limit when p99 (sent -> response) < --p99-limit ms, nothing failed and at least 95 %
of the rate was answered. The publisher rate limit is off (JOBWIRE_MAX_PUBLISHES_PER_SECOND=0):
one token publishes for all connections here.

With --profile RATE: one run at RATE per broker, the server sampled with py-spy (as
benchmarks/cpu_profile.py does, from its own virtualenv) over the measured window.

    flock /tmp/jobwire-cpu.lock .venv/bin/python benchmarks/single_updates.py
        [--brokers memory,redis] [--rates 500,1000,2000,3000,4000,5000,6000,8000]
        [--connections 100] [--duration 10] [--warmup 2] [--p99-limit 50] [--stop-after 2]
        [--profile RATE] [--sample-rate 200] [--server-core 0] [--load-core 1] [--out PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import secrets
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import uvloop

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "benchmarks")]
from cpu_profile import parse_stacks, py_spy, shares  # noqa: E402

from jobwire.auth import JwtAuth  # noqa: E402
from jobwire.loadtest import procs, results  # noqa: E402
from jobwire.loadtest.http1 import Connection, HttpError  # noqa: E402
from jobwire.loadtest.stats import summary  # noqa: E402

DEFAULT_RATES = "500,1000,2000,3000,4000,5000,6000,8000"
JOB_INTERVAL = 0.5  # seconds between two updates of one job: 2/s, under conflation's 10/s
KEPT = 0.95  # share of the rate that must be answered for the rate to count
REQUEST_TIMEOUT = 10.0
clock = time.perf_counter


@dataclass
class Tally:
    latency: list[float] = field(default_factory=list)  # sent -> response, seconds
    intended: list[float] = field(default_factory=list)  # scheduled -> response
    answered: int = 0  # responses inside the window
    errors: int = 0
    samples: list[str] = field(default_factory=list)

    def error(self, text: str) -> None:
        self.errors += 1
        if len(self.samples) < 5:
            self.samples.append(text)


async def lane(i: int, url: str, token: str, rate: float, start: float, window: tuple[float,
               float], tally: Tally, tag: str) -> None:
    """One connection: `rate * (window end - start)` updates for jobs of its own, the k-th
    scheduled at start + phase + k / rate, sent as soon as the previous one is answered."""
    conn = Connection(url, {"Authorization": f"Bearer {token}",
                            "Content-Type": "application/json"})
    total = round(rate * (window[1] - start))
    jobs = max(1, math.ceil(rate * JOB_INTERVAL))
    per_job = math.ceil(total / jobs)
    step = 100.0 / (per_job + 1)
    head = [f"POST /api/v2/jobs/{tag}-c{i}-j{j}/status HTTP/1.1\r\n".encode() + conn.fixed
            for j in range(jobs)]
    user = f"{tag}-u{i % 50}"
    phase = (i % 97) / 97 / rate  # the connections' requests interleave
    try:
        for k in range(total):
            j, c = k % jobs, k // jobs + 1
            scheduled = start + phase + k / rate
            delay = scheduled - clock()
            if delay > 0:
                await asyncio.sleep(delay)
            body = orjson.dumps(
                {"userId": user, "status": "completed", "currentOperation": f"done after {c}"}
                if k >= total - jobs else
                {"userId": user, "status": "processing", "progress": round(c * step, 4),
                 "currentOperation": f"step {c}", "timestamp": _now_iso()})
            sent = clock()
            try:
                async with asyncio.timeout(REQUEST_TIMEOUT):
                    r = await conn.send(head[j] + b"Content-Length: %d\r\n\r\n" % len(body)
                                        + body)
            except (HttpError, TimeoutError) as exc:
                conn.close()
                tally.error(f"no answer: {type(exc).__name__}: {exc}")
                continue
            done = clock()
            if r.status != 202:
                tally.error(f"{r.status}: {r.text()}")
            elif sent >= window[0]:
                tally.latency.append(done - sent)
                tally.intended.append(done - scheduled)
            if window[0] <= done:
                tally.answered += 1
    finally:
        conn.close()


def _now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + "Z"


async def drive(url: str, token: str, args: argparse.Namespace, rate: float, tag: str,
                pids: dict[str, int], profile_out: Path | None) -> dict[str, Any]:
    """Every connection's lane at once; the CPU of each process over the measured window."""
    tally = Tally()
    start = clock() + 0.2
    window = (start + args.warmup, start + args.warmup + args.duration)
    lanes = [asyncio.create_task(lane(i, url, token, rate / args.connections, start, window,
                                      tally, tag)) for i in range(args.connections)]
    pids = {**pids, "loadgen": os.getpid()}
    await asyncio.sleep(window[0] - clock())
    cpu0, t0 = {k: procs.cpu_seconds(p) for k, p in pids.items()}, clock()
    spy = None
    if profile_out is not None:
        spy = await asyncio.create_subprocess_exec(
            str(py_spy()), "record", "--pid", str(pids["server"]), "--rate",
            str(args.sample_rate), "--duration", str(int(args.duration)), "--nonblocking",
            "--nolineno", "--format", "raw", "--output", str(profile_out),
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    await asyncio.gather(*lanes)
    cpu1, t1 = {k: procs.cpu_seconds(p) for k, p in pids.items()}, clock()
    if spy is not None:
        _, err = await spy.communicate()
        if spy.returncode:
            raise RuntimeError("py-spy failed: " + err.decode(errors="replace"))
    seconds = t1 - t0
    answered = max(1, tally.answered)
    cpu = {k: cpu1[k] - cpu0[k] for k in pids}
    return {
        "rate": rate, "achieved": round(tally.answered / seconds, 1),
        "windowSeconds": round(seconds, 2), "answered": tally.answered,
        "latencyMs": summary(tally.latency, 1000), "intendedLatencyMs":
            summary(tally.intended, 1000), "errors": tally.errors, "errorSamples": tally.samples,
        "serverCpuPercent": round(100 * cpu["server"] / seconds, 1),
        "serverUsPerRequest": round(1e6 * cpu["server"] / answered, 1),
        "redisCpuPercent": round(100 * cpu["redis"] / seconds, 1) if "redis" in cpu else None,
        "redisUsPerRequest": round(1e6 * cpu["redis"] / answered, 1) if "redis" in cpu
        else None,
        "loadgenCpuPercent": round(100 * cpu["loadgen"] / seconds, 1),
        "loadgenUsPerRequest": round(1e6 * cpu["loadgen"] / answered, 1)}


def start_server(stack: contextlib.ExitStack, args: argparse.Namespace, secret: str,
                 redis_url: str | None) -> tuple[str, int]:
    port = procs.free_ports(1)[0]
    env = {**os.environ, "JOBWIRE_SECRET": secret, "JOBWIRE_HOST": "127.0.0.1",
           "JOBWIRE_PORT": str(port), "JOBWIRE_JWT_ALGORITHM": "HS256"}
    if redis_url:
        env["JOBWIRE_REDIS_URL"] = redis_url
    log = stack.enter_context(tempfile.TemporaryFile())
    proc = subprocess.Popen(["taskset", "-c", str(args.server_core),
                             *procs.jobwire_command(), "serve"], env=env,
                            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
    stack.callback(procs.stop_process, proc)
    url = f"http://127.0.0.1:{port}"
    procs.wait_healthy("jobwire serve", url + "/readyz", proc, procs.START_TIMEOUT)
    return url, proc.pid


def start_redis(stack: contextlib.ExitStack, args: argparse.Namespace) -> tuple[str, int]:
    """A private redis-server on the load generator's core: the server's core stays its own."""
    port = procs.free_ports(1)[0]
    workdir = stack.enter_context(tempfile.TemporaryDirectory(prefix="jw-redis-"))
    log = stack.enter_context(tempfile.TemporaryFile())
    proc = subprocess.Popen(["taskset", "-c", str(args.load_core), "redis-server", "--port",
                             str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly",
                             "no", "--dir", workdir], stdin=subprocess.DEVNULL, stdout=log,
                            stderr=subprocess.STDOUT)
    stack.callback(procs.stop_process, proc)
    procs.wait_redis(port, proc, procs.START_TIMEOUT)
    return f"redis://127.0.0.1:{port}/0", proc.pid


def one_rate(args: argparse.Namespace, broker: str, rate: float,
             profile_out: Path | None = None) -> dict[str, Any]:
    """A fresh server (and Redis) for one rate, driven from this process."""
    secret = secrets.token_urlsafe(32)
    token = JwtAuth(secret=secret).mint("single-updates", "publisher", ttl=3600)
    with contextlib.ExitStack() as stack:
        pids: dict[str, int] = {}
        redis_url = None
        if broker == "redis":
            redis_url, pids["redis"] = start_redis(stack, args)
        url, pids["server"] = start_server(stack, args, secret, redis_url)
        tag = f"r{rate:g}"
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            row = runner.run(drive(url, token, args, rate, tag, pids, profile_out))
    p99 = row["latencyMs"]["p99"]
    row["meets"] = bool(p99 is not None and p99 < args.p99_limit and not row["errors"]
                        and row["achieved"] >= KEPT * rate)
    return row


def sweep(args: argparse.Namespace, broker: str) -> dict[str, Any]:
    rows, misses = [], 0
    for rate in args.rate_list:
        row = one_rate(args, broker, rate)
        rows.append(row)
        print(f"single_updates {broker} {rate:g}/s: achieved {row['achieved']:g}/s, p50 "
              f"{row['latencyMs']['p50']} p99 {row['latencyMs']['p99']} ms, server "
              f"{row['serverCpuPercent']} % = {row['serverUsPerRequest']} µs/request, loadgen "
              f"{row['loadgenCpuPercent']} %, errors {row['errors']}", file=sys.stderr,
              flush=True)
        misses = 0 if row["meets"] else misses + 1
        if args.stop_after and misses >= args.stop_after:
            break
    best = max((r["rate"] for r in rows if r["meets"]), default=None)
    return {"rows": rows, "highestRateMeetingLimit": best}


def profile(args: argparse.Namespace, broker: str) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="jw-single-profile-") as tmp:
        raw = Path(tmp) / "py-spy.txt"
        row = one_rate(args, broker, args.profile, raw)
        found = shares(parse_stacks(raw.read_text()))
    found["pySpy"] = {"sampleRate": args.sample_rate, "seconds": int(args.duration),
                      "busyShareOfSamples": round(found["samples"] / (
                          args.sample_rate * int(args.duration)), 3)}
    return {"row": row, **found}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--brokers", default="memory,redis", help="memory, redis or both")
    p.add_argument("--rates", default=DEFAULT_RATES, help="requests/s to try, in order")
    p.add_argument("--connections", type=int, default=100, help="keep-alive connections")
    p.add_argument("--duration", type=float, default=10, help="measured seconds per rate")
    p.add_argument("--warmup", type=float, default=2, help="unmeasured seconds first")
    p.add_argument("--p99-limit", type=float, default=50.0, help="p99 publish latency, ms")
    p.add_argument("--stop-after", type=int, default=2, help="stop after N missed rates")
    p.add_argument("--profile", type=float, metavar="RATE",
                   help="instead of the sweep: one run at RATE, the server sampled by py-spy")
    p.add_argument("--sample-rate", type=int, default=200, help="py-spy samples/s")
    p.add_argument("--server-core", type=int, default=0)
    p.add_argument("--load-core", type=int, default=1)
    results.add_out_option(p)
    args = p.parse_args(argv)
    args.broker_list = [b for b in args.brokers.split(",") if b]
    if set(args.broker_list) - {"memory", "redis"}:
        p.error("--brokers: memory, redis or memory,redis")
    args.rate_list = [float(r) for r in args.rates.split(",") if r.strip()]
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # Recorded in the result file with the other JOBWIRE_* settings the servers inherit.
    os.environ.update({"JOBWIRE_MAX_PUBLISHES_PER_SECOND": "0",
                       "JOBWIRE_LOG_LEVEL": "warning"})
    os.sched_setaffinity(0, {args.load_core})
    run = results.Run("single_updates", {k: v for k, v in vars(args).items() if k != "out"})
    found = {"mode": "profile" if args.profile else "sweep", "p99LimitMs": args.p99_limit,
             "brokers": {}}
    for broker in args.broker_list:
        found["brokers"][broker] = profile(args, broker) if args.profile else sweep(args, broker)
    run.save(found, args.out)
    if not args.profile:
        for broker, b in found["brokers"].items():
            print(f"{broker}: highest rate with p99 < {args.p99_limit:g} ms: "
                  f"{b['highestRateMeetingLimit']}")
        return 0
    for broker, b in found["brokers"].items():
        print(f"{broker}: {b['row']['serverUsPerRequest']} µs/request; self by module:")
        for row in b["selfByModule"][:12]:
            print(f"  {row['percent']:5.1f} %  {row['module']}")
        print("  inclusive, jobwire functions:")
        for row in b["inclusiveByJobwireFunction"]:
            print(f"  {row['percent']:5.1f} %  {row['function']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
