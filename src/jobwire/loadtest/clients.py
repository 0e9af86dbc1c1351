"""The simulated readers: one class per transport (the WebSocket ones are in ws.py), each one
user's connection following all its jobs. Each runs until closed: it connects (subscribes),
receives, and after any drop (forced by the load test, or not) reconnects and resumes from its
cursor, as the browser library does.
Every message is accounted in the transport's Tally: latency, per-job seq (gaps, duplicates),
ownership."""

from __future__ import annotations

import abc
import asyncio
import contextlib
import functools
import random
import ssl
import time
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlencode

import httpx
import orjson

from ..client.sse import messages as sse_messages
from .http1 import Connection, Response
from .stats import Tally

REQUEST_TIMEOUT = 10.0  # a connection, a subscribe, one request
CLOSE_TIMEOUT = 5.0
STREAM_READ_TIMEOUT = 60.0  # a stream silent this long failed (heartbeats every 15 s)
LONGPOLL_WAIT = 25  # the `timeout` of each long-poll, seconds
DOWNTIME = (0.1, 0.5)  # seconds offline after a forced disconnect, before reconnecting
MAX_FAILURES = 5  # consecutive failed attempts after which a client gives up
SSE_PATH = "/api/v2/jobs/stream"
LONGPOLL_PATH = "/api/v2/jobs/poll"
POLL_PATH = "/api/v2/jobs/status"
JOB_EVENTS = ("status_update", "job_completed", "job_stalled")
clock = time.perf_counter  # not loop.time(): uvloop's has millisecond resolution


class RateLimited(Exception):
    """A connection refused by a server limit (429, close 4429): retried after a while."""

    def __init__(self, what: str, retry_after: float):
        super().__init__(f"{what} rate limited, retry after {retry_after:g} s")
        self.retry_after = retry_after


class Refused(Exception):
    """Refused for good (a bad token, a disabled transport): not retried."""


def status_error(what: str, status: int, retry_after: str | None, text: str) -> Exception:
    """What an unexpected answer means: a rate limit to wait out, a refusal for good, or a
    failure to retry."""
    if status == 429:
        try:
            retry = float(retry_after or "1")
        except ValueError:
            retry = 1.0
        return RateLimited(what, retry)
    message = f"{what} answered {status}: {text[:200]}"
    return Refused(message) if status in (401, 403, 404, 405) else RuntimeError(message)


@functools.cache
def ssl_context() -> ssl.SSLContext:
    """One for every client: httpx would otherwise load the CA bundle for each (~50 ms)."""
    return ssl.create_default_context()


class Client(abc.ABC):
    """One user's reader. `run()` is its task; `drop()` forces a disconnect."""

    transport = ""

    def __init__(self, user: str, base_url: str, token: str, tally: Tally):
        self.user = user
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.tally = tally
        self.seqs: dict[str, int] = {}
        self.cursor: str | None = None  # the resume point: last event id, or first cursor
        self.connected = asyncio.Event()
        self.ever_connected = False
        self.forced_at: float | None = None  # clock() of a forced drop not yet resumed
        self.rx: asyncio.Task[str] | None = None
        self.closing = False
        self.gave_up: str | None = None

    # --- what each transport provides

    @abc.abstractmethod
    async def open(self) -> None:
        """Connect and subscribe (resuming from `cursor` if set), or raise."""

    @abc.abstractmethod
    async def receive(self) -> str:
        """Receive until the connection ends; return (or raise) why it did."""

    async def reset(self) -> None:  # noqa: B027 - optional: most transports hold nothing
        """Let go of the connection at once (after a drop or a failure)."""

    async def shutdown(self) -> None:
        """Close the connection politely, at the end."""
        await self.reset()

    # --- shared

    def message(self, msg: dict[str, Any], t: float) -> None:
        """One message from a stream, received at wall time t."""
        kind = msg.get("type")
        if kind in JOB_EVENTS:
            self.tally.event(self.seqs, msg, self.user, None if kind == "job_stalled" else t)
            self.cursor = msg["id"]
        elif kind == "error":
            self.tally.note("errors", f"{self.user}: {orjson.dumps(msg).decode()[:200]}")

    def subscribed(self, msg: dict[str, Any], expired: bool) -> None:
        """The `subscribed` answer (or a long-poll's states): the first cursor, and states. The
        users are new, so a first snapshot is empty, and on a resume it holds only jobs
        unchanged since the cursor: any newer state in it is counted as missed events."""
        if self.cursor is None or expired:
            self.cursor = msg.get("cursor")
        for state in msg.get("jobs") or ():
            self.tally.snapshot(self.seqs, state)

    def subscribe_error(self, msg: dict[str, Any]) -> bool:
        """An `error` before `subscribed`: True to send the subscribe again."""
        code = msg.get("code")
        if code == "cursor_expired":
            self.tally.cursor_expired += 1
            self.tally.note("errors", f"{self.user}: cursor_expired resuming from {self.cursor}")
            return False
        if code == "unavailable":
            return True
        raise Refused(f"subscribe answered {code}: {msg.get('message')}")

    async def run(self, gate: asyncio.Semaphore) -> None:
        """Connect (the first time through `gate`, which bounds the ramp-up's concurrency),
        receive, and after every drop reconnect and resume, until closed."""
        failures = 0
        tally = self.tally
        while not self.closing:
            try:
                if self.ever_connected:
                    await self.open()
                else:
                    async with gate:
                        t0 = clock()
                        await self.open()
                        tally.connect_times.append(clock() - t0)
                    tally.connected += 1
                    self.ever_connected = True
            except RateLimited as exc:
                tally.rate_limited += 1
                await self.reset()
                await asyncio.sleep(exc.retry_after * random.uniform(1.0, 1.5))
                continue
            except Exception as exc:
                failures += 1
                await self.reset()
                reason = f"{type(exc).__name__}: {exc}"
                if isinstance(exc, Refused) or failures >= MAX_FAILURES:
                    self.gave_up = reason
                    tally.note("connect_failures", f"{self.user}: gave up: {reason}")
                    return
                await asyncio.sleep(min(5.0, 0.2 * 2**failures) * random.uniform(0.5, 1.0))
                continue
            failures = 0
            if self.forced_at is not None:
                tally.reconnect_times.append(clock() - self.forced_at)
                tally.reconnected += 1
                self.forced_at = None
            self.connected.set()
            self.rx = rx = asyncio.create_task(self.receive())
            await asyncio.wait([rx])
            self.connected.clear()
            if rx.cancelled():  # dropped by us: offline a moment, as after a network failure
                await self.reset()
                await asyncio.sleep(random.uniform(*DOWNTIME))
                self.forced_at = clock()  # the reconnect time is counted from here
                continue
            exc = rx.exception()
            reason = f"{type(exc).__name__}: {exc}" if exc else rx.result()
            await self.reset()
            if not self.closing:
                tally.note("drops", f"{self.user}: {reason}")
                await asyncio.sleep(random.uniform(0.05, 0.3))

    def drop(self) -> bool:
        """Force a disconnect now (the client then reconnects and resumes)."""
        rx = self.rx
        if self.closing or not self.connected.is_set() or rx is None or rx.done():
            return False
        self.forced_at = clock()
        self.tally.forced += 1
        rx.cancel()
        return True

    async def close(self) -> None:
        self.closing = True
        if self.rx is not None:
            self.rx.cancel()
            await asyncio.gather(self.rx, return_exceptions=True)
        await self.shutdown()


class HttpClient(Client):
    """A reader over httpx with the user's token in a header (SSE: a streamed response): its
    own httpx client and connection (remade after a drop, so a reconnect is a new TCP
    connection)."""

    read_timeout = REQUEST_TIMEOUT

    def __init__(self, user: str, base_url: str, token: str, tally: Tally):
        super().__init__(user, base_url, token, tally)
        self.http = self.new_http()

    def new_http(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=self.base_url, headers={"Authorization": f"Bearer {self.token}"},
            timeout=httpx.Timeout(REQUEST_TIMEOUT, read=self.read_timeout),
            verify=ssl_context(),
            limits=httpx.Limits(max_connections=1, max_keepalive_connections=1))

    async def reset(self) -> None:
        old, self.http = self.http, self.new_http()
        with contextlib.suppress(Exception):
            await old.aclose()

    async def shutdown(self) -> None:
        with contextlib.suppress(Exception):
            await self.http.aclose()


class PlainClient(Client):
    """A reader making one request at a time (long-polls, polls) over http1.Connection, with
    the user's token in a header: a tenth of httpx's CPU per request. A reset drops the
    connection, so that a reconnect is a new TCP connection."""

    read_timeout = REQUEST_TIMEOUT  # a whole request: connect, send, answer

    def __init__(self, user: str, base_url: str, token: str, tally: Tally):
        super().__init__(user, base_url, token, tally)
        https = self.base_url.startswith("https:")
        self.conn = Connection(self.base_url + "/", {"Authorization": f"Bearer {token}"},
                               ssl_context() if https else None)

    async def reset(self) -> None:
        self.conn.close()

    async def get(self, target: str, headers: dict[str, str] | None = None) -> Response:
        try:
            async with asyncio.timeout(self.read_timeout):
                return await self.conn.get(target, headers)
        except BaseException:
            self.conn.close()  # whatever was under way on it is abandoned
            raise

    async def get_json(self, path: str, what: str, **params: Any) -> dict[str, Any]:
        r = await self.get(f"{path}?{urlencode(params)}" if params else path)
        if r.status != 200:
            raise status_error(what, r.status, r.headers.get("retry-after"), r.text())
        return orjson.loads(r.body)


class SseClient(HttpClient):
    """`GET /api/v2/jobs/stream` without `jobIds` (every job of the user), resuming with
    `Last-Event-ID`."""

    transport = "sse"
    read_timeout = STREAM_READ_TIMEOUT

    def __init__(self, user: str, base_url: str, token: str, tally: Tally):
        super().__init__(user, base_url, token, tally)
        self.response: httpx.Response | None = None
        self.data: AsyncIterator[str] | None = None

    async def open(self) -> None:
        headers = {"Accept": "text/event-stream"}
        if self.cursor:
            headers["Last-Event-ID"] = self.cursor
        r = await self.http.send(self.http.build_request("GET", SSE_PATH, headers=headers),
                                 stream=True)
        self.response = r
        if r.status_code != 200:
            await r.aread()
            raise status_error("stream", r.status_code, r.headers.get("Retry-After"), r.text)
        self.data = data = sse_messages(r.aiter_lines())
        async with asyncio.timeout(REQUEST_TIMEOUT):
            async for text in data:
                msg = orjson.loads(text)
                kind = msg.get("type")
                if kind == "subscribed":
                    self.subscribed(msg, expired=False)
                    return
                if kind == "error":
                    if self.subscribe_error(msg):
                        raise RuntimeError("stream answered unavailable")
                    if msg.get("code") == "cursor_expired":
                        self.cursor = None
        raise RuntimeError("stream ended before `subscribed`")

    async def receive(self) -> str:
        assert self.data is not None
        message, loads, now = self.message, orjson.loads, time.time
        async for text in self.data:
            t = now()
            message(loads(text), t)
        return "stream ended"

    async def reset(self) -> None:
        response, self.response, self.data = self.response, None, None
        if response is not None:
            with contextlib.suppress(Exception):
                await response.aclose()
        await super().reset()

    async def shutdown(self) -> None:
        await self.reset()
        await super().shutdown()


class LongPollClient(PlainClient):
    """`GET /api/v2/jobs/poll`: first without `last_seen` for the states and a cursor (or, to
    resume, from the cursor with `timeout=0`), then long-polls, each from the last answer's
    cursor."""

    transport = "longpoll"
    read_timeout = LONGPOLL_WAIT + REQUEST_TIMEOUT

    def answer(self, body: dict[str, Any], t: float) -> None:
        if "error" in body:  # cursor_expired: the states instead of the events
            self.subscribe_error({"type": "error", **body["error"]})
        if "jobs" in body:
            self.subscribed(body, expired=True)
        for err in body.get("errors", ()):
            self.tally.note("errors", f"{self.user}: {orjson.dumps(err).decode()[:200]}")
        message = self.message
        for msg in body["events"]:
            message(msg, t)
        self.cursor = body["cursor"]

    async def open(self) -> None:
        params: dict[str, Any] = {"timeout": 0}
        if self.cursor:
            params["last_seen"] = self.cursor
        self.answer(await self.get_json(LONGPOLL_PATH, "poll", **params), time.time())

    async def receive(self) -> str:
        while True:
            body = await self.get_json(LONGPOLL_PATH, "long-poll", timeout=LONGPOLL_WAIT,
                                       last_seen=self.cursor)
            self.answer(body, time.time())


class PollClient(PlainClient):
    """Regular polling: `GET /api/v2/jobs/status` (every job of the user) every
    `interval` seconds, with `If-None-Match`. It reads states, not events: the states between
    two polls are superseded, and counted so."""

    transport = "poll"
    interval = 1.0

    def __init__(self, user: str, base_url: str, token: str, tally: Tally):
        super().__init__(user, base_url, token, tally)
        self.etag: str | None = None

    async def poll(self) -> None:
        headers = {"If-None-Match": self.etag} if self.etag else None
        r = await self.get(POLL_PATH, headers)
        t = time.time()
        if r.status == 304:
            return
        if r.status != 200:
            raise status_error("poll", r.status, r.headers.get("retry-after"), r.text())
        self.etag = r.headers.get("etag")
        state, seqs, user = self.tally.state, self.seqs, self.user
        for job in orjson.loads(r.body)["jobs"]:
            state(seqs, job, user, t)

    async def open(self) -> None:
        await self.poll()

    async def receive(self) -> str:
        await asyncio.sleep(random.uniform(0, self.interval))  # spread the polls
        while True:
            await self.poll()
            await asyncio.sleep(self.interval * random.uniform(0.9, 1.1))

