"""The Django example (examples/django_celery) as the Django tests use it: started by its own
command with a real uvicorn serving the ASGI router, a real Celery worker and a private
redis-server; signing in with Django's own login; the browser's part played by httpx and
websockets with the session cookie a real login set.

The test process also sets Django up on the same SQLite file (users are created, sessions
aged and the template tags rendered there), with the example's settings: once per process,
so the `site` fixture (conftest.py here) starts it once for the package."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import websockets

from jobwire.tokens import Tokens
from tests.conftest import (
    WAIT,
    Client,
    free_port,
    start_redis,
    stop_process,
)

ROOT = Path(__file__).resolve().parents[3]
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
        stop_process(run)


def _ready(url: str) -> bool:
    try:
        return httpx.get(url + "/realtime/readyz", timeout=1).status_code == 200
    except httpx.TransportError:
        return False



@contextlib.contextmanager
def started_site() -> Iterator[Site]:
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
