"""One connection per browser without SharedWorker (as on Chrome for Android): the tabs of one
user elect a leader with Web Locks and share its connection over BroadcastChannel. Real
Chromium with SharedWorker removed, a real `jobwire serve`; the connections are counted on the
server's /metrics. When the leader tab closes mid-stream another tab takes over, and every tab
still sees every event exactly once."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
from playwright.async_api import BrowserContext, Page, WebSocket

from tests.browser import test_dashboard
from tests.browser.test_dashboard import T, connections
from tests.conftest import WAIT, Server, publish, wait_for_sessions

browser = test_dashboard.browser
servers = test_dashboard.servers

NO_SHARED_WORKER = "delete window.SharedWorker"


class Sequence:
    """Publishes a numbered sequence of events of one job (seq 1, 2, …: `processing`, one every
    `pause` seconds) from the moment it is entered until `finish()`. A stream that keeps flowing
    while something happens to the pages. The server must not conflate them
    (`max_updates_per_job_per_second=0`)."""

    def __init__(self, server: Server, user: str, job: str, pause: float = 0.02) -> None:
        self.server, self.user, self.job, self.pause = server, user, job, pause
        self.count = 0
        self._more = asyncio.Condition()
        self._stop = asyncio.Event()

    async def __aenter__(self) -> Sequence:
        self._http = httpx.AsyncClient(base_url=self.server.url, timeout=WAIT,
                                       headers=self.server.headers("pub", "publisher"))
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *exc: Any) -> None:
        self._stop.set()
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        await self._http.aclose()

    async def _run(self) -> None:
        while not self._stop.is_set():
            n = self.count + 1
            answer = await self._http.post(
                f"/api/v2/jobs/{self.job}/status",
                json={"userId": self.user, "status": "processing", "progress": n % 100,
                      "currentOperation": f"step {n}"})
            assert answer.status_code == 202, answer.text
            assert answer.json()["seq"] == n, answer.json()
            async with self._more:
                self.count = n
                self._more.notify_all()
            await asyncio.sleep(self.pause)  # pacing: the stream spans what the test does

    async def until(self, count: int) -> None:
        """Wait until `count` events are published (bounded)."""
        async with asyncio.timeout(2 * WAIT), self._more:
            await self._more.wait_for(lambda: self.count >= count or self._task.done())
        if self._task.done():
            await self._task  # its failure, if it failed

    async def finish(self, more: int = 5) -> list[int]:
        """Publish `more` events yet, then stop; the seq of every event published."""
        await self.until(self.count + more)
        self._stop.set()
        await asyncio.wait_for(self._task, WAIT)
        return list(range(1, self.count + 1))


async def until_seq(page: Page, job: str, seq: int) -> None:
    await page.wait_for_function(
        "([j, s]) => applied.some(([job, seq]) => job === j && seq === s)", arg=[job, seq],
        timeout=2 * T)


async def seqs(page: Page, job: str) -> list[int]:
    """The seq of every event of `job` the page applied, in order."""
    return await page.evaluate("(j) => applied.filter(([job]) => job === j).map(([, s]) => s)",
                               job)


async def without_shared_worker(browser) -> BrowserContext:
    """A browser context whose pages have no SharedWorker, as on Chrome for Android."""
    context = await browser.new_context()
    await context.add_init_script(NO_SHARED_WORKER)
    return context


async def open_tab(context: BrowserContext, server: Server, token: str) -> Page:
    """A tab following every job of the token's user, recording [jobId, seq] of every event it
    applied in `applied`, their ids in `ids`; `page.subscribes` collects the subscribe
    messages its WebSockets send."""
    page = await load_tab(context, server)
    await follow(page, token)
    return page


async def load_tab(context: BrowserContext, server: Server) -> Page:
    """A tab with jobwire.js loaded, not connected yet."""
    page = await context.new_page()
    subscribes: list[dict] = []
    page.subscribes = subscribes  # type: ignore[attr-defined]

    def frames(ws: WebSocket) -> None:
        def sent(payload: str | bytes) -> None:
            message = json.loads(payload)
            if message.get("type") == "subscribe":
                subscribes.append(message)
        ws.on("framesent", sent)

    page.on("websocket", frames)
    await page.goto(server.url + "/healthz", timeout=T)
    assert await page.evaluate("typeof SharedWorker") == "undefined"
    await page.add_script_tag(url=server.url + "/static/jobwire.js")
    return page


async def follow(page: Page, token: str) -> None:
    """Connect the tab's client and wait until it is open and shared."""
    await page.evaluate("""(token) => {
        window.applied = []; window.ids = []; window.errors = [];
        window.client = Jobwire.connect({token});
        client.on("update", (job) => { applied.push([job.jobId, job.seq]); ids.push(job.id); });
        client.on("error", (e) => window.errors.push(e));
    }""", token)
    await page.wait_for_function("client.state === 'open'", timeout=T)
    assert await page.evaluate("client.shared") is True


async def leaders(tabs: list[Page]) -> list[Page]:
    return [tab for tab in tabs if await tab.evaluate("client.leading")]


async def until_applied(tab: Page, jobs: list[str]) -> None:
    """Wait until the tab applied the first event of each of `jobs`."""
    for job in jobs:
        await until_seq(tab, job, 1)


async def test_three_tabs_one_connection_and_a_new_leader_misses_nothing(browser, servers, uid):
    server, user = servers(max_updates_per_job_per_second=0), f"{uid}-u"
    context = await without_shared_worker(browser)
    tabs = [await open_tab(context, server, server.token(user)) for _ in range(3)]
    assert len(await leaders(tabs)) == 1
    await wait_for_sessions(server, "websocket", 1)

    first = [f"{uid}-a{n}" for n in range(3)]
    for job in first:
        await publish(server, job, user, "queued")
    for tab in tabs:
        await until_applied(tab, first)
    assert await connections(server, "websocket") == 1, "three live tabs, one connection"

    # A numbered sequence of one job's events, published while the leader tab goes away.
    job = f"{uid}-stream"
    # Back to back: the leader's going and the next one's connecting take a few milliseconds,
    # and events must fall in between.
    async with Sequence(server, user, job, pause=0) as stream:
        await stream.until(10)
        (leader,) = await leaders(tabs)
        await leader.close()
        remaining = [tab for tab in tabs if tab is not leader]
        sequence = await stream.finish(more=10)   # published during and after the handover

    for tab in remaining:
        await until_seq(tab, job, sequence[-1])
    (successor,) = await leaders(remaining)
    # It resumed from an event the tabs had (no fresh start, which would show only the job's
    # latest state and skip what was published while no tab was connected).
    assert [m.get("lastEventId") for m in successor.subscribes][:1] != [None]
    resumed_from = successor.subscribes[0]["lastEventId"]
    assert resumed_from in await successor.evaluate("ids")
    for tab in remaining:
        assert await seqs(tab, job) == sequence, "every event exactly once, in order"
        assert sorted(await tab.evaluate("applied.map(([j]) => j)")) == sorted(
            first + [job] * len(sequence)), "and nothing else"
        assert await tab.evaluate("client.state") == "open"
        assert await tab.evaluate("errors") == []
    await wait_for_sessions(server, "websocket", 1)

    # The new leader's connection carries on, for both tabs.
    last = f"{uid}-last"
    await publish(server, last, user, "completed")
    for tab in remaining:
        await until_applied(tab, [last])
    assert await connections(server, "websocket") == 1
    await context.close()
    await wait_for_sessions(server, "websocket", 0)


async def test_tabs_that_start_together_elect_one_leader_and_a_late_tab_joins(browser, servers,
                                                                              uid):
    server, user = servers(), f"{uid}-u"
    context = await without_shared_worker(browser)
    tabs = [await load_tab(context, server) for _ in range(3)]
    await asyncio.gather(*(follow(tab, server.token(user)) for tab in tabs))
    assert len(await leaders(tabs)) == 1
    await wait_for_sessions(server, "websocket", 1)
    job = f"{uid}-j"
    await publish(server, job, user, "queued")
    for tab in tabs:
        await until_seq(tab, job, 1)
    assert await connections(server, "websocket") == 1

    # A tab opened later is given the jobs' current state by the leader.
    late = await open_tab(context, server, server.token(user))
    await until_seq(late, job, 1)
    assert not await late.evaluate("client.leading")
    assert await connections(server, "websocket") == 1
    await context.close()


async def test_users_of_one_browser_never_share(browser, servers, uid):
    server = servers()
    alice, bob = f"{uid}-alice", f"{uid}-bob"
    context = await without_shared_worker(browser)
    tab_a = await open_tab(context, server, server.token(alice))
    tab_b = await open_tab(context, server, server.token(bob))
    assert await tab_a.evaluate("client.leading") and await tab_b.evaluate("client.leading")
    await wait_for_sessions(server, "websocket", 2)
    await publish(server, f"{uid}-bobs", bob, "queued")
    await publish(server, f"{uid}-alices", alice, "queued")
    await until_applied(tab_a, [f"{uid}-alices"])
    await until_applied(tab_b, [f"{uid}-bobs"])
    # Each event reaches a tab in order: alice's, published last, shows bob's never came.
    assert await tab_a.evaluate("applied") == [[f"{uid}-alices", 1]]
    assert await tab_b.evaluate("applied") == [[f"{uid}-bobs", 1]]
    await context.close()


async def test_a_follower_gets_only_its_jobs_and_shared_false_opts_out(browser, servers, uid):
    server, user = servers(), f"{uid}-u"
    context = await without_shared_worker(browser)
    leader = await open_tab(context, server, server.token(user))
    follower = await open_tab(context, server, server.token(user))
    mine, other = f"{uid}-mine", f"{uid}-other"
    await follower.evaluate("(id) => client.subscribe([id])", mine)
    await publish(server, other, user, "queued")
    await publish(server, mine, user, "queued")
    await until_applied(leader, [other, mine])
    await until_applied(follower, [mine])
    assert await follower.evaluate("applied") == [[mine, 1]]
    assert await connections(server, "websocket") == 1

    # The leader's page closes its client but stays: the follower takes over.
    await leader.evaluate("client.close()")
    await follower.wait_for_function("client.leading && client.state === 'open'", timeout=T)
    await publish(server, mine, user, "completed")
    await until_seq(follower, mine, 2)
    assert await follower.evaluate("applied") == [[mine, 1], [mine, 2]]
    assert await leader.evaluate("[client.state, applied.length]") == ["closed", 2]

    alone = await context.new_page()
    await alone.goto(server.url + "/healthz", timeout=T)
    await alone.add_script_tag(url=server.url + "/static/jobwire.js")
    await alone.evaluate("(token) => { window.client = Jobwire.connect({token, shared: false}); }",
                         server.token(user))
    await alone.wait_for_function("client.state === 'open'", timeout=T)
    assert await alone.evaluate("[client.shared, client.leading]") == [False, False]
    await wait_for_sessions(server, "websocket", 2)
    await context.close()
