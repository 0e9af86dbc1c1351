"""jobwire.js in a real Chromium, for two things that run on timers: the upgrade probe (a page
pushed down to SSE goes back to WebSocket once it works again, without losing an event) and
the token-refresh callback (a token of a few seconds is replaced in-band, again and again,
and the connection never drops)."""

from __future__ import annotations

import asyncio
import contextlib
import json

import pytest
from playwright.async_api import BrowserContext, Page, Route, WebSocket

from tests.browser import test_dashboard
from tests.browser.test_dashboard import T, connections
from tests.browser.test_leader import NO_SHARED_WORKER, Sequence, until_seq
from tests.conftest import WAIT, Server, publish, wait_for_sessions

browser = test_dashboard.browser
servers = test_dashboard.servers


class UpgradeGate:
    """A TCP relay in front of a server that refuses WebSocket upgrades (403) until `open()`:
    a proxy that does not pass WebSockets, then one that does. Every other request, and every
    connection after `open()`, is relayed as it is."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.refused = 0               # WebSocket upgrades refused so far
        self.passing = False
        self._refusal = asyncio.Condition()
        self._tasks: set[asyncio.Task] = set()

    async def __aenter__(self) -> UpgradeGate:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def open(self) -> None:
        self.passing = True

    async def until_refused(self, count: int) -> None:
        """Wait until `count` WebSocket upgrades have been refused (bounded)."""
        async with asyncio.timeout(2 * WAIT), self._refusal:
            await self._refusal.wait_for(lambda: self.refused >= count)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            if not self.passing and b"\r\nupgrade: websocket" in head.lower():
                async with self._refusal:
                    self.refused += 1
                    self._refusal.notify_all()
                writer.write(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n"
                             b"Connection: close\r\n\r\n")
                await writer.drain()
                return
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
            up_writer.write(head)
            try:
                await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))
            finally:
                up_writer.close()
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError,
                asyncio.CancelledError):
            pass  # the browser or the server hung up, or the gate is closing
        finally:
            writer.close()
            self._tasks.discard(task)

    @staticmethod
    async def _pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await source.read(65536):
                sink.write(data)
                await sink.drain()
        with contextlib.suppress(OSError):
            sink.write_eof()


async def follow(page: Page, url: str, options: dict) -> None:
    """Load jobwire.js from `url` and follow every job, recording [jobId, seq] of every event
    applied, transport changes, states, errors and the server's `authenticated` messages."""
    await page.goto(url + "/healthz", timeout=T)
    await page.add_script_tag(url=url + "/static/jobwire.js")
    await page.evaluate("""(options) => {
        window.applied = []; window.transports = []; window.states = []; window.errors = [];
        window.principals = [];
        const tokenUrl = options.tokenUrl;
        const token = tokenUrl
          ? async () => (await (await fetch(tokenUrl, {cache: "no-store"})).json()).token
          : options.token;
        window.client = Jobwire.connect({...options, token});
        client.on("update", (job) => applied.push([job.jobId, job.seq]));
        client.on("transport", (t) => transports.push([t.transport, t.reason]));
        client.on("state", (s) => states.push(s.state));
        client.on("error", (e) => errors.push(e));
        client.on("authenticated", (p) => principals.push(p));
    }""", options)


async def until(page: Page, expression: str, arg: object = None) -> None:
    await page.wait_for_function(expression, arg=arg, timeout=2 * T)


async def test_a_page_pushed_to_sse_moves_back_to_websocket_when_allowed(browser, servers,
                                                                         uid):
    server, user = servers(max_updates_per_job_per_second=0), f"{uid}-u"
    page = await browser.new_page()
    async with UpgradeGate(server.port) as gate:
        await follow(page, f"http://127.0.0.1:{gate.port}", {
            "token": server.token(user), "shared": False, "probeIntervalMs": 300,
            "backoff": {"baseMs": 100}})
        await until(page, "client.transport === 'sse' && client.state === 'open'")
        refused = gate.refused
        # The probe keeps trying while WebSocket is refused: a positive sign it runs.
        await gate.until_refused(refused + 2)

        job = f"{uid}-stream"
        async with Sequence(server, user, job) as stream:
            await stream.until(5)
            await until_seq(page, job, 5)
            gate.open()
            await until(page, "client.transport === 'websocket' && client.state === 'open'")
            sequence = await stream.finish(more=10)   # published during and after the switch
        await until_seq(page, job, sequence[-1])
        applied = await page.evaluate("applied")
        transports = await page.evaluate("transports")
        errors = await page.evaluate("errors")
        await wait_for_sessions(server, "websocket", 1)
        assert await connections(server, "sse") == 0
    await page.close()

    assert applied == [[job, n] for n in sequence], "every event once, in order, across the switch"
    assert transports == [["websocket", "start"], ["sse", "failing"], ["websocket", "upgrade"]]
    assert errors == []


TTL = 3  # seconds: the token's whole lifetime


async def serve_tokens(context: BrowserContext, server: Server, user: str) -> list[str]:
    """The app's token endpoint, /test-token on the pages' origin: a fresh token of TTL
    seconds for `user` on every request. Returns the list of tokens handed out."""
    minted: list[str] = []

    async def mint(route: Route) -> None:
        minted.append(server.token(user, ttl=TTL))
        await route.fulfill(status=200, content_type="application/json",
                            headers={"Cache-Control": "no-store"},
                            body=json.dumps({"token": minted[-1]}))

    await context.route("**/test-token", mint)
    return minted


@pytest.mark.parametrize("sharing", ["own", "leader"])
async def test_a_short_lived_token_is_refreshed_in_band_and_the_pages_stay_up(browser, servers,
                                                                                uid, sharing):
    """`own`: a page with its own connection. `leader`: two tabs without SharedWorker; the
    leader tab's token callback keeps the one shared connection authenticated."""
    server, user = servers(), f"{uid}-u"
    context = await browser.new_context()
    if sharing == "leader":
        await context.add_init_script(NO_SHARED_WORKER)
    minted = await serve_tokens(context, server, user)
    options = {"tokenUrl": server.url + "/test-token", "shared": sharing != "own"}
    sockets: list[WebSocket] = []
    sent: list[str] = []

    def watch(ws: WebSocket) -> None:
        sockets.append(ws)
        ws.on("framesent", lambda frame: sent.append(str(frame)))

    pages = []
    for _ in range(1 if sharing == "own" else 2):
        page = await context.new_page()
        page.on("websocket", watch)
        await follow(page, server.url, options)
        await until(page, "client.state === 'open' && client.transport === 'websocket'")
        pages.append(page)
    if sharing == "leader":
        assert [await p.evaluate("client.leading") for p in pages] == [True, False]

    # Three refreshes: the connection outlives three tokens, and events flow after each.
    for n in range(1, 4):
        for page in pages:
            await until(page, "(n) => principals.length > n", n)
        job = f"{uid}-after-{n}"
        await publish(server, job, user, "queued")
        for page in pages:
            await until_seq(page, job, 1)

    for page in pages:
        expiries = [p["expiresAt"] for p in await page.evaluate("principals")]
        assert expiries == sorted(set(expiries)), "each refresh answered with a later expiry"
        assert expiries[-1] - expiries[0] >= TTL, "the connection outlived its first token"
        states = await page.evaluate("states")
        assert states[-1] == "open" and "reconnecting" not in states, f"never dropped: {states}"
        assert await page.evaluate("errors") == []
    assert len(sockets) == 1, "one WebSocket all along"
    auths = [frame for frame in sent if '"type":"auth"' in frame]
    assert len(auths) >= 4, "the first auth, then one per refresh, on that WebSocket"
    assert len(minted) >= 4
    assert await connections(server, "websocket") == 1
    await context.close()
