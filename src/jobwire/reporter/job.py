"""The job side: context managers, decorator and helpers that report a job's life."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import inspect
import math
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx

from ..errors import BrokerUnavailable, ConfigError, Conflict, JobFinished, OwnerMismatch
from ..protocol import MAX_OPERATION_CHARS, Status
from .common import QUIET_SECONDS, _cancelled, _check_id, error_of, jsonable, log
from .publishers import default_publisher

_current: contextvars.ContextVar[JobStatus | AsyncJobStatus | None] = contextvars.ContextVar(
    "jobwire_current_job", default=None)


def current_job() -> JobStatus | AsyncJobStatus | None:
    """The job reporter of the code running now (inside `job_status`, `reported`, a Celery
    task or an RQ job), or None."""
    return _current.get()


def progress_of(found: JobStatus | None, job_id: str | None, progress: float | None,
                operation: str | None) -> bool:
    """Report progress for an integration's job: the one it `found` by id, else the job
    running now if it matches `job_id` (or no id was named). False when there is none."""
    job = found
    if job is None:
        current = current_job()
        if isinstance(current, JobStatus) and job_id in (None, current.job_id):
            job = current
    return job.progress(progress, operation) if job is not None else False


def report_progress(progress: float | None = None, operation: str | None = None) -> bool:
    """Report progress (0-100) and/or the current operation of the current job. Outside a
    job it does nothing and returns False. Never raises for a publishing failure."""
    job = _current.get()
    if job is None:
        log.debug("report_progress outside a job: ignored")
        return False
    if isinstance(job, AsyncJobStatus):
        raise TypeError("in an async job use `await current_job().progress(...)`")
    return job.progress(progress, operation)


class _Base:
    def __init__(self, job_id: str, user_id: str, publisher: Any, *,
                 worker_id: str | None, start: str | None, operation: str | None,
                 quiet_seconds: float):
        self.job_id = _check_id("job_id", job_id)
        self.user_id = _check_id("user_id", user_id)
        self.worker_id = None if worker_id is None else _check_id("worker_id", worker_id)
        if start not in (None, "queued", "processing"):
            raise ConfigError(f"start must be None, 'queued' or 'processing', got {start!r}")
        self.publisher = publisher
        self.start_status = start
        self.operation = operation
        self.quiet_seconds = quiet_seconds
        self.status: str | None = None  # the last status this reporter sent
        self.sent_progress = 0.0
        self.result: Any = None  # published with `completed` when the block ends cleanly
        self.published = 0
        self.failures = 0
        self._quiet_until = 0.0
        self._dead = False
        self._token: contextvars.Token[Any] | None = None

    @property
    def finished(self) -> bool:
        return self._dead or (self.status is not None and Status(self.status).terminal)

    def _prepare(self, status: str, progress: Any, operation: Any,
                 extra: dict[str, Any]) -> tuple[tuple[Any, ...], dict[str, Any]] | None:
        """The update to send, or None when there is nothing to send."""
        if self.finished:
            log.debug("job %s already %s: %s not sent", self.job_id, self.status, status)
            return None
        progress_only = status == self.status
        if not Status(status).terminal and time.monotonic() < self._quiet_until:
            return None  # the broker failed just now: do not slow the job down
        if progress is not None:
            if isinstance(progress, bool) or not isinstance(progress, int | float) \
                    or not math.isfinite(progress):
                log.warning("job %s: progress %r is not a finite number; not sent",
                            self.job_id, progress)
                progress = None
            else:
                progress = min(100.0, max(0.0, float(progress)))
                if progress_only:
                    progress = max(progress, self.sent_progress)  # never a regression
                if progress == int(progress):
                    progress = int(progress)
        if operation is not None:
            operation = str(operation)[:MAX_OPERATION_CHARS]
        if self.worker_id is not None:
            extra = {"workerId": self.worker_id, **extra}
        return (self.job_id, self.user_id, status, progress, operation), extra

    def _sent(self, status: str, progress: Any) -> None:
        self.status = status
        self.published += 1
        if progress is not None:
            self.sent_progress = float(progress)
        elif status == Status.COMPLETED:
            self.sent_progress = 100.0

    def _failed(self, status: str, exc: Exception) -> None:
        """Log a publishing failure; the job goes on."""
        self.failures += 1
        if isinstance(exc, OwnerMismatch | JobFinished):
            # Refused for good (another user's job id, a job that already ended): every
            # later update would be refused too.
            self._dead = True
            log.warning("job %s: update refused, reporting stops: %s", self.job_id, exc)
        elif isinstance(exc, Conflict):
            log.info("job %s: %s refused: %s", self.job_id, status, exc)
        elif isinstance(exc, BrokerUnavailable | httpx.TransportError | OSError):
            self._quiet_until = time.monotonic() + self.quiet_seconds
            log.warning("job %s: could not publish %s (%s); progress reports pause for %g s",
                        self.job_id, status, exc, self.quiet_seconds)
        else:  # e.g. a bad or expired publisher token (Unauthorized), an unexpected error
            log.error("job %s: could not publish %s: %s: %s", self.job_id, status,
                      type(exc).__name__, exc)

    def _finish_args(self, exc: BaseException | None) -> tuple[str, dict[str, Any]]:
        if exc is None:
            return "completed", {"result": jsonable(self.result)}
        if _cancelled(exc):
            return "cancelled", {"error": error_of(exc)}
        return "failed", {"error": error_of(exc)}


class JobStatus(_Base):
    """Reports one job from synchronous code. Use `job_status(...)` to make one."""

    def __init__(self, job_id: str, user_id: str, publisher: Any = None, *,
                 worker_id: str | None = None, start: str | None = "processing",
                 operation: str | None = None, quiet_seconds: float = QUIET_SECONDS):
        publisher = default_publisher() if publisher is None else publisher
        update = getattr(publisher, "update", None)
        if update is None or inspect.iscoroutinefunction(update):
            raise ConfigError(f"{type(publisher).__name__} cannot publish from synchronous "
                              "code; use RedisPublisher, HttpPublisher or Publisher, or "
                              "async_job_status")
        super().__init__(job_id, user_id, publisher, worker_id=worker_id, start=start,
                         operation=operation, quiet_seconds=quiet_seconds)
        self._lock = threading.RLock()

    def _send(self, status: str, progress: Any = None, operation: Any = None,
              **extra: Any) -> bool:
        with self._lock:
            prepared = self._prepare(status, progress, operation, extra)
            if prepared is None:
                return False
            args, extra = prepared
            try:
                self.publisher.update(*args, **extra)
            except Exception as exc:
                self._failed(status, exc)
                return False
            self._sent(status, args[3])
            return True

    def queued(self, operation: str | None = None) -> bool:
        return self._send("queued", None, operation)

    def start(self, operation: str | None = None) -> bool:
        """`processing` (keeps the progress so far)."""
        return self._send("processing", None, operation)

    def progress(self, progress: float | None = None, operation: str | None = None) -> bool:
        """Progress 0-100 (clamped; never lower than already reported) and/or the current
        operation. Returns whether it was published."""
        return self._send("processing", progress, operation)

    def complete(self, result: Any = None, operation: str | None = None) -> bool:
        self.result = result if result is not None else self.result
        return self._send("completed", None, operation, result=jsonable(self.result))

    def fail(self, error: BaseException | Any = None, operation: str | None = None) -> bool:
        if isinstance(error, BaseException):
            error = error_of(error)
        return self._send("failed", None, operation, error=jsonable(error))

    def cancel(self, reason: Any = None, operation: str | None = None) -> bool:
        if isinstance(reason, BaseException):
            reason = error_of(reason)
        return self._send("cancelled", None, operation, error=jsonable(reason))

    def finish(self, exc: BaseException | None = None) -> bool:
        """The terminal update for a job that ended cleanly (`exc` None) or raised."""
        if self.finished:
            return False
        status, extra = self._finish_args(exc)
        return self._send(status, None, None, **extra)

    def __enter__(self) -> JobStatus:
        self._token = _current.set(self)
        if self.start_status is not None:
            self._send(self.start_status, None, self.operation)
        return self

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        try:
            self.finish(exc)
        finally:
            if self._token is not None:
                with contextlib.suppress(ValueError):  # exited in another context
                    _current.reset(self._token)
                self._token = None


class AsyncJobStatus(_Base):
    """Reports one job from asyncio code. Use `async_job_status(...)` to make one."""

    def __init__(self, job_id: str, user_id: str, publisher: Any = None, *,
                 worker_id: str | None = None, start: str | None = "processing",
                 operation: str | None = None, quiet_seconds: float = QUIET_SECONDS):
        publisher = default_publisher() if publisher is None else publisher
        if hasattr(publisher, "aupdate"):
            self._call: Callable[..., Any] = publisher.aupdate
        elif inspect.iscoroutinefunction(getattr(publisher, "update", None)):
            self._call = publisher.update
        elif callable(getattr(publisher, "update", None)):
            self._call = functools.partial(asyncio.to_thread, publisher.update)
        else:
            raise ConfigError(f"{type(publisher).__name__} has no update method")
        super().__init__(job_id, user_id, publisher, worker_id=worker_id, start=start,
                         operation=operation, quiet_seconds=quiet_seconds)
        self._lock = asyncio.Lock()

    async def _send(self, status: str, progress: Any = None, operation: Any = None,
                    **extra: Any) -> bool:
        async with self._lock:
            prepared = self._prepare(status, progress, operation, extra)
            if prepared is None:
                return False
            args, extra = prepared
            try:
                await self._call(*args, **extra)
            except Exception as exc:
                self._failed(status, exc)
                return False
            self._sent(status, args[3])
            return True

    async def queued(self, operation: str | None = None) -> bool:
        return await self._send("queued", None, operation)

    async def start(self, operation: str | None = None) -> bool:
        return await self._send("processing", None, operation)

    async def progress(self, progress: float | None = None,
                       operation: str | None = None) -> bool:
        return await self._send("processing", progress, operation)

    async def complete(self, result: Any = None, operation: str | None = None) -> bool:
        self.result = result if result is not None else self.result
        return await self._send("completed", None, operation, result=jsonable(self.result))

    async def fail(self, error: BaseException | Any = None,
                   operation: str | None = None) -> bool:
        if isinstance(error, BaseException):
            error = error_of(error)
        return await self._send("failed", None, operation, error=jsonable(error))

    async def cancel(self, reason: Any = None, operation: str | None = None) -> bool:
        if isinstance(reason, BaseException):
            reason = error_of(reason)
        return await self._send("cancelled", None, operation, error=jsonable(reason))

    async def finish(self, exc: BaseException | None = None) -> bool:
        if self.finished:
            return False
        status, extra = self._finish_args(exc)
        return await self._send(status, None, None, **extra)

    async def __aenter__(self) -> AsyncJobStatus:
        self._token = _current.set(self)
        if self.start_status is not None:
            await self._send(self.start_status, None, self.operation)
        return self

    async def __aexit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        try:
            # A cancelled task still reports `cancelled`; shield it from a second cancel.
            await asyncio.shield(self.finish(exc))
        finally:
            if self._token is not None:
                with contextlib.suppress(ValueError):
                    _current.reset(self._token)
                self._token = None


def job_status(job_id: str, user_id: str, *, publisher: Any = None,
               worker_id: str | None = None, start: str | None = "processing",
               operation: str | None = None) -> JobStatus:
    """A context manager that reports a job: `processing` on entry (`start="queued"` or
    None to choose), `completed` with `job.result` on a clean exit, `failed` with
    `{"type", "message"}` if the block raises (the exception propagates), `cancelled` on
    KeyboardInterrupt. `publisher` defaults to `default_publisher()`."""
    return JobStatus(job_id, user_id, publisher, worker_id=worker_id, start=start,
                     operation=operation)


def async_job_status(job_id: str, user_id: str, *, publisher: Any = None,
                     worker_id: str | None = None, start: str | None = "processing",
                     operation: str | None = None) -> AsyncJobStatus:
    """`job_status` for asyncio code: `async with async_job_status(...) as job:
    await job.progress(45, "page 120/300")`; a cancelled task reports `cancelled`."""
    return AsyncJobStatus(job_id, user_id, publisher, worker_id=worker_id, start=start,
                          operation=operation)


IdSource = str | Callable[[dict[str, Any]], str]


def _pick(source: IdSource, arguments: dict[str, Any], what: str) -> str:
    if callable(source):
        return source(arguments)
    if source not in arguments:
        raise ConfigError(f"reported: the function has no argument {source!r} for {what}")
    return arguments[source]


def reported(publisher: Any = None, *, job_id: IdSource = "job_id",
             user_id: IdSource = "user_id", worker_id: str | None = None) -> Callable[..., Any]:
    """A decorator for a sync or async function that runs one job: it is reported as
    `job_status` does, and its return value is the job's `result`. `job_id` and `user_id`
    name the function's arguments holding the ids (or are callables of the bound arguments).
    Inside, `report_progress(...)` (sync) or `await current_job().progress(...)` (async)."""

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        signature = inspect.signature(fn)

        def ids(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[str, str]:
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            return (_pick(job_id, bound.arguments, "the job id"),
                    _pick(user_id, bound.arguments, "the user id"))

        if inspect.iscoroutinefunction(fn):
            @functools.wraps(fn)
            async def run_async(*args: Any, **kwargs: Any) -> Any:
                jid, uid = ids(args, kwargs)
                async with async_job_status(jid, uid, publisher=publisher,
                                            worker_id=worker_id) as job:
                    value = await fn(*args, **kwargs)
                    job.result = value
                    return value

            return run_async

        @functools.wraps(fn)
        def run(*args: Any, **kwargs: Any) -> Any:
            jid, uid = ids(args, kwargs)
            with job_status(jid, uid, publisher=publisher, worker_id=worker_id) as job:
                value = fn(*args, **kwargs)
                job.result = value
                return value

        return run

    return decorate
