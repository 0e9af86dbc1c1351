"""Publishing the updates: batches over `POST /api/v2/jobs/status`, paced by an absolute
schedule (a batch every TICK per lane). If the sender falls behind, the overdue batches go out
merged in one request, so the average rate stays on target and per-job order is kept (one
request in flight per lane). Every job is pinned to one lane: a lane is one publisher identity
on one server URL, and the lanes publish concurrently, their ticks interleaved."""

from __future__ import annotations

import asyncio
import itertools
import math
import ssl
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

import orjson

from .http1 import Connection, HttpError

TICK = 0.010  # seconds between batches, over all lanes
MAX_BATCH = 1000  # the server's default JOBWIRE_MAX_BATCH_ITEMS
POST_TIMEOUT = 10.0  # one batch request
PUBLISH_PATH = "/api/v2/jobs/status"
clock = time.perf_counter


@dataclass
class PublishStats:
    sent: int = 0
    batches: int = 0
    accepted: int = 0  # acked with an event id: delivered at once
    conflated: int = 0  # acked with id null: held back by progress conflation
    refused: int = 0  # per-item 409/422, and the items of failed batches
    http_errors: int = 0  # whole batches answered with a non-202 or not answered
    rate_limited: int = 0  # of those, answered 429
    samples: list[str] = field(default_factory=list)  # the first few refusals/errors
    started: float = 0.0  # clock() at the schedule's origin
    last_sent: float = 0.0  # clock() when the last batch was sent
    max_lag: float = 0.0  # seconds: the latest a batch went out after its scheduled time
    post_ms: list[float] = field(default_factory=list)
    final_seq: dict[str, int] = field(default_factory=dict)  # per job, its highest acked seq

    def note(self, text: str) -> None:
        if len(self.samples) < 5:
            self.samples.append(text)

    @property
    def expected(self) -> int:
        """Events the server made for our jobs: the jobs are new and each ends with a terminal
        update (delivered at once, superseding any held conflated one), so a job's final seq
        is its number of events."""
        return sum(self.final_seq.values())


def job_slots(users: list[str], jobs_per_user: int) -> list[tuple[str, str]]:
    """(jobId, userId) per slot; consecutive slots belong to different users."""
    return [(f"{users[s % len(users)]}-j{s // len(users)}", users[s % len(users)])
            for s in range(len(users) * jobs_per_user)]


@dataclass
class Lane:
    """The updates published through one server URL with one publisher token: its own jobs,
    at its share of the rate, one request in flight at a time."""

    url: str
    token: str
    slots: list[tuple[str, str]]
    total: int
    rate: float
    phase: float  # its ticks' offset, so that the lanes' batches alternate
    sent: int = 0
    batches: int = 0


def make_lanes(targets: list[tuple[str, str]], users: int, slots: list[tuple[str, str]],
               total: int, rate: float) -> list[Lane]:
    """One lane per (publish URL, token). Job j of user u goes to lane (u + j) % N, so every
    user has jobs on every lane and no job is published through two lanes: with one request
    in flight per lane, every job's updates are committed in order. Each lane gets its jobs'
    share of the updates; its ticks come every N * TICK, offset by i * TICK."""
    n = len(targets)
    owned: list[list[tuple[str, str]]] = [[] for _ in targets]
    for s, slot in enumerate(slots):
        owned[(s % users + s // users) % n].append(slot)
    shares = [0, *itertools.accumulate(len(o) for o in owned)]
    cut = [round(total * c / len(slots)) for c in shares]  # the totals add up exactly
    return [Lane(url, token, own, cut[i + 1] - cut[i], rate * len(own) / len(slots), i * TICK)
            for i, ((url, token), own) in enumerate(zip(targets, owned, strict=True))]


async def publish(lanes: list[Lane], out: PublishStats,
                  ssl_context: ssl.SSLContext | None = None) -> None:
    """All lanes at once, from one schedule origin, each over its own connection."""
    out.started = clock()
    async with asyncio.TaskGroup() as group:
        for lane in lanes:
            if lane.total:
                group.create_task(publish_lane(lane, TICK * len(lanes), out, ssl_context))


async def publish_lane(lane: Lane, period: float, out: PublishStats,
                       ssl_context: ssl.SSLContext | None = None) -> None:
    """Batch k at out.started + lane.phase + k * period. A job's updates are `processing` with
    rising progress, and its last one (in the final round over the lane's jobs) `completed`."""
    conn = Connection(lane.url, {"Authorization": f"Bearer {lane.token}",
                                 "Content-Type": "application/json"}, ssl_context)
    try:
        await _publish_lane(conn, lane, period, out)
    finally:
        conn.close()


async def _publish_lane(conn: Connection, lane: Lane, period: float,
                        out: PublishStats) -> None:
    slots, total = lane.slots, lane.total
    nslots = len(slots)
    last_round = total - nslots
    per_job_max = math.ceil(total / nslots)
    step = 100.0 / (per_job_max + 1)
    counts = [0] * nslots
    per_tick = lane.rate * period
    dumps, now_utc = orjson.dumps, datetime.now
    start = out.started + lane.phase
    k = 0
    while lane.sent < total:
        k += 1
        delay = start + k * period - clock()
        if delay > 0:
            await asyncio.sleep(delay)
        else:  # behind schedule: merge every overdue tick into this request
            out.max_lag = max(out.max_lag, -delay)
            k = max(k, int((clock() - start) / period))
        due = min(total, round(k * per_tick))
        while lane.sent < due:
            n = min(due - lane.sent, MAX_BATCH)
            ts = now_utc(UTC).isoformat()
            batch = []
            for g in range(lane.sent, lane.sent + n):
                s = g % nslots
                c = counts[s] = counts[s] + 1
                job_id, user_id = slots[s]
                if g >= last_round:
                    batch.append({"jobId": job_id, "userId": user_id, "status": "completed",
                                  "currentOperation": f"done after {c}", "timestamp": ts})
                else:
                    batch.append({"jobId": job_id, "userId": user_id, "status": "processing",
                                  "progress": round(c * step, 4),
                                  "currentOperation": f"step {c}", "timestamp": ts})
            out.last_sent = t0 = clock()
            lane.sent += n
            out.sent += n
            out.batches += 1
            lane.batches += 1
            await post_batch(conn, dumps(batch), n, out)
            out.post_ms.append((clock() - t0) * 1000)


async def post_batch(conn: Connection, body: bytes, n: int, out: PublishStats) -> None:
    try:
        async with asyncio.timeout(POST_TIMEOUT):
            status, content = await conn.post(body)
    except (HttpError, TimeoutError) as exc:
        conn.close()
        out.http_errors += 1
        out.refused += n
        out.note(f"batch not answered: {type(exc).__name__}: {exc}")
        return
    if status != 202:
        out.http_errors += 1
        out.rate_limited += status == 429
        out.refused += n
        out.note(f"batch answered {status}: {content[:200].decode(errors='replace')}")
        return
    final = out.final_seq
    for item in orjson.loads(content)["results"]:
        if "status" in item:
            out.refused += 1
            out.note(f"item refused: {orjson.dumps(item).decode()[:200]}")
        elif item.get("id") is None:
            out.conflated += 1
        else:
            out.accepted += 1
            job, seq = item["jobId"], item["seq"]
            if seq > final.get(job, 0):
                final[job] = seq
