"""One connection per browser without SharedWorker (as on Chrome for Android): the tabs of one
user elect a leader with Web Locks and share its connection over BroadcastChannel. Real
Chromium with SharedWorker removed, a real `jobwire serve`; the connections are counted on the
server's /metrics. When the leader tab closes mid-stream another tab takes over, and every tab
still sees every event exactly once."""

from __future__ import annotations

import asyncio

from playwright.async_api import BrowserContext, Page

from tests.browser import test_dashboard
from tests.browser.test_dashboard import T, connections
from tests.conftest import WAIT, Server, publish, wait_for_sessions

browser = test_dashboard.browser
servers = test_dashboard.servers

NO_SHARED_WORKER = "delete window.SharedWorker"


async def without_shared_worker(browser) -> BrowserContext:
    context = await browser.new_context()
    await context.add_init_script(NO_SHARED_WORKER)
    return context


async def open_tab(context: BrowserContext, server: Server, token: str) -> Page:
    """A tab following every job of the token's user, recording the job ids it applied."""
    page = await context.new_page()
    await page.goto(server.url + "/healthz", timeout=T)
    assert await page.evaluate("typeof SharedWorker") == "undefined"
    await page.add_script_tag(url=server.url + "/static/jobwire.js")
    await page.evaluate("""(token) => {
        window.applied = []; window.errors = [];
        window.client = Jobwire.connect({token});
        client.on("update", (job) => window.applied.push(job.jobId));
        client.on("error", (e) => window.errors.push(e));
    }""", token)
    await page.wait_for_function("client.state === 'open'", timeout=T)
    assert await page.evaluate("client.shared") is True
    return page


async def leaders(tabs: list[Page]) -> list[Page]:
    return [tab for tab in tabs if await tab.evaluate("client.leading")]


async def until_applied(tab: Page, jobs: list[str]) -> None:
    await tab.wait_for_function("(ids) => ids.every((id) => applied.includes(id))", arg=jobs,
                                timeout=2 * T)


async def test_three_tabs_one_connection_and_a_new_leader_misses_nothing(browser, servers, uid):
    server, user = servers(), f"{uid}-u"
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

    # A numbered sequence, published while the leader tab goes away.
    sequence = [f"{uid}-n{n:03d}" for n in range(40)]
    halfway = asyncio.Event()

    async def publisher() -> None:
        for n, job in enumerate(sequence):
            await publish(server, job, user, "queued")
            if n == len(sequence) // 4:
                halfway.set()
            await asyncio.sleep(0.02)  # pacing: the leader must leave mid-stream

    publishing = asyncio.create_task(publisher())
    try:
        await asyncio.wait_for(halfway.wait(), WAIT)
        (leader,) = await leaders(tabs)
        await leader.close()
        assert not publishing.done(), "the leader left mid-stream"
        remaining = [tab for tab in tabs if tab is not leader]
        await publishing
    finally:
        publishing.cancel()

    for tab in remaining:
        await until_applied(tab, sequence)
    assert len(await leaders(remaining)) == 1, "one of the others took over"
    for tab in remaining:
        applied = await tab.evaluate("applied")
        assert sorted(applied) == sorted(first + sequence), "every event exactly once"
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
    assert await tab_a.evaluate("applied") == [f"{uid}-alices"]
    assert await tab_b.evaluate("applied") == [f"{uid}-bobs"]
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
    assert await follower.evaluate("applied") == [mine]
    assert await connections(server, "websocket") == 1

    alone = await context.new_page()
    await alone.goto(server.url + "/healthz", timeout=T)
    await alone.add_script_tag(url=server.url + "/static/jobwire.js")
    await alone.evaluate("(token) => { window.client = Jobwire.connect({token, shared: false}); }",
                         server.token(user))
    await alone.wait_for_function("client.state === 'open'", timeout=T)
    assert await alone.evaluate("[client.shared, client.leading]") == [False, False]
    await wait_for_sessions(server, "websocket", 2)
    await context.close()
