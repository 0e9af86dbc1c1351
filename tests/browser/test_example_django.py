"""examples/django_celery in a real Chromium, started by its one command: alice signs in with
Django's login form, starts a crawl and watches it complete on the page; bob, signed in at
the same time, is connected but sees nothing of it. Every wait is bounded."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from playwright.async_api import Browser, Page, expect

from tests.browser import test_dashboard
from tests.browser.test_dashboard import T
from tests.integration.with_django.site import run_example

PASSWORDS = {"alice": "alice-jobwire", "bob": "bob-jobwire"}  # the example's demo users

browser = test_dashboard.browser  # the dashboard tests' Chromium fixture


@pytest.fixture
def example() -> Iterator[str]:
    """The example, run exactly as its README says (its own redis-server too)."""
    with run_example("--pages", "8", "--delay", "0.4") as url:
        yield url


async def sign_in(browser: Browser, url: str, name: str) -> tuple[Page, str]:
    """Django's login form, as a person fills it in; returns the page and the user's
    jobwire id (from the token view, with the session the login set)."""
    page = await (await browser.new_context()).new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.errors = errors  # type: ignore[attr-defined]
    await page.goto(url + "/", timeout=T)
    await expect(page).to_have_url(url + "/accounts/login/?next=/", timeout=T)
    await page.fill("#id_username", name)
    await page.fill("#id_password", PASSWORDS[name])
    await page.click("#sign-in")
    await expect(page.locator("#username")).to_have_text(name, timeout=T)
    token = await page.request.get(url + "/jobwire/token/")
    assert token.ok
    return page, (await token.json())["userId"]


async def test_alice_watches_her_crawl_complete_and_bob_sees_nothing_of_it(example, browser):
    alice, alice_id = await sign_in(browser, example, "alice")
    bob, bob_id = await sign_in(browser, example, "bob")
    assert alice_id != bob_id

    await alice.click("#start")
    await alice.wait_for_url(f"{example}/jobs/**", timeout=T)
    job = alice.url.rstrip("/").rsplit("/", 1)[-1]
    progress = alice.locator(f'.jobwire-progress[data-jobwire-job="{job}"]')
    await expect(progress).to_have_attribute("data-state", "open", timeout=T)
    await expect(progress).to_have_attribute("data-user", alice_id, timeout=T)
    await expect(progress).to_have_attribute("data-status", "processing", timeout=3 * T)

    # While it runs: bob, connected and signed in as himself, is refused alice's job.
    await bob.goto(f"{example}/jobs/{job}/", timeout=T)
    spy = bob.locator(".jobwire-progress")
    await expect(spy).to_have_attribute("data-state", "open", timeout=T)
    await expect(spy).to_have_attribute("data-user", bob_id, timeout=T)
    await expect(spy).to_have_attribute("data-error", "forbidden", timeout=T)
    await expect(spy.locator('[data-jobwire-field="status"]')).to_have_text("not available")
    refused = await bob.request.get(f"{example}/realtime/api/v2/jobs/{job}")
    assert refused.status == 404  # another user's job is no job at all

    # Alice's page moves through the pages to completion.
    await alice.wait_for_function(
        "el => { const p = +el.dataset.progress; return p > 0 && p < 100; }",
        arg=await progress.element_handle(), timeout=T)
    await expect(progress.locator('[data-jobwire-field="operation"]')).to_contain_text(
        "Crawled", timeout=T)
    await expect(progress).to_have_attribute("data-status", "completed", timeout=3 * T)
    await expect(progress).to_have_attribute("data-progress", "100")
    assert await progress.locator("progress").evaluate("el => el.value") == 100

    # Bob's page, still open and connected, never showed any of it.
    await expect(spy).to_have_attribute("data-state", "open")
    assert await spy.get_attribute("data-status") == ""
    assert await spy.get_attribute("data-progress") == "0"

    # Alice's start page lists her crawls, each live on the page's one connection.
    await alice.goto(example + "/", timeout=T)
    await alice.click("#start")
    await alice.wait_for_url(f"{example}/jobs/**", timeout=T)
    second = alice.url.rstrip("/").rsplit("/", 1)[-1]
    await alice.goto(example + "/", timeout=T)
    listed = alice.locator(".jobwire-progress")
    await expect(listed).to_have_count(2)
    await expect(listed.nth(1)).to_have_attribute("data-jobwire-job", job)
    await expect(listed.nth(1)).to_have_attribute("data-status", "completed", timeout=T)
    await expect(listed.nth(0)).to_have_attribute("data-jobwire-job", second)
    await expect(listed.nth(0)).to_have_attribute("data-status", re.compile("queued|processing"),
                                                  timeout=T)
    assert await alice.evaluate(
        "document.querySelectorAll('.jobwire-progress')[0].jobwire === "
        "document.querySelectorAll('.jobwire-progress')[1].jobwire")
    assert alice.errors == [] and bob.errors == []  # type: ignore[attr-defined]
