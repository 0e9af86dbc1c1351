"""The WebSocket fast path: everything jobwire does with uvicorn's internals, and the only
module that does. Under uvicorn's websockets-sansio implementation, a connection's protocol
object can be written to directly (frames.py: each event framed once, all the frames waiting
for a client in one write), made lighter per connection, and its TCP connection aborted when
the peer stops reading. None of that is uvicorn's public API, so at start-up
`websocket_protocol` checks every attribute and behaviour used here on a protocol object
over a stand-in transport. If anything is missing it logs one warning naming it, and the
server runs uvicorn's standard implementation, every message an ASGI send: all of the fast
path or none of it.

Works from uvicorn 0.52.1: websockets_sansio_impl came with 0.35.0, but before 0.52.1 its
protocol has no `pause_writing`/`resume_writing` (nothing clears `writable`, so a peer that
stops reading would be written to without end); older ones fail the check."""

from __future__ import annotations

import asyncio
import logging
import socket
import traceback
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from starlette.websockets import WebSocket
from websockets.frames import Frame, Opcode

from .frames import text_frame

log = logging.getLogger("jobwire.websocket")

SANSIO_MODULE = "uvicorn.protocols.websockets.websockets_sansio_impl"
try:
    from uvicorn.protocols.websockets.websockets_sansio_impl import (
        WebSocketsSansIOProtocol as UvicornProtocol,
    )

    IMPORT_PROBLEM: str | None = None
except Exception as exc:  # an older or a reorganised uvicorn: the ASGI path is used
    UvicornProtocol = asyncio.Protocol  # type: ignore[assignment,misc]
    IMPORT_PROBLEM = f"{SANSIO_MODULE}.WebSocketsSansIOProtocol cannot be imported ({exc})"



def drop_unanswered_after(transport: Any, seconds: float | None) -> None:
    """Have the kernel drop the connection once what was written to it has gone
    unacknowledged for `seconds` (TCP_USER_TIMEOUT). The heartbeat written to every
    WebSocket each interval makes this find a vanished peer (a dropped route, a machine
    gone) with no timer or ping of ours per connection; without it, the kernel would keep
    retransmitting for about 15 minutes."""
    sock = transport.get_extra_info("socket")
    if not seconds or sock is None or not hasattr(socket, "TCP_USER_TIMEOUT"):
        return
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, max(1, int(seconds * 1000)))
    except OSError:  # not TCP (a Unix socket): nothing unacknowledged to wait for
        pass


class PlainWebSocketProtocol(UvicornProtocol):  # type: ignore[misc,valid-type]
    """uvicorn's websockets-sansio protocol as it is (every message an ASGI send), with
    vanished peers dropped as on the fast path (`drop_unanswered_after`)."""

    def connection_made(self, transport: Any) -> None:
        drop_unanswered_after(transport, self.config.ws_ping_timeout)
        super().connection_made(transport)


# uvicorn's own implementation, for the plain path: websockets-sansio where it exists, else
# whatever uvicorn picks by default (then only pings find a vanished peer).
PLAIN_PROTOCOL: Any = PlainWebSocketProtocol if IMPORT_PROBLEM is None else "auto"

# What this module calls on uvicorn's class, or relies on it to call.
UVICORN_METHODS = ("connection_made", "connection_lost", "data_received", "pause_writing",
                   "resume_writing", "send", "receive")
UVICORN_STATE = ("queue", "writable", "transport", "close_sent", "conn")
# What FastWebSocketProtocol adds: a uvicorn that defined these itself would be overridden.
OWN_METHODS = ("frames_paused", "frames_resumed", "frames_closed", "write_frames", "cut_off")
PROBE_SECONDS = 5.0


class MessageQueue:
    """The receive queue: uvicorn puts, the connection's one ASGI `receive` gets."""

    __slots__ = ("items", "waiter")

    def __init__(self) -> None:
        self.items: list[Any] = []
        self.waiter: asyncio.Future[None] | None = None

    def put_nowait(self, item: Any) -> None:
        self.items.append(item)
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def empty(self) -> bool:
        return not self.items

    async def get(self) -> Any:
        while not self.items:
            self.waiter = asyncio.get_running_loop().create_future()
            try:
                await self.waiter
            finally:
                self.waiter = None
        return self.items.pop(0)


class Flag:
    """The `writable` flag: cleared while the socket's buffer is full."""

    __slots__ = ("value", "waiters")

    def __init__(self, value: bool) -> None:
        self.value = value
        self.waiters: list[asyncio.Future[None]] = []

    def is_set(self) -> bool:
        return self.value

    def set(self) -> None:
        self.value = True
        waiters, self.waiters = self.waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def clear(self) -> None:
        self.value = False

    async def wait(self) -> bool:
        if not self.value:
            waiter = asyncio.get_running_loop().create_future()
            self.waiters.append(waiter)
            await waiter
        return True


class FastWebSocketProtocol(UvicornProtocol):  # type: ignore[misc,valid-type]
    """uvicorn's websockets-sansio protocol, lighter per connection and written to directly.
    An idle connection is mostly its server-side objects: an asyncio.Queue and an
    asyncio.Event cost four deques (about 3 KiB), and the handshake's request and response
    (their headers, about 2 KiB) are kept for the connection's life. Here the queue and the
    flag are small objects made for their one reader, and the handshake is let go once
    accepted. The `frames_*`, `write_frames` and `cut_off` methods are what the WebSocket
    transport uses instead of ASGI sends."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.queue = MessageQueue()
        self.writable = Flag(True)

    def connection_made(self, transport: Any) -> None:
        drop_unanswered_after(transport, self.config.ws_ping_timeout)
        super().connection_made(transport)

    async def send(self, message: Any) -> None:
        await super().send(message)
        if message["type"] == "websocket.accept" and self.handshake_complete:
            self.request = self.response = None

    def frames_paused(self) -> bool:
        """The socket's buffer is full (uvicorn's flow control): wait for `frames_resumed`."""
        return not self.writable.value

    async def frames_resumed(self) -> None:
        await self.writable.wait()

    def frames_closed(self) -> bool:
        """Closing, or closed: whatever is written now would follow the close frame."""
        return self.close_sent or self.transport.is_closing()

    def write_frames(self, data: bytes) -> None:
        """Frames already serialised (server frames: unmasked, uncompressed)."""
        self.transport.write(data)

    def cut_off(self) -> None:
        """Drop the TCP connection at once, buffered data and all: for a peer that stopped
        reading, which a close frame (and a graceful close) would wait for forever."""
        self.transport.abort()


def fast_protocol(ws: WebSocket) -> FastWebSocketProtocol | None:
    """The server's protocol object under `ws` when frames can be written to it directly: the
    fast path chosen at start-up, and permessage-deflate off (a compressed connection needs
    every frame to go through its compressor). uvicorn's `send` is a method of it; the
    server's own `send` is kept in the scope by the app (ExposeServerSend)."""
    protocol = getattr(ws.scope.get("jobwire.server_send"), "__self__", None)
    if isinstance(protocol, FastWebSocketProtocol) and not protocol.conn.extensions:
        return protocol
    return None


def websocket_protocol(enabled: bool) -> tuple[Any, bool]:
    """uvicorn's `ws` setting, and whether it is the fast path: FastWebSocketProtocol when
    `enabled` and this uvicorn passes the check, else uvicorn's standard implementation.
    Logs which, once; a failed check as a warning naming what is missing."""
    uvicorn_version = _uvicorn_version()
    if not enabled:
        log.info("WebSocket fast path off (JOBWIRE_WS_FAST_PATH=off): plain ASGI sends")
        return PLAIN_PROTOCOL, False
    try:
        problems = check_fast_path()
    except Exception as exc:  # whatever the check runs into, the server starts
        problems = [f"the check failed: {exc!r}"]
    if problems:
        log.warning("WebSocket fast path unavailable on uvicorn %s, serving WebSockets through "
                    "plain ASGI sends: %s", uvicorn_version, "; ".join(problems))
        return PLAIN_PROTOCOL, False
    log.info("WebSocket fast path on: frames written straight to uvicorn %s's connections",
             uvicorn_version)
    return FastWebSocketProtocol, True


def check_fast_path() -> list[str]:
    """What the fast path needs and this uvicorn lacks: empty when everything is there."""
    if IMPORT_PROBLEM is not None:
        return [IMPORT_PROBLEM]
    problems = []
    for name in UVICORN_METHODS:
        method = getattr(UvicornProtocol, name, None)
        if not callable(method) or method is getattr(asyncio.Protocol, name, None):
            problems.append(f"WebSocketsSansIOProtocol.{name}() is missing")
    problems += [f"WebSocketsSansIOProtocol now has a {name} of its own"
                 for name in OWN_METHODS if hasattr(UvicornProtocol, name)]
    if problems:
        return problems
    loop = asyncio.new_event_loop()
    quiet = _Silence()
    # Not uvicorn's lines about the probed connection (its "accepted", the traceback of a
    # failed one): the one warning of `websocket_protocol` says what matters.
    logging.getLogger("uvicorn.error").addFilter(quiet)
    try:
        return loop.run_until_complete(asyncio.wait_for(_probe(), PROBE_SECONDS))
    except Exception as exc:
        where = traceback.extract_tb(exc.__traceback__)[-1].name
        return [f"a protocol over a stand-in transport failed in {where}(): {exc!r}"]
    finally:
        left = asyncio.all_tasks(loop)  # a failed probe's app, still waiting
        if left:
            loop.run_until_complete(_cancel(left))
        logging.getLogger("uvicorn.error").removeFilter(quiet)
        loop.close()


async def _cancel(tasks: set[asyncio.Task[Any]]) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


HANDSHAKE = (b"GET /probe HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n"
             b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
             b"Sec-WebSocket-Version: 13\r\n\r\n")


async def _probe() -> list[str]:
    """One connection's life, as uvicorn's HTTP protocol hands it over after an upgrade,
    with a small ASGI app: every step the fast path relies on, checked as it happens."""
    import uvicorn
    from uvicorn.server import ServerState

    loop = asyncio.get_running_loop()
    accepted: asyncio.Future[Any] = loop.create_future()
    received: asyncio.Future[Any] = loop.create_future()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()  # websocket.connect
        await send({"type": "websocket.accept"})
        accepted.set_result(getattr(send, "__self__", None))
        received.set_result(await receive())
        await send({"type": "websocket.close", "code": 1000})
        await receive()  # the disconnect that the close queued

    config = uvicorn.Config(app, ws=FastWebSocketProtocol, ws_per_message_deflate=False,
                            lifespan="off", log_config=None)
    config.load()
    state = ServerState()
    protocol = FastWebSocketProtocol(config=config, server_state=state, app_state={})
    transport = _StandInTransport()
    protocol.connection_made(transport)
    missing = [name for name in UVICORN_STATE if not hasattr(protocol, name)]
    if missing:
        return [f"a WebSocketsSansIOProtocol has no {', '.join(missing)}"]
    problems = []
    if not isinstance(protocol.queue, MessageQueue) or not isinstance(protocol.writable, Flag):
        problems.append("WebSocketsSansIOProtocol.__init__ sets queue or writable after ours")
    if protocol.transport is not transport:
        problems.append("connection_made() does not keep the transport as `transport`")
    if protocol.close_sent is not False or not hasattr(protocol.conn, "extensions"):
        problems.append("close_sent or conn.extensions is not what it was")
    protocol.pause_writing()
    paused = protocol.frames_paused()
    waiting = asyncio.ensure_future(protocol.frames_resumed())
    await asyncio.sleep(0)
    protocol.resume_writing()
    if not paused or protocol.frames_paused():
        problems.append("pause_writing()/resume_writing() do not toggle `writable`")
    await asyncio.wait_for(waiting, PROBE_SECONDS)

    protocol.data_received(HANDSHAKE)
    if await accepted is not protocol:
        problems.append("the ASGI `send` is not a method of the protocol object")
    if not transport.written.startswith(b"HTTP/1.1 101"):
        problems.append("the handshake was not answered with 101")
    if protocol.conn.extensions:
        problems.append("conn.extensions is not empty without permessage-deflate")
    frame = text_frame(b'{"probe":1}')
    if protocol.frames_paused() or protocol.frames_closed():
        problems.append("an open connection reads as paused or closing")
    protocol.write_frames(frame)
    if not transport.written.endswith(frame):
        problems.append("a frame written directly did not reach the transport")
    protocol.data_received(Frame(Opcode.TEXT, b"hello").serialize(mask=True))
    message = await received
    if message.get("text") != "hello":
        problems.append(f"a client's message reached the app as {message!r}")
    await asyncio.wait_for(asyncio.gather(*state.tasks), PROBE_SECONDS)  # the app returned
    if not protocol.frames_closed():
        problems.append("close_sent is not set by a websocket.close")
    protocol.cut_off()
    if not transport.aborted:
        problems.append("cut_off() did not abort the transport")
    protocol.connection_lost(None)
    return problems


class _StandInTransport(asyncio.Transport):
    """Enough of a TCP transport for one probed connection: writes are kept."""

    def __init__(self) -> None:
        super().__init__()
        self.written = b""
        self.closing = self.aborted = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"sockname": ("127.0.0.1", 1), "peername": ("127.0.0.1", 2)}.get(name, default)

    def write(self, data: Any) -> None:
        self.written += bytes(data)

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    def abort(self) -> None:
        self.closing = self.aborted = True

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


class _Silence(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return False


def _uvicorn_version() -> str:
    try:
        return version("uvicorn")
    except PackageNotFoundError:
        return "(version unknown)"

