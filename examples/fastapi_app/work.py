"""The app's background work: a job that runs as an asyncio task in the web process and
reports each step to jobwire in-process (`realtime.publish`, no HTTP hop)."""

from __future__ import annotations

import asyncio
import logging
import secrets
from typing import Any

from jobwire.asgi import Jobwire

log = logging.getLogger("example.work")


class Jobs:
    """Starts jobs and keeps their tasks referenced until they end (asyncio holds only weak
    references to tasks: an unreferenced one may be collected mid-run)."""

    def __init__(self, realtime: Jobwire, steps: int = 10, step_seconds: float = 0.5):
        self.realtime = realtime
        self.steps = steps
        self.step_seconds = step_seconds
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self, user: str) -> str:
        """Report the job queued (before answering, so the page's list has it at once) and
        run it in the background; its id."""
        job_id = "job_" + secrets.token_hex(6)
        await self.realtime.publish(job_id, user, "queued", current_operation="Waiting to start")
        task = asyncio.create_task(self._run(job_id, user), name=job_id)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return job_id

    async def _run(self, job_id: str, user: str) -> None:
        publish = self.realtime.publish
        try:
            for step in range(self.steps):
                await publish(job_id, user, "processing", progress=100 * step / self.steps,
                              current_operation=f"Step {step + 1} of {self.steps}")
                await asyncio.sleep(self.step_seconds)  # the work itself
            result: dict[str, Any] = {"steps": self.steps}
            await publish(job_id, user, "completed", progress=100, result=result)
        except asyncio.CancelledError:  # the app is shutting down
            raise
        except Exception as exc:  # a failed publish: the job's page would hang on its last state
            log.exception("job %s failed", job_id)
            try:
                await publish(job_id, user, "failed", error={"message": str(exc)})
            except Exception:
                log.exception("could not report job %s as failed", job_id)

    async def cancel_all(self) -> None:
        """On shutdown: stop every running job (it does not outlive the process)."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
