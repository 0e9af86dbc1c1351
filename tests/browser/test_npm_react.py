"""The npm package (clients/js) in a real Vite + React app, in a real Chromium, against real
`jobwire serve` processes.

Once per module: `npm pack` the package; copy the app of tests/npm into a temporary folder,
install its dependencies from its lock file (`npm ci`, npm's cache kept across runs), install
the tarball into it, type-check it with `tsc` against the package's types and `vite build` it.
A static server in this process serves the built app from its own origin, which every jobwire
server here allows (JOBWIRE_ALLOWED_ORIGINS). The page (tests/npm/src) shows the connection in
`#connection`, every job in `#jobs li[data-job]`, the followed job in `#watched`, and records
each job event its client applied in `window.jobwireEvents`. Every wait is bounded."""

from __future__ import annotations

import asyncio
import functools
import json
import shutil
import subprocess
import tarfile
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from playwright.async_api import Browser, Page, expect

from tests.browser import test_dashboard
from tests.browser.test_dashboard import T, connections
from tests.conftest import (
    WAIT,
    Server,
    publish,
    start_server,
    wait_for_sessions,
)

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "clients" / "js"
APP = ROOT / "tests" / "npm"
APP_FILES = ["package.json", "package-lock.json", "index.html", "vite.config.ts",
             "tsconfig.json", "src"]
NPM = shutil.which("npm")
NPM_FLAGS = ["--no-audit", "--no-fund", "--prefer-offline", "--loglevel=error"]
INSTALL_TIMEOUT = 180  # seconds; a cold npm cache downloads the app's dependencies
SHIPPED = {"package/package.json", "package/README.md", "package/dist/jobwire.js",
           "package/dist/jobwire.mjs", "package/dist/jobwire.d.ts", "package/dist/jobwire.d.mts",
           "package/react/index.mjs", "package/react/index.d.mts"}

browser = test_dashboard.browser  # the dashboard tests' Chromium fixture

if NPM is None:  # pragma: no cover - CI installs Node and npm
    raise RuntimeError("npm is required for the npm package's tests")


def run(args: list[str], cwd: Path, timeout: float) -> str:
    """Run a build step; its output is the error message if it fails."""
    done = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed ({done.returncode}):\n"
                             f"{done.stdout[-4000:]}\n{done.stderr[-4000:]}")
    return done.stdout


@pytest.fixture(scope="module")
def tarball(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`npm pack` of clients/js: its prepack assembles dist/ from src/jobwire/static."""
    out = tmp_path_factory.mktemp("pack")
    packed = json.loads(run([NPM, "pack", "--json", "--pack-destination", str(out),
                             "--loglevel=error"], PACKAGE, 60))
    return out / packed[0]["filename"]


@pytest.fixture(scope="module")
def built_app(tarball: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The test app with the packed package installed, type-checked and built: its dist/."""
    app = tmp_path_factory.mktemp("app")
    for name in APP_FILES:
        source = APP / name
        if source.is_dir():
            shutil.copytree(source, app / name)
        else:
            shutil.copy2(source, app / name)
    run([NPM, "ci", *NPM_FLAGS], app, INSTALL_TIMEOUT)
    run([NPM, "install", "--no-save", *NPM_FLAGS, str(tarball)], app, INSTALL_TIMEOUT)
    run([str(app / "node_modules" / ".bin" / "tsc"), "--noEmit", "-p", "."], app, 60)
    run([str(app / "node_modules" / ".bin" / "vite"), "build", "--logLevel", "warn"], app, 60)
    return app / "dist"


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def app_origin(built_app: Path) -> Iterator[str]:
    """The built app served by a static server on its own origin (another port than jobwire's)."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0),
                                functools.partial(QuietHandler, directory=str(built_app)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()
    thread.join(WAIT)


@pytest.fixture
def servers(app_origin: str) -> Iterator[Callable[..., Server]]:
    """start_server(**settings) allowing the app's origin; every one stopped afterwards."""
    started: list[Server] = []

    def make(**settings: Any) -> Server:
        srv = start_server(allowed_origins=app_origin, **settings)
        started.append(srv)
        return srv

    yield make
    for srv in started:
        srv.stop()


@pytest.fixture
async def open_app(browser: Browser, app_origin: str) -> AsyncIterator[Callable[..., Any]]:
    """open_app(server, user, **query): the app signed in as `user`, once its connection is
    open; every page's errors are asserted empty at the end."""
    contexts = []
    pages: list[Page] = []

    async def open_page(server: Server, user: str, transport: str = "websocket",
                        **query: str) -> Page:
        context = await browser.new_context()
        contexts.append(context)
        page = await context.new_page()
        page.errors = []  # type: ignore[attr-defined]
        page.on("pageerror", lambda exc: page.errors.append(str(exc)))  # type: ignore[attr-defined]
        pages.append(page)
        params = {"server": server.url, "token": server.token(user), **query}
        await page.goto(f"{app_origin}/?{urlencode(params)}", timeout=T)
        await expect_connection(page, "open", transport)
        await expect(page.locator("#connection")).to_have_attribute("data-user", user, timeout=T)
        return page

    yield open_page
    for page in pages:
        assert page.errors == []  # type: ignore[attr-defined]
    for context in contexts:
        await context.close()


async def expect_connection(page: Page, state: str, transport: str | None = None) -> None:
    badge = page.locator("#connection")
    await expect(badge).to_have_attribute("data-state", state, timeout=T)
    if transport is not None:
        await expect(badge).to_have_attribute("data-transport", transport, timeout=T)


async def expect_job(page: Page, job_id: str, status: str, progress: int) -> None:
    item = page.locator(f'#jobs li[data-job="{job_id}"]')
    await expect(item).to_have_attribute("data-status", status, timeout=T)
    await expect(item).to_have_attribute("data-progress", str(progress), timeout=T)


async def expect_watched(page: Page, status: str, progress: int) -> None:
    watched = page.locator("#watched")
    await expect(watched).to_have_attribute("data-status", status, timeout=T)
    await expect(watched).to_have_attribute("data-progress", str(progress), timeout=T)


async def seen(page: Page, job_id: str, seq: int) -> list[int]:
    """The seq of every event of `job_id` the page applied, once it has applied `seq`."""
    await page.wait_for_function(
        "([j, s]) => window.jobwireEvents.some(e => e.jobId === j && e.seq === s)",
        arg=[job_id, seq], timeout=T)
    events = await page.evaluate("window.jobwireEvents")
    return [e["seq"] for e in events if e["jobId"] == job_id]


def test_the_tarball_ships_the_servers_own_script(tarball: Path, built_app: Path, servers):
    with tarfile.open(tarball) as tar:
        names = set(tar.getnames())
        files = {name: tar.extractfile(name).read() for name in SHIPPED  # type: ignore[union-attr]
                 if name in names}
    assert SHIPPED <= names, f"missing from the tarball: {SHIPPED - names}"
    manifest = json.loads(files["package/package.json"])
    assert manifest.get("dependencies", {}) == {}
    assert manifest["exports"]["."]["import"] == {"types": "./dist/jobwire.d.mts",
                                                  "default": "./dist/jobwire.mjs"}
    assert manifest["exports"]["."]["require"] == {"types": "./dist/jobwire.d.ts",
                                                   "default": "./dist/jobwire.js"}
    assert manifest["exports"]["./react"] == {"types": "./react/index.d.mts",
                                              "import": "./react/index.mjs"}
    srv = servers()
    served = {name: httpx.get(f"{srv.url}/static/{name}", timeout=WAIT).content
              for name in ("jobwire.js", "jobwire.mjs")}
    assert files["package/dist/jobwire.js"] == served["jobwire.js"]
    assert files["package/dist/jobwire.mjs"] == served["jobwire.mjs"]
    # Vite emitted the script the .mjs points at (the SharedWorker's) as an asset: the same bytes.
    emitted = list((built_app / "assets").glob("jobwire-*.js"))
    assert [path.read_bytes() for path in emitted] == [served["jobwire.js"]]


async def test_a_job_progresses_to_completed_in_the_react_ui(servers, open_app, uid):
    srv = servers()
    user, job = f"{uid}-u", f"{uid}-report"
    page = await open_app(srv, user, watch=job)
    await expect(page.locator("#connection")).to_have_attribute("data-shared", "true")
    await publish(srv, job, user, "queued")
    await expect_watched(page, "queued", 0)
    await publish(srv, job, user, "processing", progress=40, currentOperation="Page 2/5")
    await expect_watched(page, "processing", 40)
    await expect_job(page, job, "processing", 40)
    # Another user's job, then one of this user's: once that one shows, the first would have.
    await publish(srv, f"{uid}-strangers", f"{uid}-stranger", "processing", progress=7)
    await publish(srv, f"{uid}-other", user, "processing", progress=5)
    await expect_job(page, f"{uid}-other", "processing", 5)
    await expect(page.locator(f'#jobs li[data-job="{uid}-strangers"]')).to_have_count(0)
    await publish(srv, job, user, "completed", result={"pages": 5})
    await expect_watched(page, "completed", 100)
    await expect(page.locator("#watched")).to_have_attribute("data-done", "true")
    await expect_job(page, job, "completed", 100)
    await expect(page.locator("#jobs")).to_have_attribute("data-count", "2")
    assert await seen(page, job, 3) == [1, 2, 3]
    # Rendered again with new options objects and token functions: the same single client.
    await page.locator("#rerender").click()
    await expect(page.locator("#rerender")).to_have_attribute("data-renders", "2", timeout=T)
    await expect_connection(page, "open", "websocket")
    assert await page.evaluate("window.jobwireClients") == 1
    assert await connections(srv, "websocket") == 1
    # The provider unmounted: its connection closes (the SharedWorker's last tab is gone).
    await page.locator("#unmount").click()
    await expect(page.locator("#connection")).to_have_count(0, timeout=T)
    await wait_for_sessions(srv, "websocket", 0)


@pytest.mark.parametrize(("server_transports", "page_transports"),
                         [("sse,longpoll,poll", None), ("websocket,sse,longpoll,poll", "sse")],
                         ids=["websocket-off-on-the-server", "sse-chosen-by-the-page"])
async def test_falls_back_to_sse(servers, open_app, uid, server_transports, page_transports):
    srv = servers(transports=server_transports)
    user, job = f"{uid}-u", f"{uid}-j"
    query = {"transports": page_transports} if page_transports else {}
    page = await open_app(srv, user, transport="sse", watch=job, **query)
    await wait_for_sessions(srv, "sse", 1)
    await publish(srv, job, user, "queued")
    await publish(srv, job, user, "processing", progress=30)
    await expect_watched(page, "processing", 30)
    await publish(srv, job, user, "completed")
    await expect_watched(page, "completed", 100)
    assert await seen(page, job, 3) == [1, 2, 3]
    assert await connections(srv, "websocket") == 0


async def test_reconnects_across_a_restart_without_missing_or_repeating_events(
        redis_server, servers, open_app, uid):
    # Redis keeps the job and its history while the server is away; the page is not shared
    # (one in-page connection), so the server's count is this page's alone.
    srv = servers(redis_url=redis_server.url)
    user, job = f"{uid}-u", f"{uid}-j"
    page = await open_app(srv, user, watch=job, shared="false")
    await expect(page.locator("#connection")).to_have_attribute("data-shared", "false")
    await publish(srv, job, user, "queued")
    await publish(srv, job, user, "processing", progress=20)
    await expect_watched(page, "processing", 20)

    await asyncio.to_thread(srv.stop)  # SIGTERM: the WebSocket is closed with 1012
    await expect_connection(page, "reconnecting")
    srv2 = servers(secret=srv.secret, port=srv.port, redis_url=redis_server.url)
    # Published at once: replayed from the page's cursor if it is still backing off, else live.
    await publish(srv2, job, user, "processing", progress=60)
    await expect_connection(page, "open", "websocket")
    await expect_watched(page, "processing", 60)
    await publish(srv2, job, user, "completed")
    await expect_watched(page, "completed", 100)
    assert await seen(page, job, 4) == [1, 2, 3, 4]
    await wait_for_sessions(srv2, "websocket", 1)
    assert await page.evaluate("window.jobwireClients") == 1
