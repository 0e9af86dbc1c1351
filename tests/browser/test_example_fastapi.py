"""examples/fastapi_app in a real Chromium: the app runs as its own process (its documented
command), alice signs in through its form and watches a job she started complete, and bob,
signed in alongside in another browser context, sees only his own job. Every wait is bounded."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from playwright.async_api import Browser, Page, expect

from tests.browser import test_dashboard
from tests.browser.test_dashboard import T
from tests.conftest import WAIT, _started, free_port, stop_process

ROOT = Path(__file__).resolve().parents[2]
STEPS = 5

browser = test_dashboard.browser  # the dashboard tests' Chromium fixture


@dataclass
class Process:
    """A web app started by a test, stopped by its PID."""

    url: str
    process: subprocess.Popen[bytes]

    def stop(self) -> None:
        stop_process(self.process)


def start_process(args: list[str], port: int, ready_path: str,
                  env: dict[str, str] | None = None) -> Process:
    """Run `args` from the project root; ready once `ready_path` answers 200 (bounded)."""
    process = subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.DEVNULL)
    app = Process(f"http://127.0.0.1:{port}", process)
    _started.append(app)  # stopped at the end of the run whatever happens
    deadline = time.monotonic() + 3 * WAIT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{args} exited with {process.returncode}")
        try:
            if httpx.get(app.url + ready_path, timeout=1).status_code == 200:
                return app
        except httpx.TransportError:
            time.sleep(0.05)  # not listening yet: nothing to await in another process
    app.stop()
    raise RuntimeError(f"{args} did not become ready")


@pytest.fixture
def example() -> Iterator[Process]:
    port = free_port()
    app = start_process([sys.executable, "examples/fastapi_app/app.py", "--port", str(port),
                         "--steps", str(STEPS), "--step-seconds", "0.2"],
                        port, "/realtime/healthz")
    yield app
    app.stop()


async def sign_in(browser: Browser, app: Process, user: str) -> Page:
    """A fresh browser context signed in through the app's form; returns the jobs page once
    jobwire has said who it is. Records the WebSocket frames the page sends."""
    context = await browser.new_context()
    page = await context.new_page()
    errors: list[str] = []
    frames: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("websocket", lambda ws: ws.on("framesent", lambda payload: frames.append(
        payload if isinstance(payload, str) else payload.decode())))
    page.errors, page.frames_sent = errors, frames  # type: ignore[attr-defined]
    await page.goto(app.url + "/", timeout=T)
    await expect(page).to_have_url(app.url + "/login", timeout=T)  # not signed in yet
    await page.get_by_label("Username").fill(user)
    await page.get_by_label("Password").fill(f"{user}-password")
    await page.get_by_role("button", name="Sign in").click()
    await expect(page).to_have_url(app.url + "/", timeout=T)
    await expect(page.locator("body")).to_have_attribute("data-state", "open", timeout=T)
    await expect(page.locator("body")).to_have_attribute("data-user", user, timeout=T)
    return page


async def start_job(page: Page) -> str:
    """Press "Start job"; the id the app answered with."""
    before = await page.evaluate("document.body.dataset.lastJob || ''")
    await page.get_by_role("button", name="Start job").click()
    await page.wait_for_function("(b) => (document.body.dataset.lastJob || '') !== b",
                                 arg=before, timeout=T)
    return await page.evaluate("document.body.dataset.lastJob")


async def events(page: Page) -> list[dict]:
    return await page.evaluate("window.jobEvents")


async def wait_completed(page: Page, job: str) -> None:
    await expect(page.locator(f'li[data-job="{job}"]')).to_have_attribute(
        "data-status", "completed", timeout=T)


async def test_alice_watches_her_job_and_bob_sees_only_his(browser, example):
    alice = await sign_in(browser, example, "alice")
    bob = await sign_in(browser, example, "bob")  # live while alice's job runs
    for page, user in ((alice, "alice"), (bob, "bob")):
        assert await page.evaluate("window.jobwireUser") == {
            "userId": user, "role": "user", "expiresAt": None}
        assert await page.evaluate("window.jobwire.transport") == "websocket"

    job = await start_job(alice)
    assert job.startswith("job_")
    await wait_completed(alice, job)
    mine = [e for e in await events(alice) if e["jobId"] == job]
    # Every step, in order, as the app published them: queued, processing with rising
    # progress, completed.
    assert [e["seq"] for e in mine] == list(range(1, STEPS + 3))
    assert [e["status"] for e in mine] == ["queued"] + ["processing"] * STEPS + ["completed"]
    progress = [e["progress"] for e in mine[1:-1]]
    assert progress == sorted(progress) and 0 < progress[-1] < 100
    await expect(alice.get_by_label(f"Progress of {job}")).to_have_attribute("value", "100")

    # Bob's own job, started after alice's ended: its events reach his page after anything of
    # alice's would have (one server, events in order), so their arrival shows none came.
    bobs = await start_job(bob)
    await wait_completed(bob, bobs)
    assert {e["jobId"] for e in await events(bob)} == {bobs}
    assert job not in await bob.content()

    # Cookie mode: no token in the page, no in-band auth, only the subscribe.
    for page in (alice, bob):
        sent = [f for f in page.frames_sent if '"ping"' not in f]  # type: ignore[attr-defined]
        assert sent and all('"subscribe"' in f for f in sent), sent
        assert page.errors == []  # type: ignore[attr-defined]

    # Asked directly with his own cookie, the server refuses bob alice's job, and gives it
    # to alice; without a session nothing is given.
    url = f"{example.url}/realtime/api/v2/jobs/{job}"
    assert (await bob.context.request.get(url)).status in (403, 404)
    answer = await alice.context.request.get(url)
    assert answer.status == 200 and (await answer.json())["status"] == "completed"
    async with httpx.AsyncClient(timeout=WAIT) as http:
        assert (await http.get(url)).status_code == 401
    for page in (alice, bob):
        await page.context.close()
