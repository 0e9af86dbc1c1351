"""Shared helpers of the job-side reporter."""

from __future__ import annotations

import asyncio
import logging
import re
from typing import Any

import orjson

from ..errors import ConfigError
from ..protocol import ID_PATTERN, MAX_OPERATION_CHARS

log = logging.getLogger("jobwire.reporter")

_ID = re.compile(ID_PATTERN)
_NOT_ID = re.compile(r"[^A-Za-z0-9_.:\-]")
RESULT_LIMIT_BYTES = 16 * 1024  # a bigger result is replaced by a short summary
QUIET_SECONDS = 5.0  # after a failed publish, skip progress-only reports this long
FLUSH_MARGIN = 0.05


# --- helpers ------------------------------------------------------------------------------


def safe_id(value: Any) -> str:
    """`value` as a valid id (1-128 of `A-Z a-z 0-9 _ . : -`): other characters become `_`,
    e.g. a Celery hostname `celery@host-1` → `celery_host-1`."""
    text = _NOT_ID.sub("_", str(value))[:128]
    return text or "_"


def jsonable(value: Any, limit: int = RESULT_LIMIT_BYTES) -> Any:
    """`value` as JSON for `result`: unknown types become strings; a value whose JSON is
    bigger than `limit` bytes becomes `{"truncated": true, "repr": "…"}` so that the terminal
    update still fits in a message."""
    try:
        raw = orjson.dumps(value, default=str, option=orjson.OPT_NON_STR_KEYS)
    except (TypeError, ValueError):
        return {"repr": repr(value)[:1000]}
    if len(raw) > limit:
        return {"truncated": True, "repr": repr(value)[:1000]}
    return orjson.loads(raw)


def error_of(exc: BaseException) -> dict[str, Any]:
    """The `error` of a failed job: `{"type": "ValueError", "message": "…"}`."""
    return {"type": type(exc).__name__, "message": str(exc)[:MAX_OPERATION_CHARS]}


def _check_id(name: str, value: Any) -> str:
    if not isinstance(value, str) or not _ID.match(value):
        raise ConfigError(f"{name} must be 1-128 characters of A-Z a-z 0-9 _ . : -, "
                          f"got {value!r}")
    return value


def _cancelled(exc: BaseException) -> bool:
    return isinstance(exc, asyncio.CancelledError | KeyboardInterrupt)


# --- publishers ---------------------------------------------------------------------------



