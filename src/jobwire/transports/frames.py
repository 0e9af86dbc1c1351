"""Writing WebSocket frames straight to the connection. Through ASGI, every message to every
client is a dict, three layers of calls and its own socket write; on the fast path
(uvicorn_fast_path.py) a connection can instead be written to directly: each event is framed
once (by the websockets library) and the same bytes go to every recipient, and all the
frames waiting for one client go out in a single write."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from websockets.frames import Frame, Opcode

from ..events import Event

log = logging.getLogger("jobwire.websocket")


def text_frame(data: bytes) -> bytes:
    """A server's (unmasked, uncompressed) text frame carrying `data`."""
    return Frame(Opcode.TEXT, data).serialize(mask=False)


_last_control: tuple[bytes, bytes] = (b"", text_frame(b""))  # (message, its frame)


def control_frame(message: bytes) -> bytes:
    """`text_frame(message)`, kept for the next call with the same message: a heartbeat,
    one message for every socket, is framed once rather than once per socket."""
    global _last_control
    last, frame = _last_control
    if message is not last:
        frame = text_frame(message)
        _last_control = (message, frame)
    return frame


def event_frame(event: Event) -> bytes:
    frame = event.ws_frame
    if frame is None:
        frame = event.ws_frame = text_frame(event.text.encode())
    return frame


class Flusher:
    """Runs the writes that wake-ups asked for, all in one callback after the current one (a
    publish, often of a whole batch) returns: one scheduled callback per loop iteration
    rather than one per connection."""

    def __init__(self) -> None:
        self.pending: list[Callable[[], None]] = []

    def add(self, flush: Callable[[], None]) -> None:
        if not self.pending:
            asyncio.get_running_loop().call_soon(self._run)
        self.pending.append(flush)

    def _run(self) -> None:
        pending, self.pending = self.pending, []
        for flush in pending:
            try:
                flush()
            except Exception:  # one connection's failure must not cost the others theirs
                log.exception("failed to write to a WebSocket")
