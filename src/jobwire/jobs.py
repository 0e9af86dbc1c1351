"""The job state machine: ownership, lifecycle, dedupe, idempotent retries, progress
conflation and stall detection. Pure: the clock and the id source are passed in, and the
result of every call is a value (an event to deliver, an ack, a time to flush at)."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from .cursor import IdClock, Position, format_id
from .errors import JobFinished, LifecycleViolation, OwnerMismatch, ProgressRegression
from .eta import EtaEstimator
from .events import JOB_COMPLETED, JOB_STALLED, STATUS_UPDATE, Event
from .protocol import JobUpdate, Status

# eventIds remembered per job for idempotent retries.
MAX_EVENT_IDS_PER_JOB = 256


@dataclass(slots=True)
class Ack:
    """The answer to one publish: the event that now carries the job's state."""

    job_id: str
    id: str | None
    seq: int | None
    # Set when the update waits for conflation: when the broker must call `flush`.
    flush_at: float | None = None

    def to_wire(self) -> dict[str, Any]:
        return {"jobId": self.job_id, "id": self.id, "seq": self.seq}


@dataclass(slots=True)
class Job:
    job_id: str
    user_id: str
    fields: dict[str, Any]  # status (a Status), progress, currentOperation, workerId, ...
    timestamp: str
    # The first update's timestamp, carried by every event: how long a job ran is known from
    # any one of its states (a page that opens after the job ended sees only the last).
    created_at: str | None = None
    seq: int = 0
    event: Event | None = None  # the latest delivered event
    last_update_at: float = 0.0  # server time of the last accepted update (liveness)
    last_emit_at: float = float("-inf")  # server time of the last delivered event
    pending: dict[str, Any] | None = None  # conflated fields waiting for `flush`
    pending_timestamp: str = ""
    pending_event_ids: list[str] = field(default_factory=list)
    flush_scheduled: bool = False
    stalled: bool = False
    eta: EtaEstimator = field(default_factory=EtaEstimator)
    event_ids: OrderedDict[str, tuple[str, int]] = field(default_factory=OrderedDict)

    @property
    def status(self) -> Status:
        return self.latest_fields()["status"]

    def latest_fields(self) -> dict[str, Any]:
        return self.pending if self.pending is not None else self.fields

    @property
    def terminal(self) -> bool:
        return self.fields["status"].terminal

    def state(self) -> dict[str, Any] | None:
        """The snapshot view: every field of the latest delivered event."""
        return self.event.payload if self.event is not None else None


class JobBook:
    """Every known job and its state. One instance per in-process broker."""

    def __init__(self, *, max_updates_per_second: float = 10.0, clock: IdClock | None = None):
        self.jobs: dict[str, Job] = {}
        self.interval = 1.0 / max_updates_per_second if max_updates_per_second > 0 else 0.0
        self.clock = clock or IdClock()

    # --- publishing ---------------------------------------------------------------------

    def accept(self, update: JobUpdate, now: float, timestamp: str) -> tuple[Ack, Event | None]:
        """Apply one validated update. Returns the ack and the event to deliver, if any.
        Raises a Conflict (and changes nothing) when ownership or lifecycle refuse it."""
        job = self.jobs.get(update.jobId)
        if job is None:
            fields = _merge(None, update)
            job = Job(update.jobId, update.userId, fields, timestamp, created_at=timestamp)
            self.jobs[update.jobId] = job
            event = self._emit(job, fields, timestamp, now, update.eventId)
            return Ack(job.job_id, event.id, event.seq), event

        if update.userId != job.user_id:
            raise OwnerMismatch(f"job {job.job_id} belongs to another user", field="userId",
                                job_id=job.job_id)
        if update.eventId is not None:
            known = job.event_ids.get(update.eventId)
            if known is not None:
                return Ack(job.job_id, known[0], known[1]), None
            if update.eventId in job.pending_event_ids:
                return Ack(job.job_id, None, None), None

        current = job.latest_fields()
        fields = _merge(current, update)
        if fields == current and not job.stalled:
            job.last_update_at = now
            if update.eventId is not None:
                self._remember(job, [update.eventId])
            return self._current_ack(job), None
        cur_status: Status = current["status"]
        if cur_status.terminal:
            raise JobFinished(f"job {job.job_id} already ended as {cur_status.value}",
                              field="status", job_id=job.job_id)
        if update.status.rank < cur_status.rank:
            raise LifecycleViolation(
                f"job {job.job_id} cannot go from {cur_status.value} to {update.status.value}",
                field="status", job_id=job.job_id)
        if update.status is cur_status and fields["progress"] < current["progress"]:
            raise ProgressRegression(
                f"progress of job {job.job_id} may only go down with a status change",
                field="progress", job_id=job.job_id)

        job.last_update_at = now
        progress_only = update.status is cur_status and not job.stalled
        if progress_only and now - job.last_emit_at < self.interval:
            # Conflate: latest value wins, delivered when the interval has passed.
            job.pending, job.pending_timestamp = fields, timestamp
            if update.eventId is not None:
                job.pending_event_ids.append(update.eventId)
            flush_at = None
            if not job.flush_scheduled:
                job.flush_scheduled = True
                flush_at = job.last_emit_at + self.interval
            return Ack(job.job_id, None, None, flush_at), None

        # A status change or a due progress update: goes out now; a waiting one is superseded.
        event_ids = [*job.pending_event_ids, *([update.eventId] if update.eventId else [])]
        job.pending, job.pending_event_ids = None, []
        event = self._emit(job, fields, timestamp, now, None, progress_only=progress_only)
        self._remember(job, event_ids)
        return Ack(job.job_id, event.id, event.seq), event

    def flush(self, job_id: str, now: float) -> Event | None:
        """Deliver a job's conflated update, if one is still waiting."""
        job = self.jobs.get(job_id)
        if job is None:
            return None
        job.flush_scheduled = False
        if job.pending is None:
            return None
        fields, event_ids = job.pending, job.pending_event_ids
        job.pending, job.pending_event_ids = None, []
        event = self._emit(job, fields, job.pending_timestamp, now, None, progress_only=True)
        self._remember(job, event_ids)
        return event

    # --- stalled jobs -------------------------------------------------------------------

    def stalled(self, now: float, after_seconds: float) -> list[Event]:
        """One `job_stalled` event per processing job silent for `after_seconds`."""
        events = []
        for job in self.jobs.values():
            if (not job.stalled and job.fields["status"] is Status.PROCESSING
                    and job.pending is None and now - job.last_update_at >= after_seconds):
                job.stalled = True
                job.seq += 1
                assert job.event is not None  # a known job has delivered its first event
                pos = self.clock.next(int(now * 1000))
                payload = {**job.event.payload, "type": JOB_STALLED, "id": format_id(pos),
                           "seq": job.seq, "lastUpdate": job.timestamp, "stalled": True,
                           "etaSeconds": None}
                event = self._record(job, pos, payload, now, progress_only=False)
                events.append(event)
        return events

    def forget_finished(self, now: float, ttl_seconds: float) -> int:
        """Drop ended jobs untouched for `ttl_seconds`, so memory follows the history window."""
        old = [j.job_id for j in self.jobs.values()
               if j.terminal and now - j.last_update_at >= ttl_seconds]
        for job_id in old:
            del self.jobs[job_id]
        return len(old)

    # --- internals ----------------------------------------------------------------------

    def _current_ack(self, job: Job) -> Ack:
        if job.pending is not None:
            return Ack(job.job_id, None, None)
        assert job.event is not None
        return Ack(job.job_id, job.event.id, job.seq)

    def _emit(self, job: Job, fields: dict[str, Any], timestamp: str, now: float,
              event_id: str | None, progress_only: bool = False) -> Event:
        job.fields, job.timestamp = fields, timestamp
        job.stalled = False
        job.last_update_at = now
        status: Status = fields["status"]
        if status is Status.PROCESSING:
            job.eta.observe(fields["progress"], now)
        job.seq += 1
        pos = self.clock.next(int(now * 1000))
        payload: dict[str, Any] = {
            "type": JOB_COMPLETED if status.terminal else STATUS_UPDATE,
            "id": format_id(pos),
            "seq": job.seq,
            "jobId": job.job_id,
            "userId": job.user_id,
            "status": status.value,
            "progress": fields["progress"],
            "currentOperation": fields["currentOperation"],
            "timestamp": timestamp,
            "createdAt": job.created_at,
            "workerId": fields["workerId"],
            "etaSeconds": job.eta.eta(now) if status is Status.PROCESSING else None,
        }
        if status.terminal:
            payload["result"] = fields["result"]
            payload["error"] = fields["error"]
        event = self._record(job, pos, payload, now, progress_only)
        if event_id is not None:
            self._remember(job, [event_id])
        return event

    def _record(self, job: Job, pos: Position, payload: dict[str, Any], now: float,
                progress_only: bool) -> Event:
        event = Event(pos, job.job_id, job.user_id, job.seq, payload, progress_only)
        job.event = event
        job.last_emit_at = now
        return event

    def _remember(self, job: Job, event_ids: list[str]) -> None:
        if not event_ids:
            return
        ack = self._current_ack(job)
        assert ack.id is not None and ack.seq is not None
        for eid in event_ids:
            job.event_ids[eid] = (ack.id, ack.seq)
        while len(job.event_ids) > MAX_EVENT_IDS_PER_JOB:
            job.event_ids.popitem(last=False)


def _merge(current: dict[str, Any] | None, update: JobUpdate) -> dict[str, Any]:
    """The job's fields after `update`: fields the update leaves out keep their value."""
    prev = current or {"progress": 0, "currentOperation": None, "workerId": None}
    progress = update.progress
    if progress is None:
        progress = 100 if update.status is Status.COMPLETED else prev["progress"]
    return {
        "status": update.status,
        "progress": progress,
        "currentOperation": (update.currentOperation if update.currentOperation is not None
                             else prev["currentOperation"]),
        "workerId": update.workerId if update.workerId is not None else prev["workerId"],
        # Only an ending carries a result or an error.
        "result": update.result if update.status.terminal else None,
        "error": update.error if update.status.terminal else None,
    }

