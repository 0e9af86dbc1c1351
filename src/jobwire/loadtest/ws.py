"""The WebSocket readers: `GET /ws/jobs?token=…`, then `subscribe` `all: true` (with
`lastEventId` to resume). Two implementations of one client: over picows (the default: a Cython
frame parser calling back on every frame, no task or queue per message) and over `websockets`
(kept to compare the two, `--ws-client websockets`, and as a fallback where picows is missing)."""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from typing import Any

import orjson

from .clients import CLOSE_TIMEOUT, REQUEST_TIMEOUT, Client, RateLimited, Refused, ssl_context
from .stats import Tally

WS_PATH = "/ws/jobs"
MAX_MESSAGE = 2**22
RATE_LIMITED_CLOSE = 4429
REFUSED_CLOSES = (4401, 1008)

try:
    import picows
except ImportError:  # pragma: no cover - picows has wheels for the usual platforms
    picows = None


def ws_url(base_url: str, token: str) -> str:
    return ("ws" + base_url.removeprefix("http")) + f"{WS_PATH}?token={token}"


class WsBase(Client):
    transport = "ws"

    def __init__(self, user: str, base_url: str, token: str, tally: Tally):
        super().__init__(user, base_url, token, tally)
        self.url = ws_url(self.base_url, token)

    def subscribe_bytes(self) -> bytes:
        msg: dict[str, Any] = {"type": "subscribe", "all": True}
        if self.cursor:
            msg["lastEventId"] = self.cursor
        return orjson.dumps(msg)

    def handshake(self, msg: dict[str, Any]) -> bool | None:
        """A message before `subscribed`: True once subscribed, False to subscribe again,
        None to keep waiting."""
        kind = msg.get("type")
        if kind == "subscribed":
            self.subscribed(msg, expired=False)
            return True
        if kind == "error":
            expired = msg.get("code") == "cursor_expired"
            if self.subscribe_error(msg):
                return False
            if expired:
                self.cursor = None  # the snapshot's cursor is the next one
        return None


def closed_error(code: int | None, reason: str) -> Exception | None:
    """What a close during the handshake means: retry later, refused for good, or neither."""
    if code == RATE_LIMITED_CLOSE:
        return RateLimited("connection", 1.0)
    if code in REFUSED_CLOSES:
        return Refused(f"closed {code} {reason}")
    return None


class _Listener(picows.WSListener if picows else object):  # type: ignore[misc]
    """picows calls on_ws_frame for every frame, from the protocol's data_received: the message
    is parsed and counted there. Until `subscribed`, messages are queued for `open()`."""

    def __init__(self, client: PicowsClient):
        self.client = client
        self.queue: asyncio.Queue[dict[str, Any] | None] | None = asyncio.Queue()
        self.done = asyncio.get_running_loop().create_future()
        self.close_code: int | None = None
        self.close_reason = ""
        self.parts: list[bytes] = []
        self.live = True  # False once the client let go of this connection

    def on_ws_frame(self, transport: Any, frame: Any) -> None:
        t = time.time()
        kind = frame.msg_type
        if kind is TEXT or kind is BINARY or kind is CONTINUATION:
            if not frame.fin or self.parts:  # a fragmented message: rare
                self.parts.append(frame.get_payload_as_bytes())
                if not frame.fin:
                    return
                data: Any = b"".join(self.parts)
                self.parts = []
            else:
                data = frame.get_payload_as_memoryview()
            if not self.live:
                return
            msg = orjson.loads(data)
            if self.queue is not None:
                self.queue.put_nowait(msg)
            else:
                self.client.message(msg, t)
        elif kind is CLOSE:
            payload = frame.get_payload_as_bytes()
            if len(payload) >= 2:
                self.close_code = int.from_bytes(payload[:2], "big")
                self.close_reason = payload[2:].decode(errors="replace")
            with contextlib.suppress(Exception):
                transport.send_close(OK)
            transport.disconnect()

    def on_ws_disconnected(self, transport: Any) -> None:
        if self.queue is not None:
            self.queue.put_nowait(None)
        if not self.done.done():
            self.done.set_result(None)


if picows:
    TEXT, BINARY = picows.WSMsgType.TEXT, picows.WSMsgType.BINARY
    CONTINUATION, CLOSE = picows.WSMsgType.CONTINUATION, picows.WSMsgType.CLOSE
    OK = picows.WSCloseCode.OK


class PicowsClient(WsBase):
    """Over picows: no task per connection besides `run()`, and none per message."""

    def __init__(self, user: str, base_url: str, token: str, tally: Tally):
        super().__init__(user, base_url, token, tally)
        self.ws: Any = None
        self.listener: _Listener | None = None

    async def open(self) -> None:
        try:
            self.ws, listener = await picows.ws_connect(
                lambda: _Listener(self), self.url,
                ssl_context=ssl_context() if self.url.startswith("wss:") else None,
                websocket_handshake_timeout=REQUEST_TIMEOUT, max_frame_size=MAX_MESSAGE)
        except picows.WSHandshakeError as exc:
            status = exc.response.status if exc.response is not None else None
            if status == 429:
                raise RateLimited("connection", 1.0) from None
            raise Refused(f"handshake answered {status}: {exc}") from None
        self.listener = listener
        queue = listener.queue
        assert queue is not None
        self.ws.send(picows.WSMsgType.TEXT, self.subscribe_bytes())
        async with asyncio.timeout(REQUEST_TIMEOUT):
            while True:
                msg = await queue.get()
                if msg is None:
                    raise closed_error(listener.close_code, listener.close_reason) or \
                        ConnectionError(f"closed {listener.close_code} before `subscribed`")
                state = self.handshake(msg)
                if state:
                    break
                if state is False:
                    await asyncio.sleep(random.uniform(0.1, 0.5))
                    self.ws.send(picows.WSMsgType.TEXT, self.subscribe_bytes())
        listener.queue = None  # from now on, messages are counted as they arrive
        while not queue.empty():  # any that came with `subscribed`
            late = queue.get_nowait()
            if late is not None:
                self.message(late, time.time())

    async def receive(self) -> str:
        listener = self.listener
        assert listener is not None
        await asyncio.shield(listener.done)
        return f"closed: code {listener.close_code} {listener.close_reason}".rstrip()

    async def reset(self) -> None:
        if self.listener is not None:
            self.listener.live = False
            self.listener = None
        if self.ws is not None:
            self.ws.disconnect(graceful=False)  # abruptly, as a network failure would
            self.ws = None

    async def shutdown(self) -> None:
        ws, listener = self.ws, self.listener
        if ws is not None and listener is not None:
            with contextlib.suppress(Exception):
                ws.send_close(OK)
                ws.disconnect()
                await asyncio.wait_for(asyncio.shield(listener.done), CLOSE_TIMEOUT)
        await self.reset()


class WebsocketsClient(WsBase):
    """Over the `websockets` package's asyncio client (a task and a queue per connection)."""

    def __init__(self, user: str, base_url: str, token: str, tally: Tally):
        super().__init__(user, base_url, token, tally)
        self.ws: Any = None

    async def open(self) -> None:
        from websockets.asyncio.client import connect
        from websockets.exceptions import ConnectionClosed, InvalidStatus

        try:
            self.ws = ws = await connect(
                self.url, open_timeout=REQUEST_TIMEOUT, close_timeout=CLOSE_TIMEOUT,
                max_size=MAX_MESSAGE,
                ssl=ssl_context() if self.url.startswith("wss:") else None)
            await ws.send(self.subscribe_bytes().decode())
            async with asyncio.timeout(REQUEST_TIMEOUT):
                while True:
                    state = self.handshake(orjson.loads(await ws.recv()))
                    if state:
                        return
                    if state is False:
                        await asyncio.sleep(random.uniform(0.1, 0.5))
                        await ws.send(self.subscribe_bytes().decode())
        except ConnectionClosed as exc:
            rcvd = exc.rcvd
            raise (closed_error(rcvd.code, rcvd.reason) if rcvd else None) or exc from None
        except InvalidStatus as exc:
            code = exc.response.status_code
            if code == 429:
                raise RateLimited("connection", 1.0) from None
            raise Refused(f"handshake answered {code}") from None

    async def receive(self) -> str:
        ws = self.ws
        assert ws is not None
        message, loads, now = self.message, orjson.loads, time.time
        async for raw in ws:
            t = now()
            message(loads(raw), t)
        return f"closed: code {ws.close_code} {ws.close_reason or ''}".rstrip()

    async def reset(self) -> None:
        if self.ws is not None:
            self.ws.transport.abort()  # abruptly, as a network failure would
            self.ws = None

    async def shutdown(self) -> None:
        if self.ws is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.ws.close(), CLOSE_TIMEOUT)
            await self.reset()


WS_CLIENTS: dict[str, type[WsBase]] = {"picows": PicowsClient, "websockets": WebsocketsClient}
DEFAULT_WS_CLIENT = "picows" if picows else "websockets"
