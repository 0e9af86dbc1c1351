"""jobwire mounted under a prefix of a Starlette host app, in a real uvicorn process and a real
Chromium: a page of the host loads `<prefix>/static/jobwire.js` with no `url` and no token,
and must find every endpoint under the prefix and sign in with the host's session cookie, on
each transport in turn; a token and the SharedWorker work there too; and the dashboard loads
under the prefix. Every wait is bounded.

The host app is `host_app` below, run by `uvicorn --factory` from this module."""

from __future__ import annotations

import os
import secrets
import sys
from collections.abc import Iterator
from urllib.parse import urlsplit

import httpx
import pytest
from playwright.async_api import Browser, Page, expect
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Mount, Route

from jobwire.asgi import Jobwire
from jobwire.auth import Credentials, Identity
from jobwire.tokens import Tokens
from tests.browser import test_dashboard
from tests.browser.test_dashboard import T
from tests.browser.test_example_fastapi import Process, start_process
from tests.conftest import WAIT, free_port

PREFIX = "/apps/realtime"  # two segments: the base is more than the first path element
COOKIE = "host_session"
PAGE = f"""<!doctype html><html><head><meta charset="utf-8"><title>host</title>
<script src="{PREFIX}/static/jobwire.js"></script></head><body>a page of the host</body></html>"""

browser = test_dashboard.browser  # the dashboard tests' Chromium fixture


def host_app() -> Starlette:
    """The host: its own sessions (a dict keyed by a random cookie), a page, and jobwire at
    PREFIX authenticating through a hook that reads that cookie. JOBWIRE_SECRET comes from the
    environment (the test mints publisher and user tokens with it)."""
    sessions: dict[str, str] = {}

    def who(credentials: Credentials) -> Identity | None:
        user = sessions.get(credentials.cookies.get(COOKIE, ""))
        return Identity(user, "user") if user else None

    realtime = Jobwire(authenticate=who)

    async def sign_in(request: Request) -> Response:
        # A test host: the user is taken from the path, no password.
        session_id = secrets.token_urlsafe(16)
        sessions[session_id] = request.path_params["user"]
        response = RedirectResponse(request.query_params.get("next", "/"), status_code=303)
        response.set_cookie(COOKIE, session_id, httponly=True, samesite="lax")
        return response

    async def page(request: Request) -> Response:
        return HTMLResponse(PAGE)

    return Starlette(routes=[Route("/", page), Route("/signin/{user}", sign_in),
                             Mount(PREFIX, app=realtime)],
                     lifespan=realtime.lifespan)


@pytest.fixture(scope="module")
def host() -> Iterator[tuple[Process, Tokens]]:
    secret = secrets.token_urlsafe(32)
    port = free_port()
    env = {**os.environ, "JOBWIRE_SECRET": secret, "JOBWIRE_LOG_LEVEL": "warning"}
    app = start_process([sys.executable, "-m", "uvicorn", "--factory",
                         f"{__name__}:host_app", "--port", str(port), "--log-level", "warning",
                         "--timeout-graceful-shutdown", "1"],  # pages' sockets may be open
                        port, PREFIX + "/healthz", env=env)
    yield app, Tokens(secret=secret)
    app.stop()


async def publish(app: Process, tokens: Tokens, job: str, user: str, status: str,
                  **fields: object) -> None:
    """Publish over HTTP to the mounted endpoint (as a worker elsewhere would)."""
    async with httpx.AsyncClient(timeout=WAIT) as http:
        response = await http.post(
            f"{app.url}{PREFIX}/api/v2/jobs/{job}/status",
            headers={"Authorization": "Bearer " + tokens.mint("pub", role="publisher")},
            json={"userId": user, "status": status, **fields})
    assert response.status_code == 202, response.text


async def signed_in_page(browser: Browser, app: Process, user: str, then: str = "/") -> Page:
    """A new browser context signed in to the host as `user`, on the host page `then`; records
    every request and WebSocket the page opens, and failed responses."""
    context = await browser.new_context()
    page = await context.new_page()
    page.requests, page.failed = [], []  # type: ignore[attr-defined]
    page.on("request", lambda r: page.requests.append((r.url, r.headers)))
    page.on("websocket", lambda ws: page.requests.append((ws.url, {})))
    page.on("response", lambda r: r.status >= 400 and page.failed.append((r.status, r.url)))
    page.on("pageerror", lambda exc: page.failed.append((0, str(exc))))
    await page.goto(f"{app.url}/signin/{user}?next={then}", timeout=T)
    return page


async def follow(page: Page, job: str, options: dict) -> None:
    """Follow `job` with jobwire.js as loaded by the page (no url: found from the script),
    recording the applied events; wait until the connection is open."""
    await page.evaluate("""([job, options]) => {
        window.applied = [];
        window.jobwire = Jobwire.connect({jobIds: [job], ...options});
        window.jobwire.on("update", (j) => window.applied.push([j.jobId, j.seq, j.status]));
    }""", [job, options])
    await page.wait_for_function("window.jobwire.state === 'open'", timeout=T)


async def run_job(page: Page, app: Process, tokens: Tokens, job: str, user: str,
                  every_event: bool = True) -> None:
    """queued → processing → completed: each seen by the page once, in order; or, by regular
    polling (which sees states, not events), at least the last, in order."""
    await publish(app, tokens, job, user, "queued")
    await publish(app, tokens, job, user, "processing", progress=50)
    await publish(app, tokens, job, user, "completed")
    await page.wait_for_function("window.applied.some((a) => a[2] === 'completed')", timeout=T)
    applied = await page.evaluate("window.applied")
    expected = [[job, 1, "queued"], [job, 2, "processing"], [job, 3, "completed"]]
    if every_event:
        assert applied == expected
    else:
        assert applied == [a for a in expected if a in applied] and applied[-1] == expected[-1]


# The endpoint each transport must have used, under the prefix.
ENDPOINTS = {"websocket": "/ws/jobs", "sse": "/api/v2/jobs/stream",
             "longpoll": "/api/v2/jobs/poll", "poll": "/api/v2/jobs/status"}


def jobwire_requests(page: Page) -> list[tuple[str, dict]]:
    """The page's requests to jobwire's endpoints (anything but the host's page, sign-in and
    the script itself)."""
    return [(url, headers) for url, headers in page.requests  # type: ignore[attr-defined]
            if any(part in urlsplit(url).path for part in ("/ws/", "/api/", "/healthz"))]


@pytest.mark.parametrize("transport", list(ENDPOINTS))
async def test_a_host_page_finds_the_endpoints_under_the_prefix(browser, host, uid, transport):
    app, tokens = host
    user = f"{uid}-u"
    page = await signed_in_page(browser, app, user)
    await follow(page, f"{uid}-job", {"transports": [transport]})
    await run_job(page, app, tokens, f"{uid}-job", user, every_event=transport != "poll")
    assert await page.evaluate("window.jobwire.transport") == transport

    used = jobwire_requests(page)
    paths = [urlsplit(url).path for url, _ in used]
    assert PREFIX + ENDPOINTS[transport] in paths, paths
    assert all(path.startswith(PREFIX + "/") for path in paths), paths
    # Cookie mode: the host's session cookie, never an Authorization header.
    assert not any("authorization" in headers for _, headers in used)
    # Who the page is, from the server: `authenticated` on the WebSocket, the snapshot else.
    assert await page.evaluate("window.jobwire.principal.userId") == user
    assert page.failed == []  # type: ignore[attr-defined]
    await page.context.close()


async def test_a_token_and_the_shared_worker_under_the_prefix(browser, host, uid):
    app, tokens = host
    user = f"{uid}-u"
    context = await browser.new_context()  # not signed in to the host: the token is all
    page = await context.new_page()
    await page.goto(app.url + "/", timeout=T)
    await follow(page, f"{uid}-job", {"token": tokens.mint(user)})
    # The worker runs <prefix>/static/jobwire.js and connects under the prefix too.
    assert await page.evaluate("window.jobwire.shared") is True
    await run_job(page, app, tokens, f"{uid}-job", user)
    assert await page.evaluate("window.jobwire.transport") == "websocket"
    await context.close()


async def test_the_dashboard_under_the_prefix(browser, host, uid):
    app, tokens = host
    user = f"{uid}-u"
    # Signed in to the host, then its dashboard at the prefix without the trailing slash
    # (redirected to it): every asset and endpoint is found, and the host's cookie signs in.
    page = await signed_in_page(browser, app, user, then=PREFIX)
    await expect(page).to_have_url(f"{app.url}{PREFIX}/", timeout=T)
    body = page.locator("body")
    await expect(body).to_have_attribute("data-state", "open", timeout=T)
    await expect(body).to_have_attribute("data-transport", "websocket", timeout=T)
    await expect(page.locator("#who-name")).to_have_text(user, timeout=T)
    await expect(page.get_by_label("Access token")).to_be_hidden()
    job = f"{uid}-report"
    await publish(app, tokens, job, user, "processing", progress=40)
    await expect(page.locator(f'tr[data-job="{job}"] .badge')).to_have_text("processing",
                                                                            timeout=T)
    loaded = {urlsplit(url).path for url, _ in page.requests}  # type: ignore[attr-defined]
    for asset in ("dashboard.css", "dashboard.js", "jobwire.mjs", "jobwire.js"):
        assert f"{PREFIX}/static/{asset}" in loaded, loaded
    # Chromium asks the host for /favicon.ico on its own: not the dashboard's.
    failed = [f for f in page.failed if not f[1].endswith("/favicon.ico")]  # type: ignore[attr-defined]
    assert failed == []
    await page.context.close()
