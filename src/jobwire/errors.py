"""One exception tree. Each error knows its wire code, HTTP status and WebSocket close code;
the transports map errors to the wire in one place each, never by string matching."""

from __future__ import annotations

from typing import Any


class JobwireError(Exception):
    code = "error"
    http_status = 400
    close_code: int | None = None  # set when the error ends a WebSocket connection

    def __init__(self, message: str, *, field: str | None = None, job_id: str | None = None):
        super().__init__(message)
        self.message = message
        self.field = field
        self.job_id = job_id

    def to_body(self) -> dict[str, Any]:
        """The HTTP error body: {"error": {"code", "message", "field"?}}."""
        err: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.field is not None:
            err["field"] = self.field
        return {"error": err}

    def to_message(self) -> dict[str, Any]:
        """The in-band `error` message of the streaming transports."""
        msg: dict[str, Any] = {"type": "error", "code": self.code, "message": self.message}
        if self.job_id is not None:
            msg["jobId"] = self.job_id
        if self.field is not None:
            msg["field"] = self.field
        return msg


class BadRequest(JobwireError):
    """The body could not be parsed at all (not JSON, wrong encoding)."""

    code = "bad_request"
    http_status = 400


class InvalidMessage(JobwireError):
    """A client message that parsed but is not one we understand."""

    code = "invalid_message"
    http_status = 400


class InvalidUpdate(JobwireError):
    """A job update that parsed but failed validation."""

    code = "invalid_update"
    http_status = 422


class PayloadTooLarge(JobwireError):
    code = "payload_too_large"
    http_status = 413
    close_code = 1009


class Unauthorized(JobwireError):
    code = "unauthorized"
    http_status = 401
    close_code = 4401


class Forbidden(JobwireError):
    code = "forbidden"
    http_status = 403


class NotFound(JobwireError):
    code = "not_found"
    http_status = 404


class Conflict(JobwireError):
    """Ownership or lifecycle refused the update; nothing changed."""

    code = "conflict"
    http_status = 409


class OwnerMismatch(Conflict):
    code = "owner_mismatch"


class JobFinished(Conflict):
    code = "job_finished"


class LifecycleViolation(Conflict):
    code = "lifecycle_violation"


class ProgressRegression(Conflict):
    code = "progress_regression"


class CursorExpired(JobwireError):
    code = "cursor_expired"
    http_status = 410


class InvalidCursor(InvalidMessage):
    """A resume point that is neither an event id nor a Unix time."""


class TooManySubscriptions(JobwireError):
    code = "too_many_subscriptions"
    http_status = 429


class RateLimited(JobwireError):
    code = "rate_limited"
    http_status = 429
    close_code = 4429

    def __init__(self, message: str, *, retry_after: int = 1, **kwargs: str | None):
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class BrokerUnavailable(JobwireError):
    """The update could not be stored; the caller should retry."""

    code = "unavailable"
    http_status = 503


class ConfigError(ValueError):
    """Bad settings, reported once at start-up with the offending name and value."""
