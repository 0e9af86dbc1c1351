"""The event: one accepted change of a job, with its cursor position. Encoded once, lazily,
and the same bytes go to every recipient on every transport."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from .cursor import Position, format_id

STATUS_UPDATE = "status_update"
JOB_COMPLETED = "job_completed"
JOB_STALLED = "job_stalled"


@dataclass(slots=True, eq=False)
class Event:
    pos: Position
    job_id: str
    user_id: str
    seq: int
    payload: dict[str, Any] | None  # None for an event revived from history: text only
    # True for a progress-only update: it may be conflated, and shed by a slow consumer.
    progress_only: bool = False
    _text: str | None = field(default=None, repr=False)
    # The WebSocket frame, made by that transport on first send: one for every recipient.
    ws_frame: bytes | None = field(default=None, repr=False)

    @property
    def id(self) -> str:
        return self.payload["id"] if self.payload is not None else format_id(self.pos)

    @property
    def text(self) -> str:
        text = self._text
        if text is None:
            # Encoded once, as text: every transport sends text, and history keeps one copy.
            text = self._text = orjson.dumps(self.payload).decode()
        return text
