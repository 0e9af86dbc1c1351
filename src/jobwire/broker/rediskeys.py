"""Where the Redis broker keeps things: key names, pub/sub channels, the Lua scripts, and the
arguments of one commit of commit.lua. Pure: no I/O."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

import orjson

from ..events import JOB_COMPLETED, Event
from ..jobs import Job
from ..jobstate import job_to_state
from ..protocol import Status
from .clusterkeys import ClusterKeys

CHANNELS = ("job_status_updates", "job_progress_updates", "job_completion_updates")


def script(name: str) -> str:
    return resources.files("jobwire.broker").joinpath("lua", name).read_text()


@dataclass(frozen=True, slots=True)
class Keys:
    prefix: str = "jobwire:"

    def job(self, job_id: str, user_id: str | None = None) -> str:
        """A job's hash: version, state, latest event id (`user_id` matters only to the
        cluster's keys, which keep a job in its owner's partition)."""
        return f"{self.prefix}job:{job_id}"

    def user_stream(self, user_id: str) -> str:
        return f"{self.prefix}stream:u:{user_id}"

    def user_jobs(self, user_id: str) -> str:
        return f"{self.prefix}jobs:u:{user_id}"

    @property
    def global_stream(self) -> str:
        return f"{self.prefix}stream:all"

    @property
    def all_jobs(self) -> str:
        return f"{self.prefix}jobs:all"

    @property
    def processing(self) -> str:
        """Processing jobs by the time of their last update: the stall sweep's index."""
        return f"{self.prefix}processing"

    @property
    def fence(self) -> str:
        """Durable mode's write before a WAIT (see RedisBroker._await_replicas)."""
        return f"{self.prefix}fence"


@dataclass(frozen=True, slots=True)
class Retention:
    history_size: int
    global_history_size: int
    ttl_seconds: float


def commit_call(keys: Keys | ClusterKeys, channels: tuple[str, ...], retention: Retention, job: Job,
                expected: str, event: Event | None, remember: list[str],
                fresh: Sequence[str] = ()) -> list[Any]:
    """One commit of commit.lua: `job`'s new state (and event), as strings. `expected` is the
    job's version it was computed from; `remember`, the eventIds it newly answered; `fresh`,
    the eventIds of the update that it took to be new (the script checks they are)."""
    status: Status = job.fields["status"]
    event_json = ""
    channel = channels[1]
    if event is not None:
        payload = {k: v for k, v in event.payload.items() if k != "id"}
        event_json = orjson.dumps(payload).decode()
        channel = (channels[2] if payload["type"] == JOB_COMPLETED
                   else channels[1] if event.progress_only else channels[0])
    processing = status is Status.PROCESSING and not job.stalled
    job_key = keys.job(job.job_id, job.user_id)
    return [job_key, keys.user_stream(job.user_id), f"{job_key}:eids",
            keys.user_jobs(job.user_id), expected,
            orjson.dumps(job_to_state(job)).decode(), event_json, channel,
            str(retention.history_size), str(retention.global_history_size), job.job_id,
            repr(job.last_update_at) if processing else "",
            str(int(retention.ttl_seconds)) if status.terminal else "",
            "1" if event is not None and event.progress_only else "0", str(job.seq),
            remember, list(fresh)]


def view_states(raw: list[Any], owner: str | None) -> list[dict[str, Any]]:
    """The job states in a reply of view.lua (after its head), those of `owner` if given."""
    states = []
    for i in range(1, len(raw), 3):
        state = orjson.loads(raw[i + 1])
        if owner is not None and state["userId"] != owner:
            continue
        if state["event"] is not None and raw[i + 2]:
            states.append({**state["event"], "id": raw[i + 2]})
    return states
