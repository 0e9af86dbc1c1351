#!/usr/bin/env python3
"""What one progress report costs the job that makes it.

Starts a private redis-server (loopback, free port, nothing saved) and a `jobwire serve` on
it, then, inside `job_status(...)` (what the Celery and RQ integrations run for each task),
times N consecutive `job.progress(p, "page i/N")` calls, one job at a time, three ways:

- `local`: a publisher that does nothing, i.e. the reporter's own work (clamping, the
  update's validation is not even run): the floor;
- `redis`: `RedisPublisher`, straight to Redis (publish-only `RedisBroker`: read the job,
  run the state machine, commit with the Lua script; progress faster than the server's
  conflation rate is held and sent by the publisher's timer);
- `http`: `HttpPublisher`, `POST /api/v2/jobs/{id}/status` with a publisher token.

Each report waits for its answer (the job's thread blocks), so the per-call time is the
overhead the job sees. Prints a table, or JSON with `--json`, and writes the result file to
--out (default benchmarks/results/report_overhead-<UTC time>.json).

    .venv/bin/python benchmarks/report_overhead.py [--reports 1000] [--jobs 3] [--json]
        [--out PATH]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.conftest import start_redis, start_server  # noqa: E402

from jobwire.loadtest import results  # noqa: E402
from jobwire.reporter import HttpPublisher, RedisPublisher, job_status  # noqa: E402


class NullPublisher:
    def update(self, job_id: str, user_id: str, status: str, *args: Any,
               **kwargs: Any) -> dict[str, Any]:
        return {"jobId": job_id, "id": None, "seq": None}


def measure(publisher: Any, name: str, reports: int, jobs: int) -> dict[str, Any]:
    samples: list[float] = []
    for j in range(jobs):
        with job_status(f"bench-{name}-{j}-{time.time_ns()}", "bench-user",
                        publisher=publisher) as job:
            for i in range(1, reports + 1):
                start = time.perf_counter()
                job.progress(100 * i / reports, f"page {i}/{reports}")
                samples.append(time.perf_counter() - start)
            failures = job.failures
        if failures:
            raise SystemExit(f"{name}: {failures} reports failed")
    samples.sort()
    micro = [s * 1e6 for s in samples]
    return {"publisher": name, "reports": len(samples),
            "mean_us": round(statistics.fmean(micro), 1),
            "p50_us": round(micro[len(micro) // 2], 1),
            "p99_us": round(micro[int(len(micro) * 0.99) - 1], 1),
            "reports_per_second": round(len(samples) / sum(samples))}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reports", type=int, default=1000, help="reports per job")
    parser.add_argument("--jobs", type=int, default=3, help="jobs per publisher, one by one")
    parser.add_argument("--json", action="store_true")
    results.add_out_option(parser)
    args = parser.parse_args()
    run = results.Run("report_overhead", {"reports": args.reports, "jobs": args.jobs})

    redis = start_redis()
    server = start_server(redis_url=redis.url)
    try:
        measured = [measure(NullPublisher(), "local", args.reports, args.jobs)]
        with RedisPublisher(redis.url) as pub:
            measure(pub, "warm-up", 50, 1)
            measured.append(measure(pub, "redis", args.reports, args.jobs))
        with HttpPublisher(server.url, server.token("bench", "publisher")) as pub:
            measure(pub, "warm-up-http", 50, 1)
            measured.append(measure(pub, "http", args.reports, args.jobs))
    finally:
        server.stop()
        redis.stop()
    run.save({"results": measured}, args.out)

    if args.json:
        print(json.dumps({"results": measured}))
        return 0
    print(f"{'publisher':<10}{'reports':>9}{'mean µs':>10}{'p50 µs':>10}{'p99 µs':>10}"
          f"{'reports/s':>11}")
    for r in measured:
        print(f"{r['publisher']:<10}{r['reports']:>9}{r['mean_us']:>10}{r['p50_us']:>10}"
              f"{r['p99_us']:>10}{r['reports_per_second']:>11}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
