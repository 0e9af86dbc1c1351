"""WebSocket transport, `/ws/jobs`: token in the handshake's Authorization header, one
`subscribe` (resuming from the tracker's cursor), then events until the connection ends or
falls silent (the server's heartbeats missed)."""

from __future__ import annotations

from typing import Any

import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from .base import Conn, Replies
from .errors import ClientError, TransportFailure, Unauthorized, Unreachable, Unsupported
from .state import Tracker

NAME = "websocket"
FATAL_CLOSES = {1007: "invalid data", 1008: "policy violation", 1009: "message too big"}
IMMEDIATE_CLOSES = {1001, 1012, 4000}  # going away, restarting, too slow: resume at once


def ws_url(url: str) -> str:
    base = url.rstrip("/")
    if base.startswith("http"):
        base = "ws" + base[4:]
    return base + "/ws/jobs"


async def run(conn: Conn, tracker: Tracker) -> None:
    headers = await conn.headers()
    try:
        ws = await connect(ws_url(conn.url), additional_headers=headers,
                           open_timeout=conn.open_timeout, close_timeout=2, max_size=2**24,
                           user_agent_header="jobwire-client")
    except InvalidStatus as exc:
        status = exc.response.status_code
        if status == 401:
            raise Unauthorized("handshake refused with 401") from exc
        if status in (200, 400, 403, 404, 405, 426):
            raise Unsupported(f"WebSocket handshake refused with {status}") from exc
        raise TransportFailure(f"WebSocket handshake refused with {status}") from exc
    except OSError as exc:
        raise Unreachable(f"cannot connect: {exc}") from exc
    except (TimeoutError, InvalidHandshake) as exc:
        raise TransportFailure(f"WebSocket handshake failed: {exc!r}") from exc
    async with ws:
        try:
            await _session(ws, conn, tracker)
        except ConnectionClosed as exc:
            raise _closed(exc) from exc
        except TransportFailure:
            ws.transport.abort()  # a silent link would hold up the closing handshake
            raise
        raise TransportFailure("connection ended")


async def _session(ws: ClientConnection, conn: Conn, tracker: Tracker) -> None:
    request: dict[str, Any] = {"type": "subscribe"}
    request.update({"all": True} if conn.job_ids is None else {"jobIds": conn.job_ids})
    resume = tracker.cursor
    if resume is not None:
        request["lastEventId"] = resume
    await ws.send(orjson.dumps(request).decode())
    await Replies(conn, tracker, NAME, resume).read(ws.recv)


def _closed(exc: ConnectionClosed) -> Exception:
    code = exc.rcvd.code if exc.rcvd is not None else 1006
    reason = exc.rcvd.reason if exc.rcvd is not None else ""
    if code == 4401:
        return Unauthorized(f"closed 4401 {reason}")
    if code in FATAL_CLOSES:
        return ClientError(f"connection closed {code} ({FATAL_CLOSES[code]}): {reason}")
    if code in IMMEDIATE_CLOSES:
        return TransportFailure(f"closed {code} {reason}", immediate=True, counts=False)
    if code == 4429:
        return TransportFailure(f"closed {code} (rate limited)", counts=False)
    return TransportFailure(f"closed {code} {reason}".strip())
