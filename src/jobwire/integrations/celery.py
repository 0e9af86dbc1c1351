"""Live status for Celery tasks, from Celery's own signals.

```python
from jobwire.integrations import celery as jobwire_celery

jobwire_celery.install(app, redis_url="redis://127.0.0.1:6379/0")   # or url=…, token=…

@app.task
def crawl(site, user_id):
    for page in range(1, 301):
        ...
        jobwire_celery.report_progress(100 * page / 300, f"page {page}/300")
    return {"pages": 300}

crawl.delay("example.org", user_id="user_789")           # jobId = the task id
```

Every task of `app` (or only `tasks=[…]`) is reported with its task id as `jobId`:
`queued` when it is sent (`before_task_publish`, in the sending process), `processing` when
a worker starts it (`task_prerun`), then `completed` with its return value as `result`
(`task_success`), `failed` with `{"type", "message"}` (`task_failure`: an exception, a time
limit, a lost worker) or `cancelled` (`task_revoked`). A retry keeps the job `processing`
("Retrying: …"). The owner is the task's `user_from` header (`apply_async(…,
headers={"user_id": "user_789"})`) or else its keyword argument of that name, or else the
owner of the code sending it (`with owner("user_789"): crawl.delay(…)`; a web framework's
middleware can set it per request, as `jobwire.integrations.django` does); tasks without one
are not reported. Call `install` where both the sender and the worker import it (the
module that creates the app): the sender publishes `queued`, the worker the rest.

Publishing never fails a task (see `jobwire.reporter`); a missing publisher configuration
fails `install`.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from celery import Celery, signals
from celery import current_task as _current_task

from ..errors import ConfigError
from ..reporter import (
    JobStatus,
    default_publisher,
    make_publisher,
    safe_id,
)
from ..reporter.job import _current, progress_of

log = logging.getLogger("jobwire.celery")

__all__ = ["CeleryIntegration", "current_owner", "install", "owner", "report_progress"]

UserFrom = str | Callable[[str, tuple[Any, ...], dict[str, Any], dict[str, Any]], Any]

# The owner of tasks sent from the current context when they name none themselves: a user id,
# or a callable asked only when a task is sent (so a request that sends nothing never has to
# look its user up).
_owner: contextvars.ContextVar[str | Callable[[], Any] | None] = contextvars.ContextVar(
    "jobwire_celery_owner", default=None)
# The message header that carries an owner taken from the context, so the worker, which has
# no such context, reports the task for the same user.
OWNER_HEADER = "jobwire_owner"

_SIGNALS = ("before_task_publish", "task_prerun", "task_success", "task_failure",
            "task_retry", "task_revoked", "task_postrun")


class CeleryIntegration:
    """What `install` returns: the publisher, the running reporters, `uninstall()`."""

    def __init__(self, app: Celery | None, publisher: Any, *, tasks: Iterable[Any] | None,
                 user_from: UserFrom, queued: bool):
        self.app = app
        self.publisher = publisher
        self.tasks = None if tasks is None else {getattr(t, "name", t) for t in tasks}
        self.user_from = user_from
        self.queued = queued
        self.running: dict[str, JobStatus] = {}  # task id → its reporter, in this process
        self._tokens: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._uid = f"jobwire-{id(self)}"

    # --- which tasks, whose ---------------------------------------------------------------

    def wanted(self, name: str | None, task: Any = None) -> bool:
        if not name:
            return False
        if self.app is not None and task is not None and getattr(task, "app", None) is not None \
                and task.app is not self.app:
            return False
        if self.tasks is None:
            return not name.startswith("celery.")
        return name in self.tasks

    def user_of(self, name: str, args: Any, kwargs: Any, headers: Any) -> str | None:
        args = tuple(args or ())
        kwargs = dict(kwargs or {})
        headers = dict(headers or {})
        if callable(self.user_from):
            user = self.user_from(name, args, kwargs, headers)
        else:
            user = headers.get(self.user_from, kwargs.get(self.user_from))
        if user is None:
            user = headers.get(OWNER_HEADER)
        return None if user is None else str(user)

    def _request_user(self, task: Any, request: Any) -> str | None:
        headers = dict(getattr(request, "headers", None) or {})
        names = (self.user_from, OWNER_HEADER) if isinstance(self.user_from, str) \
            else (OWNER_HEADER,)
        for name in names:
            value = getattr(request, name, None)  # custom headers are attributes
            if value is not None:
                headers.setdefault(name, value)
        return self.user_of(getattr(task, "name", ""), getattr(request, "args", None),
                            getattr(request, "kwargs", None), headers)

    def _reporter(self, task_id: str, user: str | None, hostname: Any = None,
                  ) -> JobStatus | None:
        if user is None:
            log.debug("task %s has no user: not reported", task_id)
            return None
        try:
            return JobStatus(task_id, user, self.publisher, start=None,
                             worker_id=safe_id(hostname) if hostname else None)
        except ConfigError as exc:
            log.error("task %s not reported: %s", task_id, exc)
            return None

    # --- signal handlers (never raise into Celery) ----------------------------------------

    def on_before_publish(self, sender: Any = None, headers: Any = None, body: Any = None,
                          **_: Any) -> None:
        headers = headers or {}
        name = sender if isinstance(sender, str) else headers.get("task")
        if not self.queued or not self.wanted(name) or headers.get("retries"):
            return  # a retry is re-sent by the worker while the job is processing
        args, kwargs = (body[0], body[1]) if isinstance(body, list | tuple) and \
            len(body) >= 2 else ((), {})
        user = self.user_of(name, args, kwargs, headers)
        if user is None:
            user = current_owner()
            if user is not None:
                headers[OWNER_HEADER] = user  # sent with the message: the worker's owner too
        job = self._reporter(headers.get("id", ""), user)
        if job is not None:
            job.queued()

    def on_prerun(self, sender: Any = None, task_id: str | None = None, task: Any = None,
                  args: Any = None, kwargs: Any = None, **_: Any) -> None:
        task = task or sender
        if task_id is None or not self.wanted(getattr(task, "name", None), task):
            return
        request = getattr(task, "request", None)
        job = self._reporter(task_id, self._request_user(task, request),
                             getattr(request, "hostname", None))
        if job is None:
            return
        with self._lock:
            self.running[task_id] = job
        self._tokens[task_id] = _current.set(job)
        job.start()

    def _job_for(self, task: Any, task_id: str | None, request: Any = None) -> JobStatus | None:
        if task_id is None or not self.wanted(getattr(task, "name", None), task):
            return None
        with self._lock:
            job = self.running.get(task_id)
        if job is None:  # e.g. failed in the worker's main process (time limit, lost worker)
            request = request if request is not None else getattr(task, "request", None)
            job = self._reporter(task_id, self._request_user(task, request),
                                 getattr(request, "hostname", None))
        return job

    def on_success(self, sender: Any = None, result: Any = None, **_: Any) -> None:
        request = getattr(sender, "request", None)
        job = self._job_for(sender, getattr(request, "id", None))
        if job is not None:
            job.complete(result)

    def on_failure(self, sender: Any = None, task_id: str | None = None,
                   exception: BaseException | None = None, **_: Any) -> None:
        job = self._job_for(sender, task_id)
        if job is not None:
            job.fail(exception if exception is not None else RuntimeError("task failed"))

    def on_retry(self, sender: Any = None, request: Any = None, reason: Any = None,
                 **_: Any) -> None:
        job = self._job_for(sender, getattr(request, "id", None), request)
        if job is not None:
            job.progress(None, f"Retrying: {reason}")

    def on_revoked(self, sender: Any = None, request: Any = None, terminated: bool = False,
                   signum: Any = None, expired: bool = False, **_: Any) -> None:
        job = self._job_for(sender, getattr(request, "id", None), request)
        if job is None:
            return
        why = ("expired" if expired else f"terminated by signal {signum}" if terminated
               else "revoked")
        job.cancel({"type": "Revoked", "message": why})

    def on_postrun(self, sender: Any = None, task_id: str | None = None, **_: Any) -> None:
        if task_id is None:
            return
        with self._lock:
            self.running.pop(task_id, None)
        token = self._tokens.pop(task_id, None)
        if token is not None:
            try:
                _current.reset(token)
            except ValueError:  # another context: just clear it
                _current.set(None)

    # --- wiring ---------------------------------------------------------------------------

    def connect(self) -> None:
        for name in _SIGNALS:
            handler = getattr(self, _HANDLERS[name])
            getattr(signals, name).connect(handler, weak=False, dispatch_uid=f"{self._uid}-{name}")

    def uninstall(self) -> None:
        """Disconnect from Celery's signals."""
        for name in _SIGNALS:
            getattr(signals, name).disconnect(dispatch_uid=f"{self._uid}-{name}")
        global _installed
        if _installed is self:
            _installed = None

    def job(self, task_id: str | None = None) -> JobStatus | None:
        """The reporter of task `task_id` (default: the current task) in this process."""
        if task_id is None:
            request = getattr(_current_task, "request", None)
            task_id = getattr(request, "id", None)
        with self._lock:
            return self.running.get(task_id) if task_id is not None else None


_HANDLERS = {"before_task_publish": "on_before_publish", "task_prerun": "on_prerun",
             "task_success": "on_success", "task_failure": "on_failure",
             "task_retry": "on_retry", "task_revoked": "on_revoked",
             "task_postrun": "on_postrun"}
_installed: CeleryIntegration | None = None


def install(app: Celery | None = None, publisher: Any = None, *,
            redis_url: str | None = None, url: str | None = None, token: str | None = None,
            prefix: str | None = None, tasks: Iterable[Any] | None = None,
            user_from: UserFrom = "user_id", queued: bool = True) -> CeleryIntegration:
    """Report the tasks of `app` (None: of any app) to jobwire.

    - `publisher`: a `RedisPublisher`/`HttpPublisher` (or `Publisher`); else one is made from
      `redis_url` + `prefix`, or `url` + `token`, or the environment (`JOBWIRE_REDIS_URL`,
      `JOBWIRE_REDIS_PREFIX`, `JOBWIRE_URL`, `JOBWIRE_TOKEN`). None at all: `ConfigError`.
    - `tasks`: task names (or task objects) to report; None: every task but Celery's own.
    - `user_from`: the header, else keyword argument, naming the job's owner; or a callable
      `(task_name, args, kwargs, headers) -> user id | None`.
    - `queued`: publish `queued` when a task is sent.
    Installing again replaces the previous installation."""
    global _installed
    if publisher is None:
        publisher = (make_publisher(redis_url, url=url, token=token, prefix=prefix)
                     if redis_url or url or token else default_publisher())
    if not (isinstance(user_from, str) and user_from) and not callable(user_from):
        raise ConfigError("user_from must be a header/argument name or a callable")
    if _installed is not None:
        _installed.uninstall()
    integration = CeleryIntegration(app, publisher, tasks=tasks, user_from=user_from,
                                    queued=queued)
    integration.connect()
    _installed = integration
    return integration


def report_progress(progress: float | None = None, operation: str | None = None, *,
                    task_id: str | None = None) -> bool:
    """From inside a task: report its progress (0-100) and/or current operation. Returns
    whether it was published; outside a reported task it does nothing. Never raises for a
    publishing failure."""
    found = _installed.job(task_id) if _installed is not None else None
    return progress_of(found, task_id, progress, operation)


@contextlib.contextmanager
def owner(user: str | Callable[[], Any] | None) -> Iterator[None]:
    """Within the block, tasks sent without an owner of their own (no `user_id` header or
    keyword argument) belong to `user`: a user id, or a callable returning one (or None),
    called only when a task is sent. Explicit owners still win."""
    token = _owner.set(user)
    try:
        yield
    finally:
        _owner.reset(token)


def current_owner() -> str | None:
    """The owner `owner()` set for the current context, as a string, or None."""
    value = _owner.get()
    if callable(value):
        try:
            value = value()
        except Exception:  # a failing lookup must not fail the task's sending
            log.exception("looking up the owner of a task failed: not reported")
            return None
    return None if value is None else str(value)
