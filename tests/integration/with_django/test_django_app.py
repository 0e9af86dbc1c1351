"""The Django app's parts a site uses directly: the token view, the template tags, and Celery
tasks started from a view belonging to request.user (a real worker runs them)."""

from __future__ import annotations

import re
import time
from typing import Any

import httpx

from jobwire.tokens import Tokens
from tests.conftest import (
    WAIT,
    eventually,
)
from tests.integration.with_django.site import (
    login,
    ws_connect,
)

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
