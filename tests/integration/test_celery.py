"""Celery tasks report live status: a real `celery worker` process on a private redis-server
(the Celery broker and jobwire's Redis), a real `jobwire serve` on that Redis, and a user
following over WebSocket.

This module is also the Celery app the worker runs (`celery -A tests.integration.test_celery
worker`): it reads its broker and jobwire settings from the environment the test gives it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import redis
from celery import Celery

from jobwire.integrations import celery as jobwire_celery
from jobwire.reporter import RedisPublisher
from tests.conftest import WAIT, connect, start_redis, start_server

ROOT = Path(__file__).resolve().parents[2]
BROKER = os.environ.get("JOBWIRE_TEST_CELERY_BROKER", "memory://")

app = Celery("jobwire_test_celery", broker=BROKER)
app.conf.update(task_ignore_result=True, broker_connection_retry_on_startup=True,
                worker_hijack_root_logger=False)

if os.environ.get("JOBWIRE_TEST_CELERY_WORKER"):
    # The worker: the publisher comes from JOBWIRE_REDIS_URL (the servers' environment).
    jobwire_celery.install(app)


def _gate(name: str) -> None:
    """Block the task until the test opens gate `name` (bounded)."""
    with redis.Redis.from_url(BROKER) as r:
        if r.blpop([name], timeout=int(3 * WAIT)) is None:
            raise TimeoutError(f"gate {name} was not opened")


@app.task(name="jobwire_test.crawl")
def crawl(pages: int, gate: str, user_id: str | None = None) -> dict[str, int]:
    jobwire_celery.report_progress(50, f"page 1/{pages}")
    _gate(gate)  # the test has seen the progress event: finish
    for page in range(2, pages + 1):
        jobwire_celery.report_progress(100 * page / pages, f"page {page}/{pages}")
    return {"pages": pages, "errors": 0}


@app.task(name="jobwire_test.explode")
def explode(user_id: str | None = None) -> None:
    jobwire_celery.report_progress(10, "about to fail")
    raise ValueError("the site answered 503 repeatedly")


@app.task(name="jobwire_test.anonymous")
def anonymous() -> str:
    return "not reported: no user"


@pytest.fixture(scope="module")
def stack():
    redis_server = start_redis()
    server = start_server(redis_url=redis_server.url)
    env = {**os.environ, "JOBWIRE_TEST_CELERY_WORKER": "1",
           "JOBWIRE_TEST_CELERY_BROKER": redis_server.url, "JOBWIRE_REDIS_URL": redis_server.url}
    pool = os.environ.get("JOBWIRE_TEST_CELERY_POOL", "solo")  # prefork and threads pass too
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "tests.integration.test_celery", "worker",
         f"--pool={pool}", "-c", "1", "--without-gossip", "--without-mingle",
         "--without-heartbeat", "-l", "warning"], cwd=ROOT, env=env)
    # The sending side (this process) publishes `queued` straight to the same Redis.
    app.conf.broker_url = redis_server.url
    publisher = RedisPublisher(redis_server.url)
    integration = jobwire_celery.install(app, publisher)
    try:
        yield server, redis_server, worker
    finally:
        integration.uninstall()
        publisher.close()
        if worker.poll() is None:
            worker.send_signal(signal.SIGTERM)
            try:
                worker.wait(10)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait(5)
        server.stop()
        redis_server.stop()


def _job_events(messages, job_id):
    return [m for m in messages if m.get("jobId") == job_id]


async def test_task_progress_and_result_reach_the_user_live(stack, uid):
    server, redis_server, worker = stack
    user = f"{uid}-u"
    client = await connect(server, server.token(user))
    await client.subscribe(all=True)
    gate = f"{uid}-gate"
    result = crawl.apply_async(args=[4, gate], headers={"user_id": user})

    # The worker may still be starting: allow for it once, every wait stays bounded.
    seen = await client.recv_until(
        lambda m: m.get("jobId") == result.id and m.get("progress") == 50, timeout=6 * WAIT)
    with redis.Redis.from_url(redis_server.url) as r:
        r.rpush(gate, "go")
    seen += await client.recv_until(lambda m: m.get("type") == "job_completed")
    events = _job_events(seen, result.id)

    assert [e["status"] for e in events][:2] == ["queued", "processing"]
    progress = next(e for e in events if e.get("progress") == 50)
    assert progress["type"] == "status_update"
    assert progress["currentOperation"] == "page 1/4"
    assert progress["userId"] == user
    assert progress["workerId"].startswith("celery_")  # celery@host, as an id
    done = events[-1]
    assert done["type"] == "job_completed" and done["status"] == "completed"
    assert done["result"] == {"pages": 4, "errors": 0} and done["progress"] == 100
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert worker.poll() is None
    await client.close()


async def test_failing_task_is_reported_failed_with_its_error(stack, uid):
    server, _, worker = stack
    user = f"{uid}-u"
    client = await connect(server, server.token(user))
    await client.subscribe(all=True)
    result = explode.delay(user_id=user)  # the owner from a keyword argument
    seen = await client.recv_until(
        lambda m: m.get("jobId") == result.id and m.get("type") == "job_completed",
        timeout=6 * WAIT)
    done = seen[-1]
    assert done["status"] == "failed"
    assert done["error"] == {"type": "ValueError",
                             "message": "the site answered 503 repeatedly"}
    assert done["userId"] == user
    assert "queued" in [e["status"] for e in _job_events(seen, result.id)]
    assert worker.poll() is None  # the failure is the task's, the worker goes on
    await client.close()


async def test_tasks_without_a_user_are_not_reported_and_others_see_nothing(stack, uid):
    server, _, _ = stack
    user, other = f"{uid}-u", f"{uid}-other"
    spy = await connect(server, server.token(other))
    await spy.subscribe(all=True)
    client = await connect(server, server.token(user))
    await client.subscribe(all=True)
    anonymous.delay()
    result = explode.delay(user_id=user)  # runs after `anonymous` on the solo worker
    seen = await client.recv_until(
        lambda m: m.get("jobId") == result.id and m.get("type") == "job_completed",
        timeout=6 * WAIT)
    assert {m["jobId"] for m in seen if "jobId" in m} == {result.id}
    await spy.send({"type": "ping"})
    assert (await spy.recv())["type"] == "pong"  # nothing of the other user's jobs
    await spy.close()
    await client.close()
