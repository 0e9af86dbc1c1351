"""A job's state as plain JSON-able data, for brokers that keep jobs outside the process.
The latest event's payload is stored without its id (the broker keeps the id beside it, since
a shared broker assigns ids only when it commits), and remembered eventIds live apart too."""

from __future__ import annotations

from typing import Any

from .cursor import START, Position, parse_id
from .eta import EtaEstimator
from .events import Event
from .jobs import Job
from .protocol import Status


class DeferredIds:
    """An id source for JobBook when the broker assigns ids at commit: events get
    placeholder positions `0-1`, `0-2`, … (below every real id), each replaced by the real
    one once the broker has stored the event."""

    def __init__(self) -> None:
        self.last: Position = START

    def next(self, now_ms: int) -> Position:
        self.last = (0, self.last[1] + 1)
        return self.last


def is_placeholder(event_id: str) -> bool:
    return event_id.startswith("0-")


def job_to_state(job: Job) -> dict[str, Any]:
    event = None
    if job.event is not None:
        event = {k: v for k, v in job.event.payload.items() if k != "id"}
    return {
        "userId": job.user_id,
        "fields": _fields_out(job.fields),
        "timestamp": job.timestamp,
        "createdAt": job.created_at,
        "seq": job.seq,
        "event": event,
        "progressOnly": job.event.progress_only if job.event is not None else False,
        "lastUpdateAt": job.last_update_at,
        "lastEmitAt": None if job.last_emit_at == float("-inf") else job.last_emit_at,
        "pending": _fields_out(job.pending) if job.pending is not None else None,
        "pendingTimestamp": job.pending_timestamp,
        "pendingEventIds": job.pending_event_ids,
        "flushScheduled": job.flush_scheduled,
        "stalled": job.stalled,
        "eta": [job.eta.first_t, job.eta.last_t, job.eta.last_p, job.eta.rate],
    }


def job_from_state(job_id: str, state: dict[str, Any], event_id: str | None) -> Job:
    job = Job(job_id, state["userId"], _fields_in(state["fields"]), state["timestamp"],
              # None for a job stored before jobs recorded it: its start is not known.
              created_at=state.get("createdAt"), seq=state["seq"],
              last_update_at=state["lastUpdateAt"],
              last_emit_at=(float("-inf") if state["lastEmitAt"] is None
                            else state["lastEmitAt"]),
              pending=_fields_in(state["pending"]) if state["pending"] is not None else None,
              pending_timestamp=state["pendingTimestamp"],
              pending_event_ids=list(state["pendingEventIds"]),
              flush_scheduled=state["flushScheduled"], stalled=state["stalled"],
              eta=EtaEstimator(*state["eta"]))
    if state["event"] is not None and event_id:
        job.event = event_from(event_id, state["event"], state["progressOnly"])
    return job


def event_from(event_id: str, payload: dict[str, Any], progress_only: bool) -> Event:
    """An event read back from a broker: its payload (stored without id) plus the id."""
    payload = {**payload, "id": event_id}
    return Event(parse_id(event_id), payload["jobId"], payload["userId"], payload["seq"],
                 payload, progress_only)


def _fields_out(fields: dict[str, Any]) -> dict[str, Any]:
    return {**fields, "status": fields["status"].value}


def _fields_in(fields: dict[str, Any]) -> dict[str, Any]:
    return {**fields, "status": Status(fields["status"])}
