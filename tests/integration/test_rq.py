"""RQ jobs report live status: a real `rq worker --burst` process on a private redis-server, a
real `jobwire serve` on that Redis, and a user following over WebSocket. The worker publishes
straight to Redis or over HTTP with a publisher token; the job functions live here."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import redis
from rq import Queue, Retry, get_current_job

from jobwire.integrations import rq as jobwire_rq
from jobwire.reporter import RedisPublisher
from tests.conftest import WAIT, connect, start_redis, start_server

ROOT = Path(__file__).resolve().parents[2]


def crawl(pages: int, gate: str, redis_url: str) -> dict[str, int]:
    jobwire_rq.report_progress(50, f"page 1/{pages}")
    with redis.Redis.from_url(redis_url) as r:  # wait until the test has seen the progress
        if r.blpop([gate], timeout=int(3 * WAIT)) is None:
            raise TimeoutError(f"gate {gate} was not opened")
    for page in range(2, pages + 1):
        jobwire_rq.report_progress(100 * page / pages, f"page {page}/{pages}")
    return {"pages": pages, "errors": 0}


def explode(user_id: str) -> None:
    jobwire_rq.report_progress(10, "about to fail")
    left = get_current_job().retries_left  # None without retries
    raise ValueError("the site answered 503 repeatedly" +
                     (f" ({left} retries left)" if left is not None else ""))


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)  # the work horse dies without a word


@pytest.fixture(scope="module")
def stack():
    redis_server = start_redis()
    server = start_server(redis_url=redis_server.url)
    publisher = RedisPublisher(redis_server.url)  # the enqueuing side publishes `queued`
    jobwire_rq.install(publisher)
    connection = redis.Redis.from_url(redis_server.url)
    try:
        yield server, redis_server, connection
    finally:
        connection.close()
        publisher.close()
        server.stop()
        redis_server.stop()


def start_worker(server, redis_server, queue: str, via: str, worker_class: str):
    env = {k: v for k, v in os.environ.items()
           if k not in ("JOBWIRE_REDIS_URL", "JOBWIRE_URL", "JOBWIRE_TOKEN")}
    if via == "redis":
        env["JOBWIRE_REDIS_URL"] = redis_server.url
    else:
        env.update(JOBWIRE_URL=server.url, JOBWIRE_TOKEN=server.token("rq-1", "publisher"))
    return subprocess.Popen(
        [sys.executable, "-m", "rq.cli", "worker", "--burst", "--url", redis_server.url,
         "--worker-class", f"jobwire.integrations.rq.{worker_class}", "--path", str(ROOT),
         "--logging_level", "WARNING", queue], cwd=ROOT, env=env)


async def wait_exit(process: subprocess.Popen[bytes]) -> int:
    try:
        return await asyncio.wait_for(asyncio.to_thread(process.wait), 3 * WAIT)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(5)


@pytest.mark.parametrize(("via", "worker_class"), [("redis", "JobwireWorker"),
                                                   ("http", "JobwireSimpleWorker")])
async def test_job_progress_and_result_reach_the_user_live(stack, uid, via, worker_class):
    server, redis_server, connection = stack
    user = f"{uid}-u"
    client = await connect(server, server.token(user))
    await client.subscribe(all=True)
    queue = Queue(f"{uid}-q", connection=connection)
    gate = f"{uid}-gate"
    job = jobwire_rq.enqueue(queue, crawl, 4, gate, redis_server.url, owner=user)
    worker = start_worker(server, redis_server, queue.name, via, worker_class)

    seen = await client.recv_until(
        lambda m: m.get("jobId") == job.id and m.get("progress") == 50, timeout=6 * WAIT)
    connection.rpush(gate, "go")
    seen += await client.recv_until(lambda m: m.get("type") == "job_completed")
    assert await wait_exit(worker) == 0
    events = [m for m in seen if m.get("jobId") == job.id]

    assert [e["status"] for e in events][:2] == ["queued", "processing"]
    progress = next(e for e in events if e.get("progress") == 50)
    assert progress["type"] == "status_update" and progress["currentOperation"] == "page 1/4"
    assert progress["workerId"]  # the rq worker's name
    done = events[-1]
    assert done["type"] == "job_completed" and done["status"] == "completed"
    assert done["result"] == {"pages": 4, "errors": 0} and done["userId"] == user
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    await client.close()


@pytest.mark.parametrize(("via", "worker_class"), [("redis", "JobwireWorker"),
                                                   ("http", "JobwireSimpleWorker")])
async def test_failing_job_is_reported_failed_with_its_error(stack, uid, via, worker_class):
    server, redis_server, connection = stack
    user = f"{uid}-u"
    client = await connect(server, server.token(user))
    await client.subscribe(all=True)
    queue = Queue(f"{uid}-q", connection=connection)
    job = queue.enqueue(explode, user_id=user)  # plain enqueue: the owner from a kwarg
    worker = start_worker(server, redis_server, queue.name, via, worker_class)
    seen = await client.recv_until(
        lambda m: m.get("jobId") == job.id and m.get("type") == "job_completed",
        timeout=6 * WAIT)
    assert await wait_exit(worker) == 0
    done = seen[-1]
    assert done["status"] == "failed" and done["userId"] == user
    assert done["error"] == {"type": "ValueError", "message": "the site answered 503 repeatedly"}
    assert next(m["status"] for m in seen if m.get("jobId") == job.id) == "processing"
    await client.close()


async def test_retried_job_stays_processing_until_its_last_attempt(stack, uid):
    server, redis_server, connection = stack
    user = f"{uid}-u"
    client = await connect(server, server.token(user))
    await client.subscribe(all=True)
    queue = Queue(f"{uid}-q", connection=connection)
    job = jobwire_rq.enqueue(queue, explode, user, owner=user, retry=Retry(max=1))
    worker = start_worker(server, redis_server, queue.name, "redis", "JobwireSimpleWorker")
    seen = await client.recv_until(
        lambda m: m.get("jobId") == job.id and m.get("type") == "job_completed",
        timeout=6 * WAIT)
    assert await wait_exit(worker) == 0
    events = [m for m in seen if m.get("jobId") == job.id]
    assert [e["status"] for e in events][:2] == ["queued", "processing"]
    assert [e["type"] for e in events].count("job_completed") == 1
    # The first attempt's failure did not end the job: the last attempt's did.
    assert events[-1]["status"] == "failed"
    assert events[-1]["error"]["message"].endswith("(0 retries left)")
    await client.close()


async def test_a_work_horse_that_dies_is_reported_failed_by_the_worker(stack, uid):
    server, redis_server, connection = stack
    user = f"{uid}-u"
    client = await connect(server, server.token(user))
    await client.subscribe(all=True)
    queue = Queue(f"{uid}-q", connection=connection)
    job = jobwire_rq.enqueue(queue, die, owner=user)
    worker = start_worker(server, redis_server, queue.name, "redis", "JobwireWorker")
    seen = await client.recv_until(
        lambda m: m.get("jobId") == job.id and m.get("type") == "job_completed",
        timeout=6 * WAIT)
    await wait_exit(worker)
    done = seen[-1]
    assert done["status"] == "failed" and done["error"]["type"] == "WorkHorseKilled"
    await client.close()
