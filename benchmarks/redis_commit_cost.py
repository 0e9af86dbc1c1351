#!/usr/bin/env python3
"""Redis's CPU per update of jobwire's commit, alone: no HTTP, no fan-out, one subscriber.

A private redis-server pinned to --redis-core; this process, pinned to the other core, runs
`RedisBroker.publish_many` (publish-only, as `jobwire.reporter.RedisPublisher` does) in
batches of each --batches size, one batch at a time, over --jobs jobs (each created first,
then --updates progress updates spread over them; every tenth update carries an eventId, as
retrying workers send). One plain subscriber listens on the broker's channels, as one
`jobwire serve` would. Per batch size: Redis's CPU µs per update (/proc/<pid>/stat), its
INFO commandstats per update (calls and µs per command; a script's inner commands are counted
both on their own and within EVALSHA), and this process's CPU µs per update.

To compare two versions of jobwire, run it with PYTHONPATH pointing at the other tree's src/:
the result's `source` is the checkout jobwire was imported from (give --out, or the file goes
to that checkout's benchmarks/results/).

    flock /tmp/jobwire-cpu.lock .venv/bin/python benchmarks/redis_commit_cost.py
        [--batches 1,2,10,100] [--jobs 1000] [--updates 20000] [--out PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from typing import Any

import redis

from jobwire.broker.redis import CHANNELS, RedisBroker
from jobwire.errors import JobwireError
from jobwire.loadtest import procs, results
from jobwire.protocol import parse_update

REDIS_CORE, OWN_CORE = 1, 0


def update(job: int, step: int, users: int) -> Any:
    fields: dict[str, Any] = {"jobId": f"cc-j{job}", "userId": f"cc-u{job % users}",
                              "status": "queued" if step == 0 else "processing",
                              "progress": min(step, 99), "currentOperation": f"step {step}"}
    if step % 10 == 5:
        fields["eventId"] = f"cc-e{job}-{step}"
    return parse_update(fields)


async def measure(url: str, redis_pid: int, batch: int, jobs: int, updates: int
                  ) -> dict[str, Any]:
    broker = RedisBroker(url, prefix=f"cc{batch}:", max_updates_per_second=0)
    admin = redis.Redis.from_url(url)
    try:
        await broker.publish_many([update(j, 0, jobs // 2) for j in range(jobs)])  # created
        steps = [update(k % jobs, 1 + k // jobs, jobs // 2) for k in range(updates)]
        admin.config_resetstat()
        redis0, own0, t0 = procs.cpu_seconds(redis_pid), time.process_time(), time.perf_counter()
        for start in range(0, updates, batch):
            answers = await broker.publish_many(steps[start:start + batch])
            refused = [r for r in answers if isinstance(r, JobwireError)]
            if refused:
                raise RuntimeError(f"refused: {refused[:1]}")
        seconds = time.perf_counter() - t0
        redis_cpu = procs.cpu_seconds(redis_pid) - redis0
        own = time.process_time() - own0
        stats = admin.info("commandstats")
    finally:
        admin.close()
        await broker.stop()
    per = {name.removeprefix("cmdstat_"): {"calls": round(v["calls"] / updates, 3),
                                          "us": round(v["usec"] / updates, 2)}
           for name, v in sorted(stats.items(), key=lambda kv: -kv[1]["usec"])
           if name != "cmdstat_config|resetstat"}
    return {"batch": batch, "updates": updates, "seconds": round(seconds, 2),
            "redisCpuUsPerUpdate": round(redis_cpu * 1e6 / updates, 1),
            "publisherCpuUsPerUpdate": round(own * 1e6 / updates, 1),
            "redisCommandsPerUpdate": per}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batches", default="1,2,10,100", help="updates per publish_many call")
    p.add_argument("--jobs", type=int, default=1000)
    p.add_argument("--updates", type=int, default=20000, help="per batch size")
    results.add_out_option(p)
    args = p.parse_args()
    batches = [int(b) for b in args.batches.split(",")]
    with tempfile.TemporaryDirectory(prefix="commit-cost-") as tmp:
        (port,) = procs.free_ports(1)
        server = subprocess.Popen(
            ["taskset", "-c", str(REDIS_CORE), "redis-server", "--port", str(port), "--bind",
             "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", tmp],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        listener = None
        try:
            procs.wait_redis(port, server, procs.START_TIMEOUT)
            url = f"redis://127.0.0.1:{port}/0"
            os.sched_setaffinity(0, {OWN_CORE})
            run = results.Run("redis_commit_cost", {"batches": batches, "jobs": args.jobs,
                                                    "updates": args.updates})
            listener = subprocess.Popen(  # one subscriber, as one `jobwire serve`
                ["taskset", "-c", str(OWN_CORE), "redis-cli", "-p", str(port), "subscribe",
                 *CHANNELS], stdout=subprocess.DEVNULL)
            rows = [asyncio.run(measure(url, server.pid, b, args.jobs, args.updates))
                    for b in batches]
        finally:
            if listener is not None:
                procs.stop_process(listener)
            procs.stop_process(server)
    run.save({"rows": rows}, args.out)
    for r in rows:
        print(f"batch {r['batch']:>4}: Redis {r['redisCpuUsPerUpdate']} µs/update, "
              f"publisher {r['publisherCpuUsPerUpdate']} µs/update")
    return 0


if __name__ == "__main__":
    sys.exit(main())
