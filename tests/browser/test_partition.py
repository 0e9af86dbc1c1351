"""jobwire.js in a real Chromium against a silent partition: the page and its connection go
through a relay to a real `jobwire serve`, and the relay stops forwarding without closing
anything (no FIN, no RST). The library must notice from the missing heartbeats, reconnect,
and once the link is back show what was published meanwhile, each event once."""

from __future__ import annotations

import pytest
from playwright.async_api import Page

from tests.browser import test_dashboard
from tests.browser.test_dashboard import T
from tests.conftest import publish
from tests.integration import test_partition
from tests.integration.test_partition import HEARTBEAT, LONGPOLL_WAIT
from tests.relay import Relay

# The fixtures of the dashboard's browser tests and of the client's partition tests.
browser = test_dashboard.browser
beating_server = test_partition.beating_server


async def follow(page: Page, url: str, options: dict) -> None:
    """Load jobwire.js from `url` and follow every job with `options`, in the page itself
    (no SharedWorker), recording states (with their time) and applied event ids."""
    await page.goto(url + "/healthz", timeout=T)
    await page.add_script_tag(url=url + "/static/jobwire.js")
    await page.evaluate("""(options) => {
        window.states = []; window.applied = [];
        const client = Jobwire.connect({...options, shared: false});
        client.on("state", (s) => window.states.push([s.state, performance.now()]));
        client.on("update", (job) => window.applied.push(job.id));
    }""", options)
    await until_state(page, "open", 0)


async def until_state(page: Page, state: str, since: float) -> float:
    """The page time at which the client entered `state` after `since` (bounded)."""
    await page.wait_for_function(
        "([s, t]) => window.states.some(([x, at]) => x === s && at >= t)", arg=[state, since],
        timeout=T)
    return await page.evaluate(
        "([s, t]) => window.states.find(([x, at]) => x === s && at >= t)[1]", [state, since])


async def until_applied(page: Page, event_id: str) -> None:
    await page.wait_for_function("(id) => window.applied.includes(id)", arg=event_id,
                                 timeout=2 * T)


@pytest.mark.parametrize("transport", ["websocket", "sse", "longpoll"])
async def test_a_silent_partition_is_noticed_and_nothing_is_lost(browser, beating_server, uid,
                                                                 transport):
    server, user, job = beating_server, f"{uid}-u", f"{uid}-job"
    page = await browser.new_page()
    with Relay(server.port) as relay:
        url = f"http://127.0.0.1:{relay.port}"
        options = {"token": server.token(user), "transports": [transport]}
        if transport == "longpoll":
            # Long-polling hears no heartbeats: the page is told the interval.
            options.update(longPollSeconds=LONGPOLL_WAIT, heartbeatSeconds=HEARTBEAT)
        await follow(page, url, options)
        before = await publish(server, job, user, "queued")
        await until_applied(page, before["id"])

        relay.blackhole()
        cut = await page.evaluate("performance.now()")
        noticed = (await until_state(page, "reconnecting", cut) - cut) / 1000
        during = [await publish(server, f"{job}-{n}", user, "queued") for n in (2, 3)]
        relay.forward()
        await until_applied(page, during[-1]["id"])
        await until_state(page, "open", cut)
        applied = await page.evaluate("window.applied")
    await page.close()

    assert applied == [before["id"]] + [a["id"] for a in during], "each event once, in order"
    expected = 2.5 * HEARTBEAT + (LONGPOLL_WAIT if transport == "longpoll" else 0)
    print(f"\n{transport}: silent link noticed by jobwire.js after {noticed:.2f} s "
          f"(limit {expected:.2f} s after the last message)")
    assert noticed < expected + 2 * HEARTBEAT
