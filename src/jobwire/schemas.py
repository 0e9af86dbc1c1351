"""What jobwire answers over HTTP, as pydantic models: the source of the response schemas in
GET /openapi.json (jobwire.openapi). The transports build their answers as plain dicts for
speed; these models describe those dicts and are not on the request path.

Objects may gain keys in later versions (contract: clients ignore unknown keys), so no model
forbids extra ones. A key that is sometimes left out (not sent as null) is typed
`X | Omitted` with a None default: absent from `required`, and not nullable in the schema.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import SkipJsonSchema

from .protocol import ID_PATTERN, Status

EVENT_ID_PATTERN = r"^[0-9]{1,16}-[0-9]{1,16}$"
Ident = Annotated[str, Field(pattern=ID_PATTERN)]
EventId = Annotated[str, Field(pattern=EVENT_ID_PATTERN,
                               description="An event id, `<ms>-<n>` (contract §4).")]
Omitted = SkipJsonSchema[None]


def _no_null_default(schema: dict[str, Any]) -> None:
    """Drop `"default": null` from keys typed `X | Omitted`: they are left out, never null."""
    for prop in schema.get("properties", {}).values():
        if prop.get("default", ...) is None and "anyOf" not in prop and prop.get("type") != "null":
            prop.pop("default")


class _Out(BaseModel):
    model_config = ConfigDict(json_schema_extra=_no_null_default)


class ErrorDetail(_Out):
    code: str = Field(description="A stable machine-readable code (contract §7).")
    message: str = Field(description="For people; may change between versions.")
    field: str | Omitted = Field(None, description="The offending input, as it was sent.")
    jobId: str | Omitted = Field(None, description="The job the error is about.")


class ErrorBody(_Out):
    """Every jobwire HTTP error: `{"error": {"code", "message", "field"?, "jobId"?}}`."""

    error: ErrorDetail


class ErrorMessage(_Out):
    """An in-band error of a stream (SSE `data:`), or one refused job id of a long-poll."""

    type: Literal["error"]
    code: str
    message: str
    jobId: str | Omitted = None
    field: str | Omitted = None


class PublishAck(_Out):
    """The event that now carries the job's state; `id` and `seq` are null while a
    conflated update is held."""

    jobId: str
    id: EventId | None
    seq: Annotated[int, Field(ge=1)] | None


class BatchRefusal(_Out):
    """One refused item of a batch; the others were applied."""

    jobId: str | None = Field(description="null when the item has no string jobId")
    status: int = Field(description="The HTTP status the item alone would have had.")
    error: ErrorDetail


class BatchAnswer(_Out):
    results: list[PublishAck | BatchRefusal] = Field(
        description="One per item, in order: an ack or a refusal.")


class PrincipalInfo(_Out):
    """Who the request signed in as."""

    userId: str
    role: Literal["user", "admin", "publisher"]
    expiresAt: float | None = Field(description="Unix seconds; null if it never expires.")


class JobEvent(_Out):
    """A job event, and a job's snapshot state (its latest delivered event, verbatim)."""

    type: Literal["status_update", "job_completed", "job_stalled"]
    id: EventId
    seq: Annotated[int, Field(ge=1)]
    jobId: str
    userId: str
    status: Status
    progress: Annotated[float, Field(ge=0, le=100)]
    currentOperation: str | None
    timestamp: str
    createdAt: str | None = Field(
        description="The timestamp of the job's first event, the same in every event of the "
                    "job; null for jobs stored by a version without it.")
    workerId: str | None
    etaSeconds: Annotated[float, Field(ge=0)] | None
    result: Any = Field(None, description="`job_completed` only: the terminal update's result.")
    error: Any = Field(None, description="`job_completed` only: the terminal update's error.")
    stalled: Literal[True] | Omitted = Field(None, description="`job_stalled` only.")
    lastUpdate: str | Omitted = Field(
        None, description="`job_stalled` only: the timestamp of the latest delivered update.")


class PollAnswer(_Out):
    """`GET /api/v2/jobs/status`."""

    jobs: list[JobEvent]
    cursor: EventId
    principal: PrincipalInfo


class LongPollAnswer(_Out):
    """`GET /api/v2/jobs/poll`. Without `last_seen`: `events` is empty and `jobs` and
    `principal` hold the current states; with it: the events after it, `errors` for refused
    job ids; a `last_seen` older than the retained history: current states plus `error`."""

    events: list[JobEvent]
    cursor: str = Field(description="The resume point for the next poll.")
    jobs: list[JobEvent] | Omitted = None
    principal: PrincipalInfo | Omitted = None
    errors: list[ErrorMessage] | Omitted = None
    error: ErrorDetail | Omitted = None


class SubscribedMessage(_Out):
    """The snapshot that opens a stream (SSE) or answers a WebSocket subscribe."""

    type: Literal["subscribed"]
    jobIds: list[Ident] | Omitted = None
    all: Literal[True] | Omitted = None
    userId: str | Omitted = None
    jobs: list[JobEvent]
    cursor: EventId
    heartbeatSeconds: float
    principal: PrincipalInfo


class HeartbeatMessage(_Out):
    type: Literal["heartbeat"]
    timestamp: str


class Health(_Out):
    status: Literal["ok"]
    websocket: Literal["fast", "asgi"] = Field(
        description="How WebSocket frames are written: straight to uvicorn's connections "
                    "(`fast`) or through plain ASGI sends (`asgi`).")


class Readiness(_Out):
    status: Literal["ready", "broker unavailable"]


# What one SSE `data:` line holds; a job event's block also has an `id:` line.
StreamMessage = JobEvent | SubscribedMessage | ErrorMessage | HeartbeatMessage
