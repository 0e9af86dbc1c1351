"""What every transport shares: the connection settings, the token source, and the mapping
of HTTP answers and httpx errors onto the client's failure kinds."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import orjson

from .errors import ClientError, TransportFailure, Unauthorized, Unreachable, Unsupported

TokenSource = str | Callable[[], str] | Callable[[], Awaitable[str]]
JOB_EVENTS = frozenset({"status_update", "job_stalled", "job_completed"})
# Any message shows the link alive; silence for this many heartbeat intervals (two missed
# beats, and half an interval for delays) shows it dead.
SILENT_BEATS = 2.5


@dataclass
class Conn:
    url: str  # the server's base URL, e.g. http://127.0.0.1:3000
    token_source: TokenSource
    job_ids: list[str] | None  # None: every job the principal may see
    open_timeout: float = 10.0
    idle_timeout: float = 45.0  # the silence that means a dead stream, interval unknown
    longpoll_timeout: float = 25.0
    max_poll_interval: float = 30.0
    heartbeat_seconds: float | None = None  # the caller's: overrides the server's
    server_heartbeat: float | None = None  # learned from `subscribed` (`heartbeatSeconds`)
    client: httpx.AsyncClient | None = None  # set when the client starts

    @property
    def heartbeat(self) -> float | None:
        """The heartbeat interval: the caller's, else the server's, else None (unknown)."""
        return self.heartbeat_seconds or self.server_heartbeat

    @property
    def silence_limit(self) -> float:
        """How long a subscribed stream may stay silent before the link is taken for dead:
        two missed heartbeats and a half; `idle_timeout` while the interval is unknown."""
        return SILENT_BEATS * self.heartbeat if self.heartbeat else self.idle_timeout

    @property
    def overrun_margin(self) -> float:
        """How long an answer may be late (a long-poll past its wait) before the link is taken
        for dead: the same silence as a stream's; `open_timeout` while it is unknown."""
        return SILENT_BEATS * self.heartbeat if self.heartbeat else self.open_timeout

    @property
    def http(self) -> httpx.AsyncClient:
        if self.client is None:
            raise RuntimeError("the client is not started")
        return self.client

    def endpoint(self, path: str) -> str:
        return self.url.rstrip("/") + path

    @property
    def refreshable(self) -> bool:
        return callable(self.token_source)

    async def token(self) -> str:
        source = self.token_source
        if not callable(source):
            return source
        value = source()
        if inspect.isawaitable(value):
            value = await value
        return str(value)

    async def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {await self.token()}"}

    def job_params(self) -> dict[str, str]:
        return {} if self.job_ids is None else {"jobIds": ",".join(self.job_ids)}


def is_job_event(msg: Any) -> bool:
    return isinstance(msg, dict) and msg.get("type") in JOB_EVENTS and "id" in msg


def check(response: httpx.Response) -> None:
    """Raise the failure kind an HTTP answer means (200 and 304 pass)."""
    status = response.status_code
    if status in (200, 304):
        return
    if status == 401:
        raise Unauthorized("HTTP 401")
    if status in (404, 405):
        raise Unsupported(f"HTTP {status}: endpoint not offered")
    if status in (400, 403, 422):
        raise ClientError(f"HTTP {status}: {_message(response)}")
    raise TransportFailure(f"HTTP {status}")


def _message(response: httpx.Response) -> str:
    try:
        error = response.json()["error"]
        return f"{error['code']}: {error['message']}"
    except Exception:
        return response.text[:200]


def http_failure(exc: httpx.HTTPError) -> TransportFailure:
    if isinstance(exc, httpx.ConnectError):
        return Unreachable(f"cannot connect: {exc}")
    return TransportFailure(f"{type(exc).__name__}: {exc}")


class Replies:
    """What a streaming transport (WebSocket, SSE) answers to a subscribe: refusals of single
    job ids and cursor_expired before `subscribed`, then job events; anything else (heartbeats
    included) only shows the link alive. A refusal of the whole subscribe raises: retrying
    will not help."""

    def __init__(self, conn: Conn, tracker: Any, transport: str, resume: str | None):
        self.conn, self.tracker, self.transport, self.resume = conn, tracker, transport, resume
        self.errors: list[dict[str, Any]] = []
        self.subscribed = False

    async def read(self, next_message: Callable[[], Awaitable[str | bytes]]) -> None:
        """Handle the stream's messages until it ends (the end is `next_message`'s exception).
        A stream silent for too long (before `subscribed`: `open_timeout`; after it: the
        heartbeats missed) raises TransportFailure: the link is dead even if no FIN or RST
        ever says so."""
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(None) as deadline:
                while True:
                    deadline.reschedule(loop.time() + self.patience)
                    raw = await next_message()
                    deadline.reschedule(None)  # a slow consumer is not a dead link
                    await self.handle(orjson.loads(raw))
        except TimeoutError:
            if not deadline.expired():
                raise
            if not self.subscribed:
                raise TransportFailure("no answer to subscribe") from None
            raise TransportFailure(f"no message for {self.patience:g} s: heartbeats missed, "
                                   "the link is taken for dead") from None

    @property
    def patience(self) -> float:
        return self.conn.silence_limit if self.subscribed else self.conn.open_timeout

    async def handle(self, msg: Any) -> None:
        kind = msg.get("type") if isinstance(msg, dict) else None
        if is_job_event(msg):
            await self.tracker.event(msg)
        elif kind == "subscribed":
            self.subscribed = True
            beat = msg.get("heartbeatSeconds")
            if isinstance(beat, int | float) and not isinstance(beat, bool) and beat > 0:
                self.conn.server_heartbeat = float(beat)
            expired = any(e.get("code") == "cursor_expired" for e in self.errors)
            await self.tracker.subscribed(self.transport, msg.get("jobs", []),
                                          msg.get("cursor"), errors=self.errors,
                                          replay=self.resume is not None and not expired)
        elif kind == "error" and not self.subscribed:
            if msg.get("jobId") or msg.get("code") == "cursor_expired":
                self.errors.append(msg)
            elif msg.get("code") == "unavailable":
                # The server's broker failed mid-subscribe: retry from the same cursor, as
                # after a 503. Not the transport's fault, so it does not count against it.
                raise TransportFailure("subscribe unavailable", counts=False)
            else:
                raise ClientError(f"subscribe refused: {msg.get('code')}: {msg.get('message')}")
