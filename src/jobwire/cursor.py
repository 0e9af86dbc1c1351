"""Event ids (cursors): `<milliseconds>-<sequence>`, the shape of a Redis stream id.

Ids are totally ordered by their (ms, n) position, so one comparison tells whether an event is
after a cursor, on every transport and instance. The dash keeps an id from ever being purely
digits, which the contract reserves for Unix times.
"""

from __future__ import annotations

import re

from .errors import InvalidCursor

Position = tuple[int, int]

START: Position = (0, 0)
_ID_RE = re.compile(r"([0-9]{1,16})-([0-9]{1,16})")
# A purely numeric `last_seen` below this is seconds, above it milliseconds.
_SECONDS_LIMIT = 10**11


def format_id(pos: Position) -> str:
    return f"{pos[0]}-{pos[1]}"


def parse_id(value: str) -> Position:
    m = _ID_RE.fullmatch(value)
    if m is None:
        raise InvalidCursor(f"not a jobwire event id: {value[:64]!r}", field="lastEventId")
    return int(m.group(1)), int(m.group(2))


def parse_resume_point(value: str, field: str = "lastEventId") -> Position:
    """An event id, or a Unix time (seconds or milliseconds) meaning 'events accepted after it'."""
    value = value.strip()
    if value.isascii() and value.isdigit() and len(value) <= 16:
        t = int(value)
        ms = t * 1000 if t < _SECONDS_LIMIT else t
        # Everything accepted in a later millisecond than `ms`.
        return (ms, 2**62)
    try:
        return parse_id(value)
    except InvalidCursor as exc:
        exc.field = field
        raise


class IdClock:
    """Issues strictly increasing positions from a millisecond clock, like XADD's `*`."""

    __slots__ = ("last",)

    def __init__(self, last: Position = START):
        self.last = last

    def next(self, now_ms: int) -> Position:
        ms, n = self.last
        pos = (now_ms, 0) if now_ms > ms else (ms, n + 1)
        self.last = pos
        return pos
