"""The job-side reporter: what a job publishes, that publishing never breaks the job, and the
two worker publishers (straight to a real private redis-server, and over HTTP to a real
`jobwire serve`)."""

from __future__ import annotations

import asyncio
import math
import multiprocessing
import threading

import httpx
import pytest

from jobwire.broker.redis import RedisBroker
from jobwire.errors import BrokerUnavailable, ConfigError, InvalidUpdate, OwnerMismatch
from jobwire.publisher import AsyncPublisher, Publisher
from jobwire.reporter import (
    HttpPublisher,
    RedisPublisher,
    async_job_status,
    current_job,
    job_status,
    jsonable,
    make_publisher,
    report_progress,
    reported,
    safe_id,
)
from tests.conftest import WAIT, eventually, start_redis, start_server


class Recorder:
    """A synchronous publisher that records updates; `fail_with` makes it raise."""

    def __init__(self) -> None:
        self.updates: list[dict] = []
        self.fail_with: Exception | None = None

    def update(self, job_id, user_id, status, progress=None, current_operation=None, **extra):
        if self.fail_with is not None:
            raise self.fail_with
        self.updates.append({"jobId": job_id, "userId": user_id, "status": status,
                             "progress": progress, "currentOperation": current_operation,
                             **extra})
        return {"jobId": job_id, "id": f"{len(self.updates)}-0", "seq": len(self.updates)}

    @property
    def statuses(self) -> list[str]:
        return [u["status"] for u in self.updates]


class AsyncRecorder(Recorder):
    async def update(self, *args, **kwargs):  # type: ignore[override]
        return Recorder.update(self, *args, **kwargs)


def test_a_clean_block_reports_processing_progress_and_completed_with_its_result():
    pub = Recorder()
    with job_status("job_1", "user_1", publisher=pub, worker_id="w1") as job:
        assert current_job() is job
        job.progress(45, "page 120/300")
        assert report_progress(50.5) is True
        job.result = {"pages": 300, "errors": 0}
    assert current_job() is None
    assert pub.statuses == ["processing", "processing", "processing", "completed"]
    assert pub.updates[1]["progress"] == 45
    assert pub.updates[1]["currentOperation"] == "page 120/300"
    assert pub.updates[2]["progress"] == 50.5
    assert pub.updates[-1]["result"] == {"pages": 300, "errors": 0}
    assert {u["workerId"] for u in pub.updates} == {"w1"}


def test_an_exception_reports_failed_with_its_type_and_message_and_propagates():
    pub = Recorder()
    with pytest.raises(ZeroDivisionError), job_status("job_1", "user_1", publisher=pub) as job:
        job.progress(10)
        1 / 0  # noqa: B018
    assert pub.statuses == ["processing", "processing", "failed"]
    assert pub.updates[-1]["error"] == {"type": "ZeroDivisionError",
                                        "message": "division by zero"}


def test_keyboard_interrupt_reports_cancelled():
    pub = Recorder()
    with pytest.raises(KeyboardInterrupt), job_status("job_1", "user_1", publisher=pub):
        raise KeyboardInterrupt
    assert pub.statuses == ["processing", "cancelled"]


def test_explicit_terminal_updates_win_and_nothing_follows_them():
    pub = Recorder()
    with job_status("job_1", "user_1", publisher=pub, start="queued") as job:
        job.start("warming up")
        job.fail({"reason": "quota"})
        assert job.progress(99) is False
    assert pub.statuses == ["queued", "processing", "failed"]
    assert pub.updates[-1]["error"] == {"reason": "quota"}


def test_progress_is_clamped_never_regresses_and_bad_values_are_dropped(caplog):
    pub = Recorder()
    with job_status("job_1", "user_1", publisher=pub) as job:
        job.progress(60)
        job.progress(40)  # never lower than what was reported: 60
        job.progress(100.0000001)  # float noise
        job.progress(math.nan, "still working")
        job.progress(True)  # type: ignore[arg-type]
        job.progress(-3, "x" * 5000)
    progress = [u["progress"] for u in pub.updates[1:-1]]
    assert progress == [60, 60, 100, None, None, 100]
    assert len(pub.updates[-2]["currentOperation"]) == 1024
    assert "not a finite number" in caplog.text


def test_publishing_failures_never_break_the_job_and_pause_progress_reports(caplog):
    pub = Recorder()
    with job_status("job_1", "user_1", publisher=pub) as job:
        pub.fail_with = BrokerUnavailable("redis is down")
        assert job.progress(10) is False
        pub.fail_with = None
        assert job.progress(20) is False  # skipped for a while: no timeout per report
        job.result = 7
    assert pub.statuses == ["processing", "completed"]  # the terminal update is always tried
    assert job.failures == 1 and "redis is down" in caplog.text


def test_a_refused_job_stops_reporting_and_the_job_goes_on(caplog):
    pub = Recorder()
    with job_status("job_1", "user_1", publisher=pub) as job:
        pub.fail_with = OwnerMismatch("job job_1 belongs to another user")
        job.progress(10)
        pub.fail_with = None
        assert job.progress(20) is False and job.finished
        value = "the job still ran"
    assert value == "the job still ran" and pub.statuses == ["processing"]  # nothing after
    assert "reporting stops" in caplog.text


def test_unexpected_publisher_errors_are_logged_not_raised(caplog):
    pub = Recorder()
    pub.fail_with = RuntimeError("bug in a custom publisher")
    with job_status("job_1", "user_1", publisher=pub):
        pass
    assert "bug in a custom publisher" in caplog.text


def test_configuration_errors_raise(monkeypatch):
    for name in ("JOBWIRE_REDIS_URL", "JOBWIRE_URL", "JOBWIRE_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ConfigError, match="job_id"):
        job_status("job 1", "user_1", publisher=Recorder())
    with pytest.raises(ConfigError, match="user_id"):
        job_status("job_1", "", publisher=Recorder())
    with pytest.raises(ConfigError, match="async_job_status"):
        job_status("job_1", "u", publisher=AsyncRecorder())
    with pytest.raises(ConfigError, match="no publisher configured"):
        make_publisher()
    with pytest.raises(ConfigError, match="redis_url"):
        RedisPublisher("http://127.0.0.1:6379")
    with pytest.raises(ConfigError, match="token"):
        HttpPublisher("http://127.0.0.1:3000", "")


def test_make_publisher_takes_the_servers_settings_from_the_environment(monkeypatch):
    monkeypatch.setenv("JOBWIRE_REDIS_URL", "redis://127.0.0.1:1/0")
    monkeypatch.setenv("JOBWIRE_REDIS_PREFIX", "app1:")
    monkeypatch.setenv("JOBWIRE_REDIS_CHANNEL_PREFIX", "blue-")
    monkeypatch.setenv("JOBWIRE_MAX_UPDATES_PER_JOB_PER_SECOND", "4")
    pub = make_publisher()
    assert isinstance(pub, RedisPublisher) and pub.prefix == "app1:"
    assert pub.broker_options["channel_prefix"] == "blue-"
    assert pub.broker_options["max_updates_per_second"] == 4
    http = make_publisher(url="http://127.0.0.1:3000", token="t")
    assert isinstance(http, HttpPublisher)


def test_results_are_made_json_and_kept_small():
    assert jsonable({"a": (1, 2), 3: {4}}) == {"a": [1, 2], "3": "{4}"}
    big = jsonable("x" * 100_000)
    assert big["truncated"] is True and len(big["repr"]) == 1000
    assert safe_id("celery@host-1.example") == "celery_host-1.example"


def test_the_reported_decorator_takes_ids_from_arguments_and_returns_the_result():
    pub = Recorder()

    @reported(pub)
    def crawl(site, *, job_id, user_id):
        report_progress(50, f"crawling {site}")
        return {"site": site}

    assert crawl("example.org", job_id="job_9", user_id="user_9") == {"site": "example.org"}
    assert pub.statuses == ["processing", "processing", "completed"]
    assert pub.updates[-1]["result"] == {"site": "example.org"}
    assert {u["jobId"] for u in pub.updates} == {"job_9"}

    @reported(pub, job_id=lambda a: f"crawl-{a['n']}", user_id="owner")
    def failing(n, owner):
        raise ValueError(f"no {n}")

    with pytest.raises(ValueError):
        failing(3, "user_9")
    assert pub.updates[-1]["jobId"] == "crawl-3"
    assert pub.updates[-1]["error"] == {"type": "ValueError", "message": "no 3"}
    assert report_progress(1) is False  # outside a job: nothing


async def test_async_job_status_and_decorator_report_the_same_way():
    pub = AsyncRecorder()
    async with async_job_status("job_1", "user_1", publisher=pub) as job:
        await job.progress(30, "step 1")
        job.result = "ok"
    assert pub.statuses == ["processing", "processing", "completed"]

    @reported(pub)
    async def step(job_id, user_id):
        await current_job().progress(70)  # type: ignore[union-attr]
        raise RuntimeError("late failure")

    with pytest.raises(RuntimeError):
        await step("job_2", "user_1")
    assert [u["status"] for u in pub.updates if u["jobId"] == "job_2"] == \
        ["processing", "processing", "failed"]


async def test_a_cancelled_async_job_reports_cancelled():
    pub = AsyncRecorder()
    started = asyncio.Event()

    async def job():
        async with async_job_status("job_1", "user_1", publisher=pub):
            started.set()
            await asyncio.Event().wait()

    task = asyncio.create_task(job())
    await asyncio.wait_for(started.wait(), WAIT)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert pub.statuses == ["processing", "cancelled"]


async def test_a_sync_publisher_works_in_async_jobs():
    pub = Recorder()
    async with async_job_status("job_1", "user_1", publisher=pub) as job:
        await job.progress(5)
    assert pub.statuses == ["processing", "processing", "completed"]


# --- the worker publishers against real processes ------------------------------------------


@pytest.fixture(scope="module")
def redis_url():
    server = start_redis()
    yield server.url
    server.stop()


async def _state(url: str, job_id: str, prefix: str = "jobwire:"):
    broker = RedisBroker(url, prefix=prefix)
    try:
        return await broker.job(job_id)
    finally:
        await broker.stop()


async def test_redis_publisher_publishes_without_starting_a_subscriber(redis_url):
    with RedisPublisher(redis_url, prefix="unit:") as pub:
        with job_status("rjob_1", "user_1", publisher=pub) as job:
            job.progress(40, "page 4/10")
            job.result = {"pages": 10}
        assert [t.name for t in threading.enumerate() if t.name == "jobwire-publisher"]
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
