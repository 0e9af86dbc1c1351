"""Writing WebSocket frames straight to the connection. Through ASGI, every message to every
client is a dict, three layers of calls and its own socket write; under uvicorn's
websockets-sansio server a connection can instead be written to directly: each event is
framed once (by the websockets library) and the same bytes go to every recipient, and all
the frames waiting for one client go out in a single write."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from starlette.websockets import WebSocket
from websockets.frames import Frame, Opcode

from ..events import Event

log = logging.getLogger("jobwire.websocket")

try:
    from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
except ImportError:  # another server, or an older uvicorn: the ASGI path is used
    WebSocketsSansIOProtocol = None


def text_frame(data: bytes) -> bytes:
    """A server's (unmasked, uncompressed) text frame carrying `data`."""
    return Frame(Opcode.TEXT, data).serialize(mask=False)


def event_frame(event: Event) -> bytes:
    frame = event.ws_frame
    if frame is None:
        frame = event.ws_frame = text_frame(event.text.encode())
    return frame


def server_protocol(ws: WebSocket) -> Any | None:
    """The server's protocol object under `ws` when frames can be written to it directly:
    uvicorn's websockets-sansio implementation, with permessage-deflate off (a compressed
    connection needs every frame to go through its compressor). The writer uses its
    `transport`, `writable` (cleared while the socket's buffer is full) and `close_sent`."""
    send = ws.scope.get("jobwire.server_send")
    protocol = getattr(send, "__self__", None)
    if (WebSocketsSansIOProtocol is None or not isinstance(protocol, WebSocketsSansIOProtocol)
            or protocol.conn.extensions):
        return None
    return protocol


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
