"""The job-side reporter: what a job publishes, and that publishing never breaks the job.
The worker publishers against real processes are in tests/integration/test_reporter.py."""

from __future__ import annotations

import asyncio
import math

import pytest

from jobwire.errors import BrokerUnavailable, ConfigError, OwnerMismatch
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
from tests.conftest import WAIT


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
