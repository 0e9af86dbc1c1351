"""Report a job's status from the job itself, from any Python code.

```python
from jobwire.reporter import RedisPublisher, job_status

jobs = RedisPublisher("redis://127.0.0.1:6379/0")          # or HttpPublisher(url, token)
with job_status("job_123", "user_789", publisher=jobs) as job:   # → processing
    for page in range(1, 301):
        ...
        job.progress(100 * page / 300, f"page {page}/300")
    job.result = {"pages": 300}                              # → completed, with the result
# an exception inside the block → failed, error {"type": "ValueError", "message": "…"},
# and the exception propagates as usual
```

`async_job_status` is the same for asyncio code (`async with`, `await job.progress(…)`), and
`reported` is a decorator for functions that take the job and user ids as arguments.

Publishing never breaks the job: an update that cannot be stored (Redis or the server
unreachable, a refusal such as another owner's job id) is logged and the job goes on; while
the broker is unreachable, progress-only reports are skipped for a few seconds instead of
each waiting for a timeout. Only configuration errors raise: no publisher, an invalid job or
user id, a sync publisher where an async one is needed.

Two publishers fit workers: `RedisPublisher` writes straight to the Redis that the
`jobwire serve` instances share (no HTTP hop; publish-only: no subscriber, no sweeper) and
`HttpPublisher` posts to a server with a publisher token, where a worker cannot reach Redis.
Both are thread-safe and fork-safe (a Celery prefork child or an RQ work horse gets its own
connections) and offer `update` (sync) and `aupdate` (async). The `Publisher`,
`AsyncPublisher` and `BrokerPublisher` of `jobwire.publisher` are accepted as well.
"""

from __future__ import annotations

from .common import error_of, jsonable, safe_id
from .job import (
    AsyncJobStatus,
    JobStatus,
    async_job_status,
    current_job,
    job_status,
    report_progress,
    reported,
)
from .publishers import (
    HttpPublisher,
    RedisPublisher,
    configure,
    default_publisher,
    make_publisher,
    redis_options_from_env,
)

__all__ = [
    "AsyncJobStatus",
    "HttpPublisher",
    "JobStatus",
    "RedisPublisher",
    "async_job_status",
    "configure",
    "current_job",
    "default_publisher",
    "error_of",
    "job_status",
    "jsonable",
    "make_publisher",
    "redis_options_from_env",
    "report_progress",
    "reported",
    "safe_id",
]
