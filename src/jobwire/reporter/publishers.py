"""Publishers for workers: straight to Redis, or over HTTP; the process default."""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import os
import threading
import time
import weakref
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

from ..errors import BrokerUnavailable, ConfigError
from ..publisher import BrokerPublisher, Publisher, make_update
from .common import FLUSH_MARGIN

_REDIS_SCHEMES = ("redis://", "rediss://", "unix://", "redis+sentinel://")


class _PerProcess:
    """Connections belong to one process: after a fork the child starts afresh."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pid = -1
        _live.add(self)

    def _after_fork(self) -> None:
        self._lock = threading.Lock()  # it may have been held by a thread that is gone
        self._pid = -1


_live: weakref.WeakSet[_PerProcess] = weakref.WeakSet()


def _reset_after_fork() -> None:
    for item in list(_live):
        item._after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)


class RedisPublisher(_PerProcess):
    """Publish-only, straight to the Redis of a jobwire deployment, with the server's own
    validation and rules (the same `RedisBroker` publish, so ownership, lifecycle,
    deduplication and conflation behave as over HTTP). No pub/sub subscriber and no sweeper
    run: the servers do that.

    One background thread per process runs the broker's event loop, so the synchronous
    `update` works from any thread and the conflation timer of a held progress update keeps
    running between reports. `prefix` and the `broker_options` (`max_updates_per_second`,
    `history_size`, …) must match the servers' `JOBWIRE_REDIS_*` settings."""

    def __init__(self, redis_url: str, *, prefix: str = "jobwire:", timeout: float = 10.0,
                 **broker_options: Any):
        super().__init__()
        if not isinstance(redis_url, str) or not redis_url.startswith(_REDIS_SCHEMES):
            raise ConfigError(f"redis_url must start with one of {', '.join(_REDIS_SCHEMES)}, "
                              f"got {redis_url!r}")
        self.url = redis_url
        self.prefix = prefix
        self.timeout = timeout
        self.broker_options = broker_options
        rate = float(broker_options.get("max_updates_per_second", 10.0))
        self._flush_delay = 1 / rate + FLUSH_MARGIN if rate > 0 else 0.0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._publisher: BrokerPublisher | None = None
        self._flush_due = 0.0  # monotonic time by which held progress has gone out
        atexit.register(self.close)

    def _ensure(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._pid == os.getpid() and self._loop is not None:
                return self._loop
            loop = asyncio.new_event_loop()
            started = threading.Event()

            def run() -> None:
                asyncio.set_event_loop(loop)
                loop.call_soon(started.set)
                loop.run_forever()

            thread = threading.Thread(target=run, name="jobwire-publisher", daemon=True)
            thread.start()
            if not started.wait(self.timeout):
                raise BrokerUnavailable("the publisher's event loop did not start")
            from ..broker.redis import RedisBroker

            async def make() -> BrokerPublisher:
                broker = RedisBroker(self.url, prefix=self.prefix, **self.broker_options)
                return BrokerPublisher(broker)

            # Publish-only: RedisBroker.publish works without start(), which would also
            # subscribe to pub/sub and sweep for stalled jobs (the servers' work).
            self._publisher = asyncio.run_coroutine_threadsafe(make(), loop).result(self.timeout)
            self._loop, self._thread, self._pid = loop, thread, os.getpid()
            return loop

    def _submit(self, args: tuple[Any, ...], extra: dict[str, Any]) -> Future[dict[str, Any]]:
        make_update(*args, **extra)  # validate here, so a bad update raises in the caller
        loop = self._ensure()
        publisher = self._publisher
        assert publisher is not None

        async def publish() -> dict[str, Any]:
            answer = await publisher.update(*args, **extra)
            if answer["id"] is None:  # held by conflation: a timer on this loop sends it
                self._flush_due = max(self._flush_due, time.monotonic() + self._flush_delay)
            return answer

        return asyncio.run_coroutine_threadsafe(publish(), loop)

    def update(self, job_id: str, user_id: str, status: str, progress: float | None = None,
               current_operation: str | None = None, **extra: Any) -> dict[str, Any]:
        future = self._submit((job_id, user_id, status, progress, current_operation), extra)
        try:
            return future.result(self.timeout)
        except FutureTimeout:
            future.cancel()
            raise BrokerUnavailable(f"no answer from Redis within {self.timeout} s") from None

    async def aupdate(self, job_id: str, user_id: str, status: str,
                      progress: float | None = None, current_operation: str | None = None,
                      **extra: Any) -> dict[str, Any]:
        future = self._submit((job_id, user_id, status, progress, current_operation), extra)
        try:
            return await asyncio.wait_for(asyncio.wrap_future(future), self.timeout)
        except TimeoutError:
            raise BrokerUnavailable(f"no answer from Redis within {self.timeout} s") from None

    def close(self) -> None:
        """Let held progress go out (at most one conflation interval), then disconnect."""
        with self._lock:
            loop, thread, publisher = self._loop, self._thread, self._publisher
            if loop is None or self._pid != os.getpid():
                return
            self._loop = self._thread = self._publisher = None
        wait = self._flush_due - time.monotonic()
        if wait > 0:
            time.sleep(min(wait, 1.0))  # the broker's flush timer is due by then
        if publisher is not None:
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(publisher.broker.stop(), loop).result(5)
        loop.call_soon_threadsafe(loop.stop)
        if thread is not None:
            thread.join(5)
        if not loop.is_running():
            loop.close()

    def __enter__(self) -> RedisPublisher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class HttpPublisher(_PerProcess):
    """Publish over HTTP (`POST /api/v2/jobs/{jobId}/status`) with a publisher token, through
    `jobwire.publisher.Publisher` (local validation, bounded retries of 503s and network
    errors). One HTTP client per process; `aupdate` runs the same call in a thread."""

    def __init__(self, url: str, token: str, *, timeout: float = 10.0, retries: int = 3):
        super().__init__()
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise ConfigError(f"url must start with http:// or https://, got {url!r}")
        if not token:
            raise ConfigError("a publisher token is needed to publish over HTTP")
        self.url, self.token, self.timeout, self.retries = url, token, timeout, retries
        self._publisher: Publisher | None = None

    def _client(self) -> Publisher:
        with self._lock:
            if self._pid != os.getpid() or self._publisher is None:
                self._publisher = Publisher(self.url, self.token, timeout=self.timeout,
                                            retries=self.retries)
                self._pid = os.getpid()
            return self._publisher

    def update(self, job_id: str, user_id: str, status: str, progress: float | None = None,
               current_operation: str | None = None, **extra: Any) -> dict[str, Any]:
        return self._client().update(job_id, user_id, status, progress, current_operation,
                                     **extra)

    async def aupdate(self, job_id: str, user_id: str, status: str,
                      progress: float | None = None, current_operation: str | None = None,
                      **extra: Any) -> dict[str, Any]:
        return await asyncio.to_thread(self.update, job_id, user_id, status, progress,
                                       current_operation, **extra)

    def close(self) -> None:
        with self._lock:
            if self._publisher is not None and self._pid == os.getpid():
                self._publisher.close()
            self._publisher = None

    def __enter__(self) -> HttpPublisher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def redis_options_from_env(env: Any = None) -> dict[str, Any]:
    """The `RedisBroker` settings of the servers, from the same `JOBWIRE_*` variables
    (`JOBWIRE_REDIS_PREFIX`, `JOBWIRE_REDIS_CHANNEL_PREFIX`,
    `JOBWIRE_MAX_UPDATES_PER_JOB_PER_SECOND`, `JOBWIRE_HISTORY_*`, …): a worker that shares
    the servers' environment publishes with exactly their rules."""
    from ..config import Settings

    settings = Settings.load(os.environ if env is None else env)
    return {"prefix": settings.redis_prefix,
            "channel_prefix": settings.redis_channel_prefix,
            "history_size": settings.history_size,
            "global_history_size": settings.global_history_size,
            "history_ttl_seconds": settings.history_ttl_seconds,
            "max_updates_per_second": settings.max_updates_per_job_per_second,
            "stalled_after_seconds": settings.stalled_after_seconds,
            "durable_replicas": settings.redis_durable_replicas}


def make_publisher(redis_url: str | None = None, *, url: str | None = None,
                   token: str | None = None, prefix: str | None = None,
                   **options: Any) -> RedisPublisher | HttpPublisher:
    """A `RedisPublisher` for `redis_url`, else an `HttpPublisher` for `url` + `token`. What
    is not given comes from the environment: `JOBWIRE_REDIS_URL` (with the servers' other
    `JOBWIRE_*` Redis and job settings, see `redis_options_from_env`), else `JOBWIRE_URL` and
    `JOBWIRE_TOKEN`. Redis wins when both are configured; nothing configured: ConfigError."""
    redis_url = redis_url or (None if url else os.environ.get("JOBWIRE_REDIS_URL"))
    if redis_url:
        merged = redis_options_from_env()
        if prefix is not None:
            merged["prefix"] = prefix
        merged.update(options)
        return RedisPublisher(redis_url, **merged)
    url = url or os.environ.get("JOBWIRE_URL")
    token = token or os.environ.get("JOBWIRE_TOKEN")
    if url or token:
        return HttpPublisher(url or "http://127.0.0.1:3000", token or "", **options)
    raise ConfigError("jobwire: no publisher configured; give redis_url (or url and token), "
                      "or set JOBWIRE_REDIS_URL (or JOBWIRE_URL and JOBWIRE_TOKEN)")


_default: Any = None
_default_lock = threading.Lock()


def configure(publisher: Any = None, **kwargs: Any) -> Any:
    """Set the process-wide default publisher (`publisher`, or `make_publisher(**kwargs)`),
    used wherever no publisher is passed. Returns it."""
    global _default
    with _default_lock:
        _default = publisher if publisher is not None else make_publisher(**kwargs)
        return _default


def default_publisher() -> Any:
    """The configured default publisher; on first use without `configure`, one from the
    environment (see `make_publisher`)."""
    global _default
    with _default_lock:
        if _default is None:
            _default = make_publisher()
        return _default


# --- reporting a job ----------------------------------------------------------------------

