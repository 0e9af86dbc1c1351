"""Wire messages: parse and validate what comes in, encode what goes out, in one place.

Inbound job updates and client messages are validated by pydantic models; the first failure
becomes one `InvalidUpdate`/`InvalidMessage` naming the field as it was sent.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

import orjson
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    TypeAdapter,
    ValidationError,
    field_validator,
)

from .auth import Principal
from .errors import BadRequest, InvalidMessage, InvalidUpdate, JobwireError

ID_PATTERN = r"^[A-Za-z0-9_.:\-]{1,128}$"
Ident = Annotated[StrictStr, Field(pattern=ID_PATTERN)]
MAX_OPERATION_CHARS = 1024


class Status(StrEnum):
    QUEUED = "queued"
    PROCESSING = "processing"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    # Set on each member below: plain attributes, read several times per published update.
    terminal: bool
    rank: int  # lifecycle order: queued → processing → terminal; a job never moves back


for _status in Status:
    _status.terminal = _status in (Status.COMPLETED, Status.FAILED, Status.CANCELLED)
    _status.rank = 2 if _status.terminal else (1 if _status is Status.PROCESSING else 0)


class JobUpdate(BaseModel):
    """A worker's status update (contract §2). Optional fields left out keep the job's value."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    jobId: Ident
    userId: Ident
    status: Status
    progress: StrictInt | StrictFloat | None = None
    currentOperation: Annotated[StrictStr, Field(max_length=MAX_OPERATION_CHARS)] | None = None
    timestamp: StrictStr | None = None
    workerId: Ident | None = None
    result: Any = None
    error: Any = None
    eventId: Ident | None = None

    @field_validator("progress")
    @classmethod
    def _progress_range(cls, v: float | None) -> float | None:
        # Compare before any float conversion: a huge int must not overflow math.isfinite.
        if v is not None and not (0 <= v <= 100 and (isinstance(v, int) or math.isfinite(v))):
            raise ValueError("must be a number from 0 to 100")
        return v

    @field_validator("timestamp")
    @classmethod
    def _iso_timestamp(cls, v: str | None) -> str | None:
        if v is None:
            return v
        try:
            if len(v) > 64 or ("T" not in v.upper() and " " not in v):
                raise ValueError(v)  # a bare date is not a moment
            datetime.fromisoformat(v)
        except ValueError:
            raise ValueError("timestamp must be an ISO 8601 date-time") from None
        return v


def _first_error(exc: ValidationError, tag: str | None = None) -> tuple[str | None, str]:
    """The first failure as (field as sent, message). `tag` is a union tag to strip."""
    err = exc.errors(include_url=False)[0]
    names = [p for p in err["loc"] if isinstance(p, str)]
    if tag is not None and names[:1] == [tag]:
        names = names[1:]
    field = names[0] if names else None
    msg = err["msg"].removeprefix("Value error, ")
    if err["type"] == "string_pattern_mismatch":
        msg = "must be 1-128 characters of A-Z a-z 0-9 _ . : -"
    elif err["type"] == "enum":
        msg = "must be one of " + ", ".join(s.value for s in Status)
    elif field == "progress":
        msg = "must be a number from 0 to 100"
    return field, f"{field}: {msg}" if field else msg


def parse_update(data: Any, *, job_id: str | None = None) -> JobUpdate:
    """Validate one update. `job_id` is the id from the URL path, which the body may repeat."""
    if not isinstance(data, dict):
        raise InvalidUpdate("an update must be a JSON object")
    if job_id is not None:
        if "jobId" in data and data["jobId"] != job_id:
            raise InvalidUpdate("jobId in the body differs from the URL", field="jobId")
        data = {**data, "jobId": job_id}
    try:
        return JobUpdate.model_validate(data)
    except ValidationError as exc:
        field, msg = _first_error(exc)
        raise InvalidUpdate(msg, field=field) from None


def loads(raw: bytes | str) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise BadRequest("body is not valid JSON") from None


def dumps(obj: Any) -> bytes:
    return orjson.dumps(obj)


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# --- client messages (WebSocket) ---------------------------------------------------------


class _Msg(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class AuthMsg(_Msg):
    type: Literal["auth"]
    token: Annotated[StrictStr, Field(min_length=1, max_length=8192)]


class SubscribeMsg(_Msg):
    type: Literal["subscribe"]
    jobIds: list[Ident] | None = None
    all: StrictBool = False
    userId: Ident | None = None
    lastEventId: Annotated[StrictStr, Field(max_length=64)] | None = None


class UnsubscribeMsg(_Msg):
    type: Literal["unsubscribe"]
    jobIds: list[Ident] | None = None
    all: StrictBool = False


class PingMsg(_Msg):
    type: Literal["ping"]


ClientMessage = AuthMsg | SubscribeMsg | UnsubscribeMsg | PingMsg
_client_adapter: TypeAdapter[ClientMessage] = TypeAdapter(
    Annotated[ClientMessage, Field(discriminator="type")]
)
CLIENT_TYPES = ("auth", "subscribe", "unsubscribe", "ping")


def parse_client_message(raw: str | bytes) -> ClientMessage:
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise InvalidMessage("message is not valid JSON") from None
    if not isinstance(data, dict):
        raise InvalidMessage("message must be a JSON object")
    kind = data.get("type")
    if kind not in CLIENT_TYPES:
        raise InvalidMessage(
            f"unknown message type {str(kind)[:32]!r}; expected one of {', '.join(CLIENT_TYPES)}",
            field="type",
        )
    try:
        msg = _client_adapter.validate_python(data)
    except ValidationError as exc:
        field, text = _first_error(exc, tag=kind)
        raise InvalidMessage(text, field=field) from None
    if isinstance(msg, SubscribeMsg | UnsubscribeMsg) and msg.jobIds is None and not msg.all:
        raise InvalidMessage(f"{kind} needs jobIds or all: true", field="jobIds")
    return msg


def error_message(exc: JobwireError) -> bytes:
    return orjson.dumps(exc.to_message())


def principal_fields(principal: Principal) -> dict[str, Any]:
    """Who a connection is, as `authenticated` and the transports' snapshots tell it: the one
    way a page signed in by cookie learns its user."""
    return {"userId": principal.user_id, "role": principal.role.value,
            "expiresAt": principal.expires_at}


def heartbeat_message() -> bytes:
    return orjson.dumps({"type": "heartbeat", "timestamp": now_iso()})


PONG = orjson.dumps({"type": "pong"})
