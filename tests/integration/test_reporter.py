"""The job-side reporter's two worker publishers against real processes: straight to a
private redis-server, and over HTTP to a real `jobwire serve`."""

from __future__ import annotations

import asyncio
import multiprocessing
import subprocess
import threading

import httpx
import pytest

from jobwire.broker.redis import RedisBroker
from jobwire.errors import InvalidUpdate
from jobwire.publisher import AsyncPublisher, Publisher
from jobwire.reporter import HttpPublisher, RedisPublisher, async_job_status, job_status
from tests.conftest import WAIT, eventually, start_redis, start_server


@pytest.fixture(scope="module")
def redis():
    server = start_redis()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def redis_url(redis):
    return redis.url


def redis_clients(redis) -> list[dict[str, str]]:
    """CLIENT LIST, as redis-cli prints it: one `key=value ...` line per connection."""
    out = subprocess.run(["redis-cli", "-p", str(redis.port), "CLIENT", "LIST"],
                         capture_output=True, check=True, timeout=WAIT).stdout.decode()
    return [dict(f.split("=", 1) for f in line.split()) for line in out.splitlines()]


async def _state(url: str, job_id: str, prefix: str = "jobwire:"):
    broker = RedisBroker(url, prefix=prefix)
    try:
        return await broker.job(job_id)
    finally:
        await broker.stop()


async def test_redis_publisher_publishes_without_starting_a_subscriber(redis, redis_url):
    with RedisPublisher(redis_url, prefix="unit:") as pub:
        with job_status("rjob_1", "user_1", publisher=pub) as job:
            job.progress(40, "page 4/10")
            job.result = {"pages": 10}
        assert [t.name for t in threading.enumerate() if t.name == "jobwire-publisher"]
        clients = redis_clients(redis)
        assert len(clients) >= 2  # the publisher's connection and redis-cli's
        assert all(c["sub"] == c["psub"] == "0" for c in clients), clients
    state = await _state(redis_url, "rjob_1", "unit:")
    assert state["type"] == "job_completed" and state["result"] == {"pages": 10}
    assert state["seq"] >= 2
    with pytest.raises(InvalidUpdate):  # local validation, in the caller
        RedisPublisher(redis_url).update("rjob_1", "user_1", "processing", 101)


async def test_held_progress_goes_out_on_the_publishers_own_loop(redis_url):
    """Progress faster than the conflation rate is held; the publisher's background loop
    delivers the latest value without another report."""
    pub = RedisPublisher(redis_url, prefix="unit:")
    try:
        job = job_status("rjob_2", "user_1", publisher=pub)
        job.__enter__()
        job.progress(10)
        answers = pub.update("rjob_2", "user_1", "processing", 20, "held")
        assert answers["id"] is None  # held by conflation

        async def flushed():
            state = await _state(redis_url, "rjob_2", "unit:")
            return state["progress"] == 20 and state["currentOperation"] == "held"

        await eventually(flushed)
        job.__exit__(None, None, None)
    finally:
        pub.close()


async def test_redis_publisher_is_thread_safe(redis_url):
    with RedisPublisher(redis_url, prefix="unit:") as pub:
        def run(n: int) -> None:
            with job_status(f"rjob_t{n}", "user_1", publisher=pub) as job:
                for p in range(1, 6):
                    job.progress(20 * p)

        threads = [threading.Thread(target=run, args=(n,)) for n in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(WAIT)
    for n in range(8):
        assert (await _state(redis_url, f"rjob_t{n}", "unit:"))["status"] == "completed"


def _child_publishes(pub: RedisPublisher, job_id: str) -> None:
    with job_status(job_id, "user_1", publisher=pub) as job:
        job.result = "from the child"


async def test_redis_publisher_survives_a_fork(redis_url):
    """A Celery prefork child or an RQ work horse gets its own loop and connections."""
    pub = RedisPublisher(redis_url, prefix="unit:")
    try:
        pub.update("rjob_f0", "user_1", "queued")  # the parent's loop is running
        child = multiprocessing.get_context("fork").Process(
            target=_child_publishes, args=(pub, "rjob_f1"))
        child.start()
        await asyncio.to_thread(child.join, 3 * WAIT)
        assert child.exitcode == 0
        assert (await _state(redis_url, "rjob_f1", "unit:"))["result"] == "from the child"
        pub.update("rjob_f0", "user_1", "completed")  # the parent's loop still works
        assert (await _state(redis_url, "rjob_f0", "unit:"))["status"] == "completed"
    finally:
        pub.close()


async def test_redis_publisher_reports_an_unreachable_redis_without_breaking_the_job(caplog):
    dead = start_redis()
    dead.stop()
    with RedisPublisher(dead.url, timeout=WAIT) as pub:
        with job_status("rjob_x", "user_1", publisher=pub) as job:
            job.progress(50)
            ran = True
    assert ran and job.failures >= 1 and "could not publish" in caplog.text


@pytest.fixture(scope="module")
def http_server():
    server = start_server()
    yield server
    server.stop()


async def test_http_publishers_report_through_the_server(http_server, uid):
    token = http_server.token("worker-1", "publisher")
    with HttpPublisher(http_server.url, token) as pub:
        with job_status(f"{uid}-h1", "user_1", publisher=pub) as job:
            job.progress(30, "over HTTP")
            job.result = {"ok": True}
    with Publisher(http_server.url, token) as plain:  # the plain Publisher fits as well
        with pytest.raises(KeyError):
            with job_status(f"{uid}-h2", "user_1", publisher=plain):
                raise KeyError("missing")
    async with AsyncPublisher(http_server.url, token) as apub:
        async with async_job_status(f"{uid}-h3", "user_1", publisher=apub) as ajob:
            await ajob.progress(60)
    async with httpx.AsyncClient(base_url=http_server.url, timeout=WAIT) as http:
        headers = http_server.headers("user_1")
        one = (await http.get(f"/api/v2/jobs/{uid}-h1", headers=headers)).json()
        two = (await http.get(f"/api/v2/jobs/{uid}-h2", headers=headers)).json()
        three = (await http.get(f"/api/v2/jobs/{uid}-h3", headers=headers)).json()
    assert one["status"] == "completed" and one["result"] == {"ok": True}
    assert two["status"] == "failed" and two["error"] == {"type": "KeyError",
                                                          "message": "'missing'"}
    assert three["status"] == "completed"


async def test_a_bad_publisher_token_is_logged_and_the_job_goes_on(http_server, caplog):
    with HttpPublisher(http_server.url, http_server.token("u", "user")) as pub:  # not publisher
        with job_status("hjob_bad", "user_1", publisher=pub) as job:
            job.progress(10)
    assert job.failures >= 2 and "403" in caplog.text
