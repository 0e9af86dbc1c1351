"""jobwire in a Django project (examples/django_celery): real uvicorn serving the ASGI router,
a real Celery worker, a private redis-server, Django's own login; the browser's part is
played by httpx and websockets with the session cookie a real login set.

This process also sets Django up on the same SQLite file (users are created, sessions aged
and the template tags rendered here), with the example's settings."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import orjson
import pytest
import websockets

from jobwire.tokens import Tokens
from tests.conftest import (
    WAIT,
    Client,
    Server,
    eventually,
    free_port,
    start_redis,
    start_server,
)

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "django_celery"
PASSWORD = "a-test-password-1"


@dataclass
class Site:
    url: str
    secret: str
    users: dict[str, Any] = field(default_factory=dict)
    passwords: dict[str, str] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)

    @property
    def ws_url(self) -> str:
        return self.url.replace("http", "ws", 1) + "/realtime/ws/jobs"

    def uid(self, name: str) -> str:
        return str(self.users[name].pk)

    def publisher(self) -> dict[str, str]:
        return {"Authorization": "Bearer " + Tokens(self.secret).mint("pub", "publisher")}


def _setup_django(env: dict[str, str]) -> None:
    """The example's settings in this process, on the site's database, read from `env`,
    which is then taken back so that servers other tests start do not inherit it."""
    import django
    from django.conf import settings

    if settings.configured:
        raise RuntimeError("Django is already set up in this process")
    saved = dict(os.environ)
    os.environ.update(env)
    sys.path.insert(0, str(EXAMPLE))
    try:
        django.setup()
    finally:
        os.environ.clear()
        os.environ.update(saved)


@contextlib.contextmanager
def run_example(*args: str, env: dict[str, str] | None = None) -> Iterator[str]:
    """examples/django_celery/run.py `args` on a free port, as its README runs it: its URL once
    it serves (bounded). Stopped as by Ctrl+C, which stops its processes by their PIDs."""
    port = free_port()
    run = subprocess.Popen([sys.executable, str(EXAMPLE / "run.py"), "--port", str(port), *args],
                           cwd=ROOT, env={**os.environ, **(env or {})},
                           stdout=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 6 * WAIT  # migrations, a worker and uvicorn start
        while not _ready(url):
            if time.monotonic() > deadline or run.poll() is not None:
                raise RuntimeError("the example did not start")
            time.sleep(0.1)  # another process starting: nothing to await but its port
        yield url
    finally:
        # SIGTERM, which run.py takes as Ctrl+C; killed if it does not exit in time.
        Server.stop(SimpleNamespace(process=run))  # type: ignore[arg-type]


def _ready(url: str) -> bool:
    try:
        return httpx.get(url + "/realtime/readyz", timeout=1).status_code == 200
    except httpx.TransportError:
        return False


@pytest.fixture(scope="module")
def site() -> Iterator[Site]:
    """The example, started by its own command on a private redis-server."""
    redis_server = start_redis()
    data = Path(tempfile.mkdtemp(prefix="jobwire-django-test-"))
    secret = secrets.token_urlsafe(32)
    env = {"DJANGO_DB": str(data / "db.sqlite3"), "DJANGO_SETTINGS_MODULE": "project.settings",
           "DJANGO_SECRET_KEY": secrets.token_urlsafe(40), "JOBWIRE_SECRET": secret,
           "REDIS_URL": redis_server.url, "JOBWIRE_AUTH_TIMEOUT_SECONDS": "1"}
    integration = None
    try:
        with run_example("--redis-url", redis_server.url, "--data", str(data), "--pages", "3",
                         "--delay", "0.3", env=env) as url:
            _setup_django(env)
            from crawler.management.commands.demo_setup import USERS
            from django.contrib.auth import get_user_model
            from project.celery import integration  # installed on import, as in the site

            model = get_user_model()
            users = {name: model.objects.get(username=name) for name in USERS}
            passwords = dict(USERS)
            for name, staff in (("carol", True), ("dave", False)):
                users[name] = model.objects.create_user(name, password=PASSWORD, is_staff=staff)
                passwords[name] = PASSWORD
            yield Site(url, secret, users, passwords, env)
    finally:
        if integration is not None:
            integration.uninstall()
        redis_server.stop()
        shutil.rmtree(data, ignore_errors=True)


@contextlib.asynccontextmanager
async def login(site: Site, name: str) -> AsyncIterator[httpx.AsyncClient]:
    """Sign in with Django's login form; the client keeps the session cookie."""
    async with httpx.AsyncClient(base_url=site.url, timeout=WAIT) as http:
        form = await http.get("/accounts/login/")
        assert form.status_code == 200
        answer = await http.post("/accounts/login/", data={
            "username": name, "password": site.passwords[name],
            "csrfmiddlewaretoken": http.cookies["csrftoken"]})
        assert answer.status_code == 302, answer.text
        assert http.cookies.get("sessionid")
        yield http


async def session_of(site: Site, name: str) -> str:
    """A fresh session cookie of `name`."""
    async with login(site, name) as http:
        return http.cookies["sessionid"]


async def ws_connect(site: Site, session: str | None, origin: str | None = None) -> Client:
    headers = {"Origin": origin or site.url}
    if session:
        headers["Cookie"] = f"sessionid={session}"
    ws = await websockets.connect(site.ws_url, additional_headers=headers, open_timeout=WAIT)
    return Client(ws)


async def publish(site: Site, job_id: str, user: str, status: str = "processing",
                  **fields: Any) -> None:
    async with httpx.AsyncClient(base_url=site.url, timeout=WAIT) as http:
        answer = await http.post(f"/realtime/api/v2/jobs/{job_id}/status",
                                 headers=site.publisher(),
                                 json={"userId": user, "status": status, **fields})
    assert answer.status_code == 202, answer.text


# --- the token view and the template tags -------------------------------------------------

async def test_token_view_mints_for_the_user_staff_as_admin_anonymous_refused(site):
    async with httpx.AsyncClient(base_url=site.url, timeout=WAIT) as anonymous:
        refused = await anonymous.get("/jobwire/token/")
    assert refused.status_code == 401
    assert refused.json()["error"]["code"] == "unauthorized"

    tokens = Tokens(site.secret)
    for name, role in (("alice", "user"), ("carol", "admin")):
        async with login(site, name) as http:
            answer = await http.get("/jobwire/token/")
        assert answer.status_code == 200
        assert "no-cache" in answer.headers["cache-control"]
        body = answer.json()
        assert body["userId"] == site.uid(name) and body["role"] == role
        principal = tokens.verify(body["token"])
        assert (principal.user_id, principal.role) == (site.uid(name), role)
        assert principal.expires_at == body["expiresAt"]
        assert 290 <= body["expiresAt"] - time.time() <= 300  # JOBWIRE_TOKEN_TTL


def test_template_tags_load_the_library_and_escape_the_job_id(site):
    from django.template import Context, Template
    from django.test import override_settings

    nasty = '"><script>alert(1)</script>'
    html = Template("{% load jobwire %}{% jobwire_script %}{% jobwire_progress job %}").render(
        Context({"job": nasty}))
    assert html.startswith('<script src="/realtime/static/jobwire.js"></script>')
    assert 'data-jobwire-job="&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;"' in html
    assert "<script>alert(1)" not in html
    assert "Jobwire.connect({jobIds: jobIds()})" in html  # cookie mode: no token
    with override_settings(JOBWIRE_SCRIPT_URL="/cdn/jobwire.js"):
        assert Template("{% load jobwire %}{% jobwire_script %}").render(Context()) == \
            '<script src="/cdn/jobwire.js"></script>'
    with override_settings(JOBWIRE_PREFIX="/live/"):
        assert "/live/static/jobwire.js" in Template(
            "{% load jobwire %}{% jobwire_script %}").render(Context())


# --- signed in by the Django session cookie, on every transport ----------------------------

async def test_session_cookie_signs_in_on_every_transport_and_isolates_users(site):
    alice, bob = site.uid("alice"), site.uid("bob")
    job = "dj-" + secrets.token_hex(4)
    await publish(site, job, alice, progress=40, currentOperation="page 2/5")
    async with login(site, "alice") as http, login(site, "bob") as other:
        session = http.cookies["sessionid"]

        # WebSocket: the handshake's cookie signs it in at once, no in-band auth.
        client = await ws_connect(site, session)
        hello = await client.recv()
        assert hello["type"] == "authenticated" and hello["userId"] == alice
        assert hello["role"] == "user"
        subscribed = await client.subscribe(jobIds=[job])
        assert [j["progress"] for j in subscribed["jobs"]] == [40]
        await publish(site, job, alice, progress=60)
        live = await client.recv_until(lambda m: m.get("progress") == 60)
        assert live[-1]["jobId"] == job

        # SSE: the stream opens with the snapshot.
        async with http.stream("GET", "/realtime/api/v2/jobs/stream",
                               params={"jobIds": job}, headers={"Origin": site.url}) as stream:
            assert stream.status_code == 200
            first = await _first_sse_data(stream, "subscribed")
        assert first["jobs"][0]["jobId"] == job and first["jobs"][0]["userId"] == alice

        # Long-poll: the current state at once without last_seen, then a live event.
        polled = (await http.get("/realtime/api/v2/jobs/poll", params={"jobIds": job})).json()
        assert [j["progress"] for j in polled["jobs"]] == [60]
        waiting = asyncio.create_task(http.get("/realtime/api/v2/jobs/poll", params={
            "jobIds": job, "last_seen": polled["cursor"], "timeout": 3 * WAIT}))
        await publish(site, job, alice, "completed", result={"pages": 5})
        events = (await waiting).json()["events"]
        assert [e["status"] for e in events] == ["completed"]

        # Poll.
        state = await http.get(f"/realtime/api/v2/jobs/{job}")
        assert state.status_code == 200 and state.json()["status"] == "completed"

        # Bob, signed in too, sees nothing of it on any transport.
        assert (await other.get(f"/realtime/api/v2/jobs/{job}")).status_code == 404
        assert (await other.get("/realtime/api/v2/jobs/status")).json()["jobs"] == []
        spy = await ws_connect(site, other.cookies["sessionid"])
        assert (await spy.recv())["userId"] == bob
        await spy.send({"type": "subscribe", "jobIds": [job]})
        answers = await spy.recv_until(lambda m: m["type"] == "subscribed")
        refused = answers[0]
        assert (refused["type"], refused["code"], refused["jobId"]) == ("error", "forbidden", job)
        assert answers[-1]["jobIds"] == []
        everything = await spy.subscribe(all=True)
        assert everything["all"] is True and everything["jobs"] == []
        await spy.close()
        await client.close()

    # No cookie: nobody.
    async with httpx.AsyncClient(base_url=site.url, timeout=WAIT) as anonymous:
        assert (await anonymous.get(f"/realtime/api/v2/jobs/{job}")).status_code == 401


async def _first_sse_data(stream: httpx.Response, kind: str) -> dict[str, Any]:
    async with asyncio.timeout(WAIT):
        async for line in stream.aiter_lines():
            if line.startswith("data: "):
                message = orjson.loads(line[6:])
                if message.get("type") == kind:
                    return message
    raise AssertionError(f"the stream ended before a {kind} message")


async def test_staff_session_is_admin_and_sees_every_job(site):
    job = "dj-" + secrets.token_hex(4)
    await publish(site, job, site.uid("alice"))
    async with login(site, "carol") as http:
        client = await ws_connect(site, http.cookies["sessionid"])
        hello = await client.recv()
        assert (hello["userId"], hello["role"]) == (site.uid("carol"), "admin")
        assert job in [j["jobId"] for j in (await client.subscribe(jobIds=[job]))["jobs"]]
        await client.close()
        # Admin or not, a session only reads: publishing takes a publisher token.
        answer = await http.post(f"/realtime/api/v2/jobs/{job}/status",
                                 json={"userId": site.uid("alice"), "status": "cancelled"})
        assert answer.status_code == 401


async def test_cookie_from_a_foreign_origin_is_refused(site):
    async with login(site, "alice") as http:
        client = await ws_connect(site, http.cookies["sessionid"], origin="https://evil.example")
        assert await client.expect_close() == 1008
        answer = await http.get("/realtime/api/v2/jobs/stream",
                                headers={"Origin": "https://evil.example"})
        assert answer.status_code == 403
        # The same cookie from the site's own pages works.
        client = await ws_connect(site, http.cookies["sessionid"])
        assert (await client.recv())["type"] == "authenticated"
        await client.close()


# --- sessions that end ----------------------------------------------------------------------

async def test_logged_out_expired_and_password_changed_sessions_are_refused(site):
    from asgiref.sync import sync_to_async
    from django.contrib.sessions.models import Session
    from django.utils import timezone

    def expire(session: str, seconds: float) -> Any:
        return sync_to_async(Session.objects.filter(session_key=session).update)(
            expire_date=timezone.now() + timedelta(seconds=seconds))

    # Signed out with Django's logout view.
    async with login(site, "alice") as http:
        logged_out = http.cookies["sessionid"]
        assert (await http.get("/realtime/api/v2/jobs/status")).status_code == 200
        answer = await http.post("/accounts/logout/",
                                 data={"csrfmiddlewaretoken": http.cookies["csrftoken"]})
        assert answer.status_code == 302
    # Expired: the session row says so.
    expired = await session_of(site, "alice")
    await expire(expired, -1)
    # A password change ends the sessions signed in before it (the session auth hash).
    changed = await session_of(site, "dave")
    dave = site.users["dave"]
    dave.set_password("another-password-2")
    await sync_to_async(dave.save)()
    # An inactive user is refused, whatever the session says.
    inactive = await session_of(site, "bob")
    bob = site.users["bob"]
    bob.is_active = False
    await sync_to_async(bob.save)()
    # The session's expiry ends an open WebSocket with 4401.
    ending = await session_of(site, "alice")
    await expire(ending, 1.5)
    client = await ws_connect(site, ending)
    assert (await client.recv())["type"] == "authenticated"
    try:
        # Each refusal waits out the 1 s auth timeout on its WebSocket: all at once.
        await asyncio.gather(*(_refused(site, s) for s in (logged_out, expired, changed,
                                                             inactive)))
        assert await client.expect_close(timeout=3 * WAIT) == 4401
    finally:
        bob.is_active = True
        await sync_to_async(bob.save)()


async def _refused(site: Site, session: str) -> None:
    """A session cookie opens neither a poll nor a WebSocket."""
    async with httpx.AsyncClient(base_url=site.url, timeout=WAIT,
                                 cookies={"sessionid": session}) as http:
        assert (await http.get("/realtime/api/v2/jobs/status")).status_code == 401
        assert (await http.get("/realtime/api/v2/jobs/poll")).status_code == 401
    client = await ws_connect(site, session)
    assert await client.expect_close(timeout=3 * WAIT) == 4401  # after the 1 s auth timeout


# --- Celery: the task a view starts belongs to request.user ---------------------------------

async def test_task_started_from_a_view_belongs_to_the_signed_in_user(site):
    alice = site.uid("alice")
    async with login(site, "alice") as http, login(site, "bob") as other:
        client = await ws_connect(site, http.cookies["sessionid"])
        assert (await client.recv())["userId"] == alice
        await client.subscribe(all=True)
        started = await http.post("/", data={"site": "https://example.org/",
                                              "csrfmiddlewaretoken": http.cookies["csrftoken"]})
        assert started.status_code == 302
        job = re.fullmatch(r"/jobs/([0-9a-f-]+)/", started.headers["location"]).group(1)
        # The worker may still be starting: bounded all the same.
        seen = await client.recv_until(
            lambda m: m.get("jobId") == job and m.get("type") == "job_completed",
            timeout=6 * WAIT)
        events = [m for m in seen if m.get("jobId") == job]
        assert {e["userId"] for e in events} == {alice}
        assert [e["status"] for e in events][:2] == ["queued", "processing"]
        assert events[-1]["status"] == "completed"
        assert events[-1]["result"] == {"site": "https://example.org/", "pages": 3, "errors": 0}
        # The job page renders the live element for it; bob may not read the job.
        page = await http.get(f"/jobs/{job}/")
        assert f'data-jobwire-job="{job}"' in page.text
        assert (await other.get(f"/realtime/api/v2/jobs/{job}")).status_code == 404
        await client.close()


async def test_explicit_owner_wins_over_the_request_user(site):
    """Through the Celery signals in this process: `owner()` as the middleware sets it, and
    a task that names its owner."""
    from crawler.tasks import crawl

    from jobwire.integrations import celery as jobwire_celery

    alice, bob = site.uid("alice"), site.uid("bob")
    with jobwire_celery.owner(lambda: alice):
        mine = crawl.apply_async(("https://a.example/",), {"pages": 1, "delay": 0})
        named = crawl.apply_async(("https://b.example/",), {"pages": 1, "delay": 0},
                                  headers={"user_id": bob})
    admin = {"Authorization": "Bearer " + Tokens(site.secret).mint("root", "admin")}
    async with httpx.AsyncClient(base_url=site.url, timeout=WAIT, headers=admin) as http:
        async def completed() -> bool:
            states = (await http.get("/realtime/api/v2/jobs/status",
                                     params={"jobIds": f"{mine.id},{named.id}"})).json()["jobs"]
            return len(states) == 2 and all(s["status"] == "completed" for s in states)

        await eventually(completed, timeout=6 * WAIT, interval=0.05)
        owners = {s["jobId"]: s["userId"] for s in (await http.get(
            "/realtime/api/v2/jobs/status",
            params={"jobIds": f"{mine.id},{named.id}"})).json()["jobs"]}
    assert owners == {mine.id: alice, named.id: bob}


async def test_jobwire_serve_beside_the_site_signs_in_with_its_sessions(site):
    """The hook outside the Django process: `jobwire serve` with JOBWIRE_AUTHENTICATE, the
    site's settings and database, and the same Redis."""
    env = {**site.env, "PYTHONPATH": os.pathsep.join([str(EXAMPLE), str(ROOT)])}
    server = start_server(secret=site.secret, redis_url=env["REDIS_URL"], env=env,
                          authenticate="jobwire.integrations.django.auth:authenticate")
    try:
        job = "dj-" + secrets.token_hex(4)
        await publish(site, job, site.uid("alice"), progress=10)  # through the site's jobwire
        session = await session_of(site, "alice")
        async with httpx.AsyncClient(base_url=server.url, timeout=WAIT,
                                     cookies={"sessionid": session}) as http:
            answer = await http.get(f"/api/v2/jobs/{job}")
            assert answer.status_code == 200 and answer.json()["progress"] == 10
            http.cookies.clear()
            assert (await http.get(f"/api/v2/jobs/{job}")).status_code == 401
    finally:
        server.stop()


async def test_router_serves_jobwire_under_its_prefix_only(site):
    async with httpx.AsyncClient(base_url=site.url, timeout=WAIT) as http:
        bare = await http.get("/realtime?x=1")
        assert (bare.status_code, bare.headers["location"]) == (307, "/realtime/?x=1")
        script = await http.get("/realtime/static/jobwire.js")
        assert script.status_code == 200 and "Jobwire" in script.text
        assert (await http.get("/realtimeX/healthz")).status_code == 404  # Django's
    with pytest.raises(websockets.InvalidStatus) as refused:  # Django has no WebSockets
        await websockets.connect(site.url.replace("http", "ws", 1) + "/ws/jobs",
                                 open_timeout=WAIT)
    assert refused.value.response.status_code == 403


async def test_owner_from_request_user_in_a_sync_request(site):
    """CeleryOwnerMiddleware's sync path (WSGI, Django's test client in this process): the
    user is looked up when the task is sent, and the real worker reports it for that user."""
    from asgiref.sync import sync_to_async
    from django.test import Client as DjangoClient

    browser = DjangoClient(HTTP_HOST="127.0.0.1")
    await sync_to_async(browser.force_login)(site.users["alice"])
    answer = await sync_to_async(browser.post)("/", {"site": "https://sync.example/"})
    assert answer.status_code == 302
    job = answer["Location"].strip("/").rsplit("/", 1)[-1]
    admin = {"Authorization": "Bearer " + Tokens(site.secret).mint("root", "admin")}
    async with httpx.AsyncClient(base_url=site.url, timeout=WAIT, headers=admin) as http:
        async def completed() -> dict[str, Any] | None:
            state = await http.get(f"/realtime/api/v2/jobs/{job}")
            return state.json() if state.status_code == 200 and \
                state.json()["status"] == "completed" else None

        await eventually(completed, timeout=6 * WAIT, interval=0.05)
        assert (await completed())["userId"] == site.uid("alice")
