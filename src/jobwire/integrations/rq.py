"""Live status for RQ jobs.

```python
from jobwire.integrations import rq as jobwire_rq

job = jobwire_rq.enqueue(queue, crawl, "example.org", owner="user_789")   # → queued
# in the job function:   jobwire_rq.report_progress(45, "page 120/300")
# run the worker with:   rq worker --worker-class jobwire.integrations.rq.JobwireWorker
```

The worker class (`JobwireWorker`, or `JobwireSimpleWorker` without a fork per job) runs
jobs as `JobwireJob`, which reports each job with its RQ id as `jobId`: `processing` when it
starts, then `completed` with the return value as `result`, or `failed` with `{"type",
"message"}` when it raises or times out (`JobTimeoutException`); a failure that will be
retried (`Retry(max=…)`) keeps it `processing` ("Retrying after …"). A work horse that dies
(killed, out of memory) is reported `failed` by the worker, a job stopped with
`send_stop_job_command` `cancelled`. `rq worker --job-class jobwire.integrations.rq.JobwireJob`
works too, without those last two.

The owner is the job's `meta[user_from]` (what `enqueue(…, owner=…)` sets) or else its
keyword argument `user_from` (default `user_id`); jobs without one are not reported. The
publisher is what `install(...)` set in the worker (call it in the module that defines the
jobs, or anywhere the worker imports), or else comes from the environment
(`JOBWIRE_REDIS_URL`, or `JOBWIRE_URL` + `JOBWIRE_TOKEN`; see `jobwire.reporter`).
Publishing never fails a job; no publisher configured at all does.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable
from typing import Any

from rq import Queue, SimpleWorker, Worker
from rq import get_current_job as _rq_current_job
from rq.job import Job

from ..errors import ConfigError
from ..reporter import (
    JobStatus,
    default_publisher,
    make_publisher,
    safe_id,
)
from ..reporter.job import _current, progress_of

log = logging.getLogger("jobwire.rq")

__all__ = ["JobwireJob", "JobwireSimpleWorker", "JobwireWorker", "RQIntegration", "enqueue",
           "install", "report_progress"]

UserFrom = str | Callable[[Job], Any]


class RQIntegration:
    """The publisher and owner rule for RQ jobs in this process (see `install`)."""

    def __init__(self, publisher: Any, *, user_from: UserFrom = "user_id"):
        if not (isinstance(user_from, str) and user_from) and not callable(user_from):
            raise ConfigError("user_from must be a meta key/argument name or a callable")
        self.publisher = publisher
        self.user_from = user_from
        self.running: dict[str, JobStatus] = {}  # job id → reporter, in this process
        self.ended: set[str] = set()  # job ids whose terminal update this process sent
        self._lock = threading.Lock()

    def user_of(self, job: Job) -> str | None:
        if callable(self.user_from):
            user = self.user_from(job)
        else:
            user = (job.meta or {}).get(self.user_from)
            if user is None:
                try:
                    user = (job.kwargs or {}).get(self.user_from)
                except Exception:  # arguments that cannot be loaded: no owner from them
                    user = None
        return None if user is None else str(user)

    def reporter(self, job: Job, user: str | None = None) -> JobStatus | None:
        user = user if user is not None else self.user_of(job)
        if user is None:
            log.debug("job %s has no user: not reported", job.id)
            return None
        worker = getattr(job, "worker_name", None)
        try:
            return JobStatus(job.id, user, self.publisher, start=None,
                             worker_id=safe_id(worker) if worker else None)
        except ConfigError as exc:
            log.error("job %s not reported: %s", job.id, exc)
            return None

    def note_ended(self, job_id: str) -> None:
        """A failure this process reported itself (the worker's backstop skips it)."""
        with self._lock:
            if len(self.ended) > 10000:  # only a worker without the backstop collects them
                self.ended.clear()
            self.ended.add(job_id)

    def job(self, job_id: str | None = None) -> JobStatus | None:
        if job_id is None:
            current = _rq_current_job()
            job_id = current.id if current is not None else None
        with self._lock:
            return self.running.get(job_id) if job_id is not None else None


_installed: RQIntegration | None = None
_install_lock = threading.Lock()


def install(publisher: Any = None, *, redis_url: str | None = None, url: str | None = None,
            token: str | None = None, prefix: str | None = None,
            user_from: UserFrom = "user_id") -> RQIntegration:
    """Configure RQ reporting in this process: `publisher` (a `RedisPublisher`/
    `HttpPublisher`), else one from `redis_url` + `prefix` or `url` + `token`, else from the
    environment (none: `ConfigError`). `user_from`: the meta key, else keyword argument,
    naming the owner, or a callable `(job) -> user id | None`."""
    global _installed
    if publisher is None:
        publisher = (make_publisher(redis_url, url=url, token=token, prefix=prefix)
                     if redis_url or url or token else default_publisher())
    integration = RQIntegration(publisher, user_from=user_from)
    with _install_lock:
        _installed = integration
    return integration


def _integration() -> RQIntegration:
    global _installed
    with _install_lock:
        if _installed is None:
            _installed = RQIntegration(default_publisher())  # the environment's
        return _installed


def enqueue(queue: Queue, func: Any, *args: Any, owner: str, **kwargs: Any) -> Job:
    """`queue.enqueue(func, *args, **kwargs)` for user `owner`: records the owner in the
    job's meta and publishes `queued` before the job can start. If enqueueing fails, the
    job is reported `failed` and the error raised."""
    integration = _integration()
    job_id = kwargs.pop("job_id", None) or uuid.uuid4().hex
    key = integration.user_from if isinstance(integration.user_from, str) else "user_id"
    meta = {**(kwargs.pop("meta", None) or {}), key: owner}
    reporter = JobStatus(job_id, owner, integration.publisher, start=None)  # bad id: raises
    reporter.queued()
    try:
        return queue.enqueue(func, *args, job_id=job_id, meta=meta, **kwargs)
    except Exception as exc:
        reporter.fail(exc)
        raise


class JobwireJob(Job):
    """An RQ job that reports its own status while it runs (in the work horse)."""

    def perform(self) -> Any:
        self.func  # noqa: B018 - import the job's module first: it may call install()
        integration = _integration()
        reporter = integration.reporter(self)
        if reporter is None:
            return super().perform()
        with integration._lock:
            integration.running[self.id] = reporter
        token = _current.set(reporter)
        try:
            reporter.start()
            try:
                value = super().perform()
            except BaseException as exc:
                if isinstance(exc, Exception) and self.should_retry:
                    reporter.progress(None, f"Retrying after {type(exc).__name__}: {exc}")
                else:
                    if isinstance(exc, KeyboardInterrupt):
                        reporter.cancel(exc)
                    else:
                        reporter.fail(exc)
                    integration.note_ended(self.id)
                raise
            reporter.complete(value)
            return value
        finally:
            _current.reset(token)
            with integration._lock:
                integration.running.pop(self.id, None)


class _Backstop:
    """Reports what the work horse could not: it died, or it was stopped on request."""

    job_class = JobwireJob

    def __init__(self, *args: Any, job_class: Any = None, **kwargs: Any):
        # `rq worker` always passes its --job-class, `rq.job.Job` by default: run jobs as
        # JobwireJob unless another class was chosen.
        if job_class is None or job_class in (Job, "rq.job.Job"):
            job_class = JobwireJob
        super().__init__(*args, job_class=job_class, **kwargs)

    def handle_job_failure(self, job: Job, queue: Queue, started_job_registry: Any = None,
                           exc_string: str = "", execution: Any = None) -> None:
        stopped = getattr(self, "_stopped_job_id", None) == job.id
        retry = job.should_retry and not stopped
        super().handle_job_failure(job, queue,  # type: ignore[misc]
                                   started_job_registry=started_job_registry,
                                   exc_string=exc_string, execution=execution)
        try:
            integration = _integration()
            with integration._lock:
                reported = job.id in integration.ended
                integration.ended.discard(job.id)
            if reported:  # the job reported its own end
                return
            if retry:
                return
            reporter = integration.reporter(job)
            if reporter is None:
                return
            last = (exc_string.strip().splitlines() or ["the work horse died"])[-1]
            if stopped:
                reporter.cancel({"type": "Stopped", "message": "stopped on request"})
            else:
                reporter.fail({"type": "WorkHorseKilled", "message": last[:1024]})
        except Exception:  # never break the worker
            log.exception("job %s: could not report its failure", job.id)


class JobwireWorker(_Backstop, Worker):
    """`rq worker --worker-class jobwire.integrations.rq.JobwireWorker`"""


class JobwireSimpleWorker(_Backstop, SimpleWorker):
    """Like `JobwireWorker`, running each job in the worker process itself (no fork)."""


def report_progress(progress: float | None = None, operation: str | None = None, *,
                    job_id: str | None = None) -> bool:
    """From inside an RQ job: report its progress (0-100) and/or current operation. Returns
    whether it was published; outside a reported job it does nothing. Never raises for a
    publishing failure."""
    found = _installed.job(job_id) if _installed is not None else None
    return progress_of(found, job_id, progress, operation)

