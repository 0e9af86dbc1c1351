"""The dashboard and jobwire.js in a real Chromium, against real `jobwire serve` processes.

The page records every job event it applied in `window.jobwireEvents` ({jobId, seq, id, ...});
`document.body.dataset.state` / `.transport` show the connection. Every wait is bounded."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.async_api import Browser, BrowserContext, Page, async_playwright, expect

from tests.conftest import WAIT, Server, publish, start_server, wait_for_sessions

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-quic", "--no-first-run", "--disable-component-update", "--disable-sync"]
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"
T = int(2 * WAIT * 1000)  # Playwright timeout, ms

if not Path(CHROMIUM).exists():  # pragma: no cover - CI installs it (.ci/run)
    raise RuntimeError(f"{CHROMIUM} is required for the browser tests: apt-get install chromium")


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True,
                                           timeout=T)
        try:
            yield browser
        finally:
            await browser.close()


@pytest.fixture
def servers() -> Iterator[Callable[..., Server]]:
    """start_server(**settings), with every server started this way stopped afterwards."""
    started: list[Server] = []

    def make(**settings: Any) -> Server:
        srv = start_server(**settings)
        started.append(srv)
        return srv

    yield make
    for srv in started:
        srv.stop()


async def open_dashboard(context: BrowserContext, server: Server, user: str | None,
                         role: str = "user", transport: str = "websocket") -> Page:
    """Open `/?token=…` (or `/` with user None: the stored token) and wait until it is live."""
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.errors = errors  # type: ignore[attr-defined]
    token = server.token(user, role) if user else None
    page.token = token  # type: ignore[attr-defined]
    query = f"/?token={token}" if token else "/"
    await page.goto(server.url + query, timeout=T)
    body = page.locator("body")
    await expect(body).to_have_attribute("data-state", "open", timeout=T)
    await expect(body).to_have_attribute("data-transport", transport, timeout=T)
    return page


def row(page: Page, job_id: str):
    return page.locator(f'tr[data-job="{job_id}"]')


async def expect_row(page: Page, job_id: str, status: str, progress: int | None = None) -> None:
    r = row(page, job_id)
    await expect(r.locator(".badge")).to_have_text(status, timeout=T)
    if progress is not None:
        await expect(r.get_by_role("progressbar")).to_have_attribute(
            "aria-valuenow", str(progress), timeout=T)


async def seen(page: Page, job_id: str | None = None) -> list[tuple[str, int]]:
    """(jobId, seq) of every job event the page applied, in order."""
    events = await page.evaluate("window.jobwireEvents.map(e => [e.jobId, e.seq])")
    return [(j, s) for j, s in events if job_id is None or j == job_id]


async def wait_seen(page: Page, job_id: str, seq: int) -> None:
    await page.wait_for_function(
        "([j, s]) => window.jobwireEvents.some(e => e.jobId === j && e.seq === s)",
        arg=[job_id, seq], timeout=T)


async def connections(server: Server, transport: str) -> int:
    async with httpx.AsyncClient(base_url=server.url, timeout=WAIT) as http:
        text = (await http.get("/metrics")).text
    prefix = f'jobwire_connections{{transport="{transport}"}} '
    line = next((ln for ln in text.splitlines() if ln.startswith(prefix)), None)
    return int(float(line.split()[-1])) if line else 0


async def test_job_progresses_to_completion_and_screenshot(browser, servers, uid):
    srv = servers()
    user = f"{uid}-alice"
    # Ended before the page opened: how long it ran and when it finished are still shown.
    await publish(srv, f"{uid}-backup", user, "processing", progress=30)
    await publish(srv, f"{uid}-backup", user, "completed", result={"files": 1200})
    context = await browser.new_context(viewport={"width": 1280, "height": 640})
    page = await open_dashboard(context, srv, user)
    # Signed in by the link; the token is gone from the address bar and kept for next time.
    assert "token" not in page.url
    assert await page.evaluate("localStorage.getItem('jobwire_token')") == page.token
    await expect(page.locator("#conn-transport")).to_have_text("WebSocket")
    await expect(page.locator("#who-name")).to_have_text(user)

    # Started first: the server estimates an ETA only after a second of progress.
    started = asyncio.get_running_loop().time()
    await publish(srv, f"{uid}-import", user, "processing", progress=10,
                  currentOperation="Importing rows 1,000/10,000")
    job = f"{uid}-report"
    await publish(srv, job, user, "queued", currentOperation="Waiting for a worker")
    await expect_row(page, job, "queued", 0)
    await publish(srv, job, user, "processing", progress=40,
                  currentOperation="Processing page 2/5", workerId="w1")
    await expect_row(page, job, "processing", 40)
    await expect(row(page, job).locator(".op")).to_have_text("Processing page 2/5")
    await publish(srv, job, user, "processing", progress=80,
                  currentOperation="Processing page 4/5")
    await expect_row(page, job, "processing", 80)
    await publish(srv, job, user, "completed", result={"pages": 5, "errors": 0})
    await expect_row(page, job, "completed", 100)
    await expect(row(page, job).locator(".op")).to_contain_text("pages: 5")
    await expect(row(page, job).locator(".eta")).to_have_text(re.compile("^—"))
    # Seen from its first event: the elapsed time is exact, and the finish time is shown.
    await expect(row(page, job).locator(".elapsed")).to_have_text(re.compile(r"^\d+s$"))
    await expect(row(page, job).locator(".finished time")).to_have_count(1)
    assert await seen(page, job) == [(job, 1), (job, 2), (job, 3), (job, 4)]
    await expect(page.locator("#summary")).to_have_text("3 jobs, 1 active")
    await expect(row(page, f"{uid}-backup").locator(".elapsed")).to_have_text(
        re.compile(r"^\d+s$"))
    await expect(row(page, f"{uid}-backup").locator(".finished time")).to_have_count(1)

    # A few more jobs in every state, for the screenshot.
    # Not synchronisation: the ETA needs progress observed over real time.
    await asyncio.sleep(max(0.0, 1.2 - (asyncio.get_running_loop().time() - started)))
    await publish(srv, f"{uid}-import", user, "processing", progress=14,
                  currentOperation="Importing rows 1,400/10,000")
    await publish(srv, f"{uid}-export", user, "processing", progress=5)
    await publish(srv, f"{uid}-export", user, "failed", error={"message": "disk full"})
    await publish(srv, f"{uid}-thumbs", user, "queued")
    await expect_row(page, f"{uid}-import", "processing", 14)
    eta = row(page, f"{uid}-import").locator(".eta")
    await expect(eta).to_have_text(re.compile(r"^~(\d+m )?\d+s$"))
    await expect_row(page, f"{uid}-export", "failed")
    await expect(row(page, f"{uid}-export").locator(".op")).to_have_text("Failed: disk full")
    await expect_row(page, f"{uid}-thumbs", "queued", 0)
    await expect(page.locator("#summary")).to_have_text("5 jobs, 2 active")
    ARTIFACTS.mkdir(exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / "dashboard-desktop.png"), full_page=True,
                          animations="disabled")
    assert page.errors == []  # type: ignore[attr-defined]
    await context.close()


async def test_sign_in_form(browser, servers, uid):
    srv = servers()
    user = f"{uid}-u"
    context = await browser.new_context()
    page = await context.new_page()
    await page.goto(srv.url + "/", timeout=T)
    await expect(page.get_by_label("Access token")).to_be_visible(timeout=T)
    await page.get_by_label("Access token").fill(srv.token(user))
    await page.keyboard.press("Enter")
    await expect(page.locator("body")).to_have_attribute("data-state", "open", timeout=T)
    await publish(srv, f"{uid}-j", user, "processing", progress=12)
    await expect_row(page, f"{uid}-j", "processing", 12)
    await context.close()


@pytest.mark.parametrize(("transports", "expected"), [("sse,longpoll,poll", "sse"),
                                                      ("longpoll,poll", "longpoll")])
async def test_falls_back_when_better_transports_are_off(browser, servers, uid, transports,
                                                         expected):
    srv = servers(transports=transports)
    user = f"{uid}-u"
    context = await browser.new_context()
    page = await open_dashboard(context, srv, user, transport=expected)
    await wait_for_sessions(srv, expected, 1, timeout=2 * WAIT)
    job = f"{uid}-j"
    await publish(srv, job, user, "queued")
    await publish(srv, job, user, "processing", progress=30, currentOperation="Working")
    await expect_row(page, job, "processing", 30)
    await publish(srv, job, user, "completed")
    await expect_row(page, job, "completed", 100)
    await page.wait_for_function("window.jobwireEvents.length >= 3", timeout=T)
    assert await seen(page, job) == [(job, 1), (job, 2), (job, 3)]
    assert await page.evaluate("window.jobwire.transport") == expected
    await context.close()


async def test_reconnects_across_a_restart_and_shows_every_event_once(browser, servers, uid):
    srv = servers()
    user = f"{uid}-u"
    context = await browser.new_context()
    page = await open_dashboard(context, srv, user)
    await publish(srv, f"{uid}-a", user, "queued")
    await publish(srv, f"{uid}-a", user, "processing", progress=50)
    await expect_row(page, f"{uid}-a", "processing", 50)

    await asyncio.to_thread(srv.stop)  # SIGTERM: the WebSocket is closed with 1012
    await expect(page.locator("body")).to_have_attribute("data-state", "reconnecting", timeout=T)
    srv2 = await asyncio.to_thread(start_server, secret=srv.secret, port=srv.port)
    try:
        # Published while the page may still be backing off: replayed from its cursor, or live.
        await publish(srv2, f"{uid}-b", user, "queued")
        await expect(page.locator("body")).to_have_attribute("data-state", "open", timeout=T)
        await wait_for_sessions(srv2, "websocket", 1)
        await publish(srv2, f"{uid}-b", user, "processing", progress=70)
        await publish(srv2, f"{uid}-b", user, "completed")
        await expect_row(page, f"{uid}-b", "completed", 100)
        await wait_seen(page, f"{uid}-b", 3)
        assert await seen(page) == [(f"{uid}-a", 1), (f"{uid}-a", 2),
                                    (f"{uid}-b", 1), (f"{uid}-b", 2), (f"{uid}-b", 3)]
        await expect_row(page, f"{uid}-a", "processing", 50)  # what it knew stays shown
        assert await page.evaluate("window.jobwire.transport") == "websocket"
        assert page.errors == []  # type: ignore[attr-defined]
    finally:
        srv2.stop()
    await context.close()


async def test_users_never_see_each_others_jobs_and_admins_see_all(browser, servers, uid):
    srv = servers()
    alice, bob = f"{uid}-alice", f"{uid}-bob"
    pages = {}
    for name, role in ((alice, "user"), (bob, "user"), ("boss", "admin")):
        context = await browser.new_context()  # separate browsers' worth of storage
        pages[name] = await open_dashboard(context, srv, name, role)
    await publish(srv, f"{uid}-bobs", bob, "processing", progress=20)
    await publish(srv, f"{uid}-alices", alice, "processing", progress=60)
    await expect_row(pages[alice], f"{uid}-alices", "processing", 60)
    await expect_row(pages[bob], f"{uid}-bobs", "processing", 20)
    # Events reach a page in order, so bob's earlier job would be there by now.
    assert await seen(pages[alice]) == [(f"{uid}-alices", 1)]
    await expect(row(pages[alice], f"{uid}-bobs")).to_have_count(0)
    await expect(pages[alice].locator("#filters")).to_be_hidden()
    await wait_seen(pages[bob], f"{uid}-bobs", 1)
    await wait_for_sessions(srv, "websocket", 3)
    # Bob's page got its own job; a second one of his, published after alice's, proves by its
    # arrival that alice's event was not delivered to him in between.
    await publish(srv, f"{uid}-bobs", bob, "completed")
    await wait_seen(pages[bob], f"{uid}-bobs", 2)
    assert await seen(pages[bob]) == [(f"{uid}-bobs", 1), (f"{uid}-bobs", 2)]

    admin = pages["boss"]
    await expect_row(admin, f"{uid}-bobs", "completed", 100)
    await expect_row(admin, f"{uid}-alices", "processing", 60)
    await expect(row(admin, f"{uid}-bobs").locator(".user")).to_have_text(bob)
    await admin.get_by_label("Filter by user or job").fill(alice)
    await expect(row(admin, f"{uid}-bobs")).to_be_hidden()
    await expect(row(admin, f"{uid}-alices")).to_be_visible()
    await admin.get_by_label("Status").select_option("completed")
    await expect(row(admin, f"{uid}-alices")).to_be_hidden()
    await expect(admin.locator("#empty")).to_have_text("No job matches the filter.")
    for page in pages.values():
        await page.context.close()


async def test_two_tabs_share_one_transport(browser, servers, uid):
    srv = servers()
    user = f"{uid}-u"
    context = await browser.new_context()
    tab1 = await open_dashboard(context, srv, user)
    tab2 = await open_dashboard(context, srv, None)  # signed in by the first tab's sign-in
    assert await tab1.evaluate("window.jobwire.shared") is True
    assert await tab2.evaluate("window.jobwire.shared") is True
    await wait_for_sessions(srv, "websocket", 1)
    assert await connections(srv, "websocket") == 1  # both tabs are live: still one
    job = f"{uid}-j"
    await publish(srv, job, user, "queued")
    await publish(srv, job, user, "processing", progress=25)
    await publish(srv, job, user, "processing", progress=50, currentOperation="Half way")
    for tab in (tab1, tab2):
        await expect_row(tab, job, "processing", 50)
        await wait_seen(tab, job, 3)
        assert await seen(tab, job) == [(job, 1), (job, 2), (job, 3)]
    assert await connections(srv, "websocket") == 1

    # The connection outlives the tab that opened it.
    await tab1.close()
    await publish(srv, job, user, "completed")
    await expect_row(tab2, job, "completed", 100)
    assert await seen(tab2, job) == [(job, 1), (job, 2), (job, 3), (job, 4)]
    assert await connections(srv, "websocket") == 1
    # ...and closes with the last one.
    await tab2.close()
    await wait_for_sessions(srv, "websocket", 0)
    await context.close()


async def test_elapsed_and_finished_times_from_what_the_page_saw(browser, servers, uid):
    """Every event says when its job began (`createdAt`): the elapsed time is exact whatever
    the page saw first, a job that ended before the page opened included, and the finish time
    is the final event's."""
    srv = servers()
    user = f"{uid}-u"
    at = "2026-01-02T10:{}Z".format
    ended, instant, whole, part = (f"{uid}-{name}" for name in ("ended", "instant", "whole",
                                                                "part"))
    await publish(srv, ended, user, "queued", timestamp=at("00:00"))
    await publish(srv, ended, user, "processing", progress=50, timestamp=at("00:10"))
    await publish(srv, ended, user, "completed", timestamp=at("01:23.400"))
    await publish(srv, instant, user, "cancelled", timestamp=at("02:00"))  # its only event
    await publish(srv, whole, user, "queued", timestamp=at("03:00"))  # the page gets seq 1
    await publish(srv, part, user, "queued", timestamp=at("04:00"))
    await publish(srv, part, user, "processing", progress=10, timestamp=at("04:05"))  # seq 2
    # A fixed locale and time zone, so the finish times have one spelling.
    context = await browser.new_context(locale="en-GB", timezone_id="UTC")
    page = await open_dashboard(context, srv, user)

    await expect_row(page, ended, "completed", 100)
    await expect(row(page, ended).locator(".elapsed")).to_have_text("1m 23s")
    finished = row(page, ended).locator(".finished time")
    await expect(finished).to_have_attribute("datetime", "2026-01-02T10:01:23.400Z")
    await expect(finished).to_have_text("2 Jan 2026, 10:01:23")

    await expect_row(page, instant, "cancelled")
    await expect(row(page, instant).locator(".elapsed")).to_have_text("0s")
    await expect(row(page, instant).locator(".finished time")).to_have_text("2 Jan 2026, 10:02:00")

    await expect_row(page, whole, "queued")
    await expect(row(page, whole).locator(".finished")).to_have_attribute("title", "not yet")
    await publish(srv, whole, user, "completed", timestamp=at("04:30"))
    await expect_row(page, whole, "completed")
    await expect(row(page, whole).locator(".elapsed")).to_have_text("1m 30s")

    await expect_row(page, part, "processing", 10)
    await publish(srv, part, user, "failed", timestamp=at("05:05"), error="timed out")
    await expect_row(page, part, "failed")
    await expect(row(page, part).locator(".elapsed")).to_have_text("1m 05s")
    await expect(row(page, part).locator(".finished time")).to_have_text("2 Jan 2026, 10:05:05")
    assert page.errors == []  # type: ignore[attr-defined]
    await context.close()


async def test_the_icon_loads_and_the_console_stays_clean(browser, servers, uid):
    srv = servers()
    user = f"{uid}-u"
    context = await browser.new_context()
    page = await context.new_page()
    problems: list[str] = []
    page.on("console", lambda m: m.type == "error" and problems.append(m.text))
    page.on("pageerror", lambda exc: problems.append(str(exc)))
    page.on("response", lambda r: r.status >= 400 and problems.append(f"{r.status} {r.url}"))
    page.on("requestfailed", lambda r: problems.append(f"{r.failure} {r.url}"))
    # The browser asks for the page's icon after the page has loaded: the positive signal.
    async with page.expect_response(lambda r: r.url.endswith("/static/favicon.svg"),
                                    timeout=T) as icon:
        await page.goto(f"{srv.url}/?token={srv.token(user)}", timeout=T)
    response = await icon.value
    assert response.status == 200
    assert response.headers["content-type"].startswith("image/svg+xml")
    await expect(page.locator("body")).to_have_attribute("data-state", "open", timeout=T)
    await publish(srv, f"{uid}-j", user, "processing", progress=5)
    await expect_row(page, f"{uid}-j", "processing", 5)
    assert problems == []

    # The check above can fail: a page of this origin without an icon link makes the browser
    # ask for /favicon.ico, which the server does not have, and that shows as a console error.
    other = await context.new_page()
    async with other.expect_console_message(lambda m: m.type == "error" and "404" in m.text,
                                            timeout=T):
        await other.goto(f"{srv.url}/healthz", timeout=T)
    await context.close()
