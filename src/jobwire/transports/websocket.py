"""WebSocket transport, `GET /ws/jobs`: authenticate (handshake token or in-band `auth`),
then read client messages; what the session queues is written out as it comes: as frames
written directly on the fast path (frames.py, uvicorn_fast_path.py), else as ASGI sends."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from typing import Any

from starlette.websockets import WebSocket, WebSocketDisconnect

from ..auth import Principal
from ..cursor import parse_resume_point
from ..errors import (
    BrokerUnavailable,
    Forbidden,
    InvalidMessage,
    JobwireError,
    RateLimited,
    Unauthorized,
)
from ..events import Event
from ..protocol import (
    PONG,
    AuthMsg,
    PingMsg,
    SubscribeMsg,
    UnsubscribeMsg,
    dumps,
    parse_client_message,
    principal_fields,
)
from ..ratelimit import TokenBucket
from ..service import Service
from ..session import CloseReason, Session
from . import frames
from .identify import identify
from .uvicorn_fast_path import FastWebSocketProtocol, fast_protocol

log = logging.getLogger("jobwire.websocket")

WS_PATH = "/ws/jobs"
NOTABLE = (CloseReason.SLOW, CloseReason.RATE_LIMITED)  # closes worth an info line
CLOSE_GRACE_SECONDS = 2.0  # for a closing frame to get out before the connection is cut
CLOSE_CODES = {CloseReason.SLOW: 4000, CloseReason.EXPIRED: 4401, CloseReason.SHUTDOWN: 1012,
               CloseReason.RATE_LIMITED: 4429}
CLOSE_TEXT = {CloseReason.SLOW: "too slow: resume from your cursor",
              CloseReason.EXPIRED: "token expired", CloseReason.SHUTDOWN: "server restarting",
              CloseReason.RATE_LIMITED: "rate limited"}


async def websocket_endpoint(ws: WebSocket) -> None:
    service: Service = ws.app.state.service
    await ws.accept()
    try:
        principal = await identify(ws, service, "websocket") or await _auth_in_band(ws, service)
    except Forbidden as exc:
        await ws.close(1008, exc.message)
        return
    except Unauthorized as exc:
        await _close(ws, 4401, exc.message)
        return
    except BrokerUnavailable as exc:  # the session store or the hook cannot answer now
        await _close(ws, 1013, exc.message)
        return
    except (WebSocketDisconnect, TimeoutError):
        await _close(ws, 4401, "authentication timed out")
        return
    try:
        service.limits.connect(principal, ws.client.host if ws.client else None, time.time())
    except RateLimited as exc:
        await _close(ws, 4429, exc.message)
        return
    try:
        connection = Connection(service, ws, principal)
        connection.session.send(_authenticated(principal))
        await connection.run()
    finally:
        service.limits.disconnect(principal)


async def _auth_in_band(ws: WebSocket, service: Service) -> Principal:
    message = await asyncio.wait_for(ws.receive(), service.settings.auth_timeout_seconds)
    if message["type"] == "websocket.disconnect":
        raise WebSocketDisconnect(message.get("code", 1000))
    try:
        msg = parse_client_message(message.get("text") or message.get("bytes") or b"")
    except InvalidMessage:
        raise Unauthorized("first message must be auth") from None
    if not isinstance(msg, AuthMsg):
        raise Unauthorized("first message must be auth")
    return await service.authenticate(msg.token)


class ExposeServerSend:
    """Outermost ASGI middleware: keeps the server's own `send` of each WebSocket in its
    scope, for the fast path (the framework wraps the one the endpoint sees)."""

    def __init__(self, app: Any):
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "websocket":
            scope["jobwire.server_send"] = send
        await self.app(scope, receive, send)


def _authenticated(principal: Principal) -> bytes:
    return dumps({"type": "authenticated", **principal_fields(principal)})


async def _close(ws: WebSocket, code: int, reason: str) -> None:
    with contextlib.suppress(Exception):
        await ws.close(code, reason)


class Connection:
    # Off the fast path only (class defaults, nothing per connection on it): the endpoint's
    # task, and whether it was cancelled to cut off a peer that stopped reading.
    reader: asyncio.Task[Any] | None = None
    cut = False

    def __init__(self, service: Service, ws: WebSocket, principal: Principal):
        self.service = service
        self.ws = ws
        self.conn_id = secrets.token_hex(4)
        # Per connection there is one task, the reader (the endpoint). Outgoing messages are
        # written by a callback scheduled when the outbox fills (or, off the fast path, by a
        # writer task over ASGI). Heartbeats come from one service-wide loop, expiry is a
        # timer, and a close gets a task of its own only when it happens: with thousands of
        # sockets, every task per socket counts.
        self.protocol: FastWebSocketProtocol | None = fast_protocol(ws)
        self.flusher: frames.Flusher = ws.app.state.ws_flusher
        self.flush_pending = False
        self.resumer: asyncio.Task[None] | None = None  # waits for a paused socket to drain
        # Only where frames cannot be written directly: what wakes the ASGI writer task.
        self.wakeup = asyncio.Event() if self.protocol is None else None
        self.writer: asyncio.Task[None] | None = None
        self.closer: asyncio.Task[None] | None = None
        self.expiry: asyncio.TimerHandle | None = None
        rate = service.settings.max_messages_per_second
        self.bucket = TokenBucket(rate, 2 * rate) if rate > 0 else None
        self.strikes = 0  # refused messages in a row
        self.session: Session = service.open_session(principal, "websocket", self._wake)
        if self.protocol is not None:
            self.session.direct = self

    def _wake(self) -> None:
        if self.session.closed is not None:
            if self.closer is None:
                self.closer = asyncio.ensure_future(self._close())
        elif self.wakeup is not None:
            self.wakeup.set()
        elif not self.flush_pending:
            self.flush_pending = True
            self.flusher.add(self._flush)

    async def run(self) -> None:
        p = self.session.principal
        fields = {"conn": self.conn_id, "user": p.user_id, "transport": "websocket"}
        log.debug("connection open", extra=fields)
        try:
            await self._run()
        finally:
            reason = self.session.closed.value if self.session.closed else "client"
            level = logging.INFO if self.session.closed in NOTABLE else logging.DEBUG
            log.log(level, "connection closed", extra={**fields, "reason": reason})

    async def _run(self) -> None:
        if self.wakeup is not None:
            self.writer = asyncio.create_task(self._asgi_writer(self.wakeup))
        self._schedule_expiry()
        if self.protocol is None:
            self.reader = asyncio.current_task()
        try:
            await self._reader()
        except asyncio.CancelledError:
            # Cut off (see `_cut_off`): the connection is over, not the server.
            if not self.cut or self.reader is None or self.reader.uncancel() > 0:
                raise
        finally:
            self.service.close_session(self.session)
            if self.expiry is not None:
                self.expiry.cancel()
            tasks = [t for t in (self.writer, self.resumer, self.closer) if t is not None]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _reader(self) -> None:
        ws, session = self.ws, self.session
        while session.closed is None:
            message = await ws.receive()
            if message["type"] == "websocket.disconnect":
                return
            raw = message.get("text")
            if raw is None:
                raw = message.get("bytes") or b""
            if self.bucket is not None and not self.bucket.allow(time.time()):
                self._refuse()
                continue
            self.strikes = 0
            try:
                await self._handle(parse_client_message(raw))
            except JobwireError as exc:
                session.send(dumps(exc.to_message()))
            except Exception:
                # A bug, not the client's fault: log it, tell the client nothing more.
                log.exception("failed to handle a client message")
                session.send(dumps(InvalidMessage("message could not be processed")
                                   .to_message()))
        # Closed by the session (slow, expired, shutdown): the closer sends the close frame.
        await self._wait_closed()

    def _refuse(self) -> None:
        """Over the message rate: an error per refused message, and the door for a client
        that keeps on regardless."""
        self.strikes += 1
        self.service.limits.hits += 1
        if self.bucket is not None and self.strikes > self.bucket.burst:
            self.session.close(CloseReason.RATE_LIMITED)
        else:
            self.session.send(dumps(RateLimited("too many messages; slow down").to_message()))

    async def _wait_closed(self) -> None:
        with contextlib.suppress(Exception):
            while True:
                message = await self.ws.receive()
                if message["type"] == "websocket.disconnect":
                    return

    async def _handle(self, msg: Any) -> None:
        session, service = self.session, self.service
        if isinstance(msg, SubscribeMsg):
            after = (parse_resume_point(msg.lastEventId)
                     if msg.lastEventId is not None else None)
            await service.subscribe(session, job_ids=msg.jobIds, all_jobs=msg.all,
                                    user_id=msg.userId, after=after)
        elif isinstance(msg, UnsubscribeMsg):
            service.unsubscribe(session, job_ids=msg.jobIds, all_jobs=msg.all)
            answer: dict[str, Any] = {"type": "unsubscribed"}
            answer.update({"all": True} if msg.all else {"jobIds": msg.jobIds})
            session.send(dumps(answer))
        elif isinstance(msg, PingMsg):
            session.send(PONG)
        elif isinstance(msg, AuthMsg):
            self._refresh(await service.authenticate(msg.token))

    def _refresh(self, principal: Principal) -> None:
        current = self.session.principal
        if (principal.user_id, principal.role) != (current.user_id, current.role):
            raise Unauthorized("a refreshed token must name the same user and role")
        self.session.principal = principal
        self._schedule_expiry()
        self.session.send(_authenticated(principal))

    # --- sending: frames written directly (the fast path)

    def _flush(self) -> None:
        """Everything in the outbox, in one write. A peer that stopped reading fills the
        socket's buffer: then nothing is written, the outbox grows, and the session sheds
        progress or closes as slow; a task waits for the buffer to drain meanwhile."""
        self.flush_pending = False
        session, protocol = self.session, self.protocol
        if session.closed is not None or not session.outbox:
            return
        if protocol.frames_paused():
            if self.resumer is None:
                self.resumer = asyncio.ensure_future(self._resume())
            return
        items = session.drain()
        if protocol.frames_closed():
            return  # going away: the reader sees the disconnect
        try:
            self._write(items)
        except Exception:
            # The drained messages are lost to this connection. Keeping it open would let
            # later events through after a hole the client cannot see: drop it instead, and
            # the client resumes from the last event it has.
            log.exception("failed to write to a WebSocket; dropping the connection")
            protocol.cut_off()

    def _write(self, items: list[Any]) -> None:
        now = time.time()
        observe = self.service.latency.observe
        chunks = []
        for item in items:
            if isinstance(item, Event):
                observe(now - item.pos[0] / 1000)
                chunks.append(item.ws_frame or frames.event_frame(item))
            else:
                chunks.append(frames.control_frame(item))
        self.protocol.write_frames(chunks[0] if len(chunks) == 1 else b"".join(chunks))

    def write_heartbeat(self, message: bytes) -> bool:
        """The session's heartbeat, framed once for every socket, in a write of its own: no
        trip through the outbox and the flusher for it. Not while the socket's buffer is
        full (the outbox waits for it to drain) or the connection is closing."""
        protocol = self.protocol
        if protocol.frames_paused() or protocol.frames_closed():
            return False
        try:
            protocol.write_frames(frames.control_frame(message))
        except Exception:  # as in `_flush`: a connection that cannot be written to goes
            log.exception("failed to write to a WebSocket; dropping the connection")
            protocol.cut_off()
        return True

    async def _resume(self) -> None:
        await self.protocol.frames_resumed()
        self.resumer = None
        self._flush()

    # --- sending: through ASGI (the plain path)

    async def _asgi_writer(self, wakeup: asyncio.Event) -> None:
        ws, session = self.ws, self.session
        send = ws.send
        with contextlib.suppress(WebSocketDisconnect, RuntimeError, OSError):
            while session.closed is None:
                await wakeup.wait()
                wakeup.clear()
                latency = self.service.latency
                for item in session.drain():
                    if isinstance(item, Event):
                        latency.observe(time.time() - item.pos[0] / 1000)
                        text = item.text
                    else:
                        text = item.decode()
                    await send({"type": "websocket.send", "text": text})
            return
        session.close(CloseReason.SHUTDOWN)  # the connection failed under the writer

    async def _close(self) -> None:
        """Send the close frame for the session's close reason. A peer that stopped reading
        cannot even take that: after a grace period its connection is cut."""
        if self.writer is not None:
            self.writer.cancel()
        reason = self.session.closed
        assert reason is not None
        try:
            await asyncio.wait_for(_close(self.ws, CLOSE_CODES[reason], CLOSE_TEXT[reason]),
                                   CLOSE_GRACE_SECONDS)
        except TimeoutError:
            self._cut_off()

    def _cut_off(self) -> None:
        """Drop a peer that could not even take the close frame. The fast path aborts the
        TCP connection, and the reader sees the disconnect. ASGI has no way to: the reader
        stops waiting for the peer and the endpoint returns, and the server closes the
        connection once what it has buffered (at most its high-water mark) is read."""
        if self.protocol is not None:
            self.protocol.cut_off()
        elif self.reader is not None:
            self.cut = True
            self.reader.cancel()

    def _schedule_expiry(self) -> None:
        """Close with 4401 when the token expires, unless an `auth` refreshed it."""
        if self.expiry is not None:
            self.expiry.cancel()
            self.expiry = None
        expires = self.session.principal.expires_at
        if expires is None:
            return
        delay = expires - time.time()
        if delay <= 0:
            self.session.close(CloseReason.EXPIRED)
        else:
            self.expiry = asyncio.get_running_loop().call_later(delay, self._schedule_expiry)
