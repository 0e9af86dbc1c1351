"""The dashboard's accessibility and its phone layout, in a real Chromium against real
`jobwire serve` processes: axe-core (tests/browser/axe, installed by scripts/npm-deps) finds no
violation at desktop or phone width, signed in as a user or an admin, with jobs in every state,
nor on the sign-in form; at 375 px wide the page does not scroll sideways and every control
and job card fits. Writes artifacts/dashboard-phone.png."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from playwright.async_api import Browser, Page, expect

from tests.browser import test_dashboard
from tests.browser.test_dashboard import ARTIFACTS, T, expect_row, open_dashboard, row
from tests.conftest import Server, publish

browser = test_dashboard.browser  # the dashboard tests' Chromium fixture
servers = test_dashboard.servers

AXE = Path(__file__).parent / "axe" / "node_modules" / "axe-core" / "axe.min.js"
if not AXE.exists():  # pragma: no cover - ./scripts/test and CI run scripts/npm-deps first
    raise RuntimeError(f"{AXE} is missing: run scripts/npm-deps")

DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 375, "height": 667}
# A job is reported stalled after this much silence; the test waits for one to stall.
STALL_SECONDS = 1.0


async def axe_violations(page: Page) -> list[str]:
    """Every violation axe-core finds in the page as it is now (all rules axe runs by default),
    one line each: rule, impact, what it asks, and the offending elements."""
    if not await page.evaluate("typeof window.axe === 'object'"):
        await page.add_script_tag(path=str(AXE))
    violations = await page.evaluate("""async () => {
        const result = await axe.run(document, {resultTypes: ["violations"]});
        return result.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,
                                            nodes: v.nodes.map(n => n.target.join(" "))}));
    }""")
    return [f"{v['id']} ({v['impact']}): {v['help']}: {', '.join(v['nodes'])}"
            for v in violations]


async def expect_no_violations(page: Page, where: str) -> None:
    found = await axe_violations(page)
    assert not found, f"axe-core, {where}:\n" + "\n".join(found)


async def no_sideways_scroll(page: Page) -> None:
    widths = await page.evaluate("[document.scrollingElement.scrollWidth, innerWidth]")
    assert widths[0] <= widths[1], f"the page scrolls sideways: {widths}"


async def expect_within_width(page: Page, locator: Any, what: str) -> None:
    """The element is shown and lies wholly inside the viewport's width."""
    await expect(locator).to_be_visible(timeout=T)
    box = await locator.bounding_box()
    width = page.viewport_size["width"] if page.viewport_size else 0
    assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= width + 0.5, \
        f"{what} does not fit in {width} px: {box}"


@contextlib.asynccontextmanager
async def kept_alive(srv: Server, job_id: str, user: str, **fields: Any) -> AsyncIterator[None]:
    """Repeat a processing job's state (an unchanged update: no event, but the job is not
    silent) so it is not reported stalled while the test looks at it."""

    async def repeat() -> None:
        while True:
            await publish(srv, job_id, user, "processing", **fields)
            await asyncio.sleep(STALL_SECONDS / 5)

    task = asyncio.create_task(repeat())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def jobs_in_every_state(srv: Server, uid: str, user: str) -> dict[str, str]:
    """Publish one job in each state (stalled included) for `user`: {job id: shown status}."""
    jobs = {f"{uid}-stalled": "stalled", f"{uid}-queued": "queued",
            f"{uid}-processing": "processing", f"{uid}-completed": "completed",
            f"{uid}-failed": "failed", f"{uid}-cancelled": "cancelled"}
    await publish(srv, f"{uid}-stalled", user, "processing", progress=30,
                  currentOperation="Resizing image 3/10")
    await publish(srv, f"{uid}-queued", user, "queued")
    await publish(srv, f"{uid}-completed", user, "processing", progress=50)
    await publish(srv, f"{uid}-completed", user, "completed", result={"pages": 5})
    await publish(srv, f"{uid}-failed", user, "failed",
                  error={"message": "upstream answered 503 after 3 retries"})
    await publish(srv, f"{uid}-cancelled", user, "cancelled")
    return jobs


async def test_no_axe_violations_for_users_and_admins_at_desktop_and_phone_width(
        browser: Browser, servers, uid):
    srv = servers(stalled_after_seconds=STALL_SECONDS)
    user = f"{uid}-alice"
    jobs = await jobs_in_every_state(srv, uid, user)
    busy = {"progress": 45, "currentOperation": "Processing page 120/300"}
    await publish(srv, f"{uid}-processing", user, "processing", **busy)
    async with kept_alive(srv, f"{uid}-processing", user, **busy):
        pages = {}
        for name, role in ((user, "user"), ("boss", "admin")):
            context = await browser.new_context(viewport=DESKTOP)
            pages[role] = await open_dashboard(context, srv, name, role)
        for role, page in pages.items():
            for job_id, status in jobs.items():
                await expect_row(page, job_id, status)
            for viewport in (DESKTOP, PHONE):
                await page.set_viewport_size(viewport)
                await expect(page.locator(f'tr[data-job="{uid}-queued"]')).to_be_visible()
                await expect_no_violations(page, f"{role}, {viewport['width']} px wide")
                if role == "admin":
                    await expect(page.locator("#filters")).to_be_visible()
            await expect_row(page, f"{uid}-processing", "processing")  # still: not stalled
            assert page.errors == []  # type: ignore[attr-defined]
        for page in pages.values():
            await page.context.close()


async def test_no_axe_violations_on_the_sign_in_form(browser: Browser, servers):
    srv = servers()
    context = await browser.new_context(viewport=DESKTOP)
    page = await context.new_page()
    await page.goto(srv.url + "/", timeout=T)
    await expect(page.get_by_label("Access token")).to_be_visible(timeout=T)
    for viewport in (DESKTOP, PHONE):
        await page.set_viewport_size(viewport)
        await expect_no_violations(page, f"sign-in form, {viewport['width']} px wide")
    # A refused token's message is part of the form too.
    await page.get_by_label("Access token").fill("not-a-token")
    await page.keyboard.press("Enter")
    await expect(page.locator("#signin-message")).to_contain_text("does not look like")
    await expect_no_violations(page, "sign-in form with a message, 375 px wide")
    await context.close()


async def test_axe_reports_what_it_should(browser: Browser):
    """The check above can fail: the same harness finds a seeded violation."""
    context = await browser.new_context()
    page = await context.new_page()
    await page.set_content('<html lang="en"><title>t</title><main><h1>t</h1>'
                           '<img src="data:,"></main></html>')
    found = await axe_violations(page)
    assert [v.split(" ")[0] for v in found] == ["image-alt"], found
    await context.close()


async def test_usable_at_phone_width(browser: Browser, servers, uid):
    srv = servers()
    user = f"{uid}-alice"
    long_id = f"{uid}-nightly-export-of-every-invoice-since-the-beginning-of-time"
    await publish(srv, long_id, user, "processing", progress=62,
                  currentOperation="Uploading s3://exports/invoices/2026/part-0000000017.csv.gz")
    await publish(srv, f"{uid}-report", user, "queued")
    await publish(srv, f"{uid}-thumbs", user, "processing", progress=90)
    await publish(srv, f"{uid}-thumbs", user, "completed", result={"images": 240, "skipped": 3})
    await publish(srv, f"{uid}-sync", user, "failed",
                  error={"message": "connection reset by peer while reading the response"})
    context = await browser.new_context(viewport=PHONE)
    page = await open_dashboard(context, srv, "boss", "admin")
    for job_id, status in ((long_id, "processing"), (f"{uid}-report", "queued"),
                           (f"{uid}-thumbs", "completed"), (f"{uid}-sync", "failed")):
        await expect_row(page, job_id, status)
    await expect(page.locator("#summary")).to_have_text("4 jobs, 2 active")

    await no_sideways_scroll(page)
    for selector, what in (("#filter-text", "the filter box"), ("#filter-status", "the status"),
                           ("#signout", "sign out"), ("#conn", "the connection line")):
        await expect_within_width(page, page.locator(selector), what)
    # Each job is a card: every value of it on screen, beside its label, within the width.
    card = row(page, long_id)
    await expect_within_width(page, card, "a job card")
    for label in ("Job", "User", "Status", "Progress", "Operation", "Elapsed", "ETA"):
        await expect_within_width(page, card.locator(f'td[data-label="{label}"]'), label)
    await expect(card.locator('td[data-label="Finished"]')).to_be_hidden()  # still running
    await expect(row(page, f"{uid}-thumbs").locator('td[data-label="ETA"]')).to_be_hidden()
    await expect_within_width(page, row(page, f"{uid}-thumbs").locator(".finished"), "Finished")

    ARTIFACTS.mkdir(exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / "dashboard-phone.png"), full_page=True,
                          animations="disabled")

    # The controls work at this width: filter, sign out, sign in again with the form.
    await page.get_by_label("Filter by user or job").fill("sync")
    await expect(row(page, f"{uid}-report")).to_be_hidden()
    await expect_within_width(page, row(page, f"{uid}-sync"), "the filtered card")
    await page.get_by_role("button", name="Sign out").click()
    await expect(page.get_by_label("Access token")).to_be_visible(timeout=T)
    await no_sideways_scroll(page)
    await expect_within_width(page, page.get_by_label("Access token"), "the token box")
    await expect_within_width(page, page.get_by_role("button", name="Sign in"), "sign in")
    await page.get_by_label("Access token").fill(srv.token(user))
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.locator("body")).to_have_attribute("data-state", "open", timeout=T)
    await expect_row(page, f"{uid}-sync", "failed")
    await no_sideways_scroll(page)
    assert page.errors == []  # type: ignore[attr-defined]
    await context.close()
