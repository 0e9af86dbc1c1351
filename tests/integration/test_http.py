"""Publishing and polling over HTTP, health and metrics, against a real server."""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import WAIT, connect, metric, publish, start_server


@pytest.fixture
async def http(server):
    async with httpx.AsyncClient(base_url=server.url, timeout=WAIT) as client:
        yield client


def pub(server):
    return server.headers("worker", "publisher")


async def test_publish_one_answers_202_with_the_event(http, server, uid):
    r = await http.post(f"/api/v2/jobs/{uid}/status", headers=pub(server),
                        json={"userId": "u1", "status": "queued",
                              "timestamp": "2025-09-11T10:15:30Z"})
    assert r.status_code == 202
    body = r.json()
    assert body["jobId"] == uid and body["seq"] == 1 and not body["id"].isdigit()
    # The same update again (only the timestamp differs) is a duplicate: same event.
    r = await http.post(f"/api/v2/jobs/{uid}/status", headers=pub(server),
                        json={"userId": "u1", "status": "queued"})
    assert r.status_code == 202 and r.json() == body


async def test_admin_may_publish_users_may_not(http, server, uid):
    body = {"userId": "u1", "status": "queued"}
    r = await http.post(f"/api/v2/jobs/{uid}/status", json=body,
                        headers=server.headers("root", "admin"))
    assert r.status_code == 202
    r = await http.post(f"/api/v2/jobs/{uid}x/status", json=body, headers=server.headers("u1"))
    assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden"
    r = await http.post(f"/api/v2/jobs/{uid}x/status", json=body)
    assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"
    r = await http.post(f"/api/v2/jobs/{uid}x/status", json=body,
                        headers={"Authorization": "Bearer nope"})
    assert r.status_code == 401


@pytest.mark.parametrize("body, status, field", [
    ({"userId": "u1", "status": "running"}, 422, "status"),
    ({"userId": "u1", "status": "processing", "progress": 101}, 422, "progress"),
    ({"userId": "u1", "status": "processing", "progress": "45"}, 422, "progress"),
    ({"userId": "u 1", "status": "queued"}, 422, "userId"),
    ({"status": "queued"}, 422, "userId"),
    ({"userId": "u1", "status": "queued", "jobId": "other"}, 422, "jobId"),
    ({"userId": "u1", "status": "queued", "timestamp": "yesterday"}, 422, "timestamp"),
    ({"userId": "u1", "status": "queued", "timestamp": "2025-09-11"}, 422, "timestamp"),
    ([1, 2], 422, None),
])
async def test_invalid_updates_are_refused_and_change_nothing(http, server, uid, body, status,
                                                               field):
    r = await http.post(f"/api/v2/jobs/{uid}/status", headers=pub(server), json=body)
    assert r.status_code == status
    err = r.json()["error"]
    assert err["code"] == "invalid_update" and err.get("field") == field and err["message"]
    poll = await http.get(f"/api/v2/jobs/{uid}", headers=server.headers("root", "admin"))
    assert poll.status_code == 404


async def test_unparseable_and_oversized_bodies(http, server, uid):
    r = await http.post(f"/api/v2/jobs/{uid}/status", headers=pub(server), content=b"{nope")
    assert r.status_code == 400 and r.json()["error"]["code"] == "bad_request"
    huge = {"userId": "u1", "status": "queued", "result": "x" * 5000}
    r = await http.post(f"/api/v2/jobs/{uid}/status", headers=pub(server), json=huge)
    assert r.status_code == 413 and r.json()["error"]["code"] == "payload_too_large"
    bad_id = "x" * 129
    r = await http.post(f"/api/v2/jobs/{bad_id}/status", headers=pub(server),
                        json={"userId": "u1", "status": "queued"})
    assert r.status_code == 422 and r.json()["error"]["field"] == "jobId"
    poll = await http.get(f"/api/v2/jobs/{uid}", headers=server.headers("root", "admin"))
    assert poll.status_code == 404  # refused, so nothing was made


async def test_ownership_and_lifecycle_conflicts_answer_409(http, server, uid):
    url = f"/api/v2/jobs/{uid}/status"
    await http.post(url, headers=pub(server), json={"userId": "alice", "status": "processing",
                                                    "progress": 50})
    cases = [
        ({"userId": "mallory", "status": "processing", "progress": 60}, "owner_mismatch"),
        ({"userId": "alice", "status": "queued"}, "lifecycle_violation"),
        ({"userId": "alice", "status": "processing", "progress": 10}, "progress_regression"),
    ]
    for body, code in cases:
        r = await http.post(url, headers=pub(server), json=body)
        assert r.status_code == 409 and r.json()["error"]["code"] == code
    await http.post(url, headers=pub(server), json={"userId": "alice", "status": "failed",
                                                    "error": "boom", "eventId": "final"})
    r = await http.post(url, headers=pub(server), json={"userId": "alice", "status": "completed"})
    assert r.status_code == 409 and r.json()["error"]["code"] == "job_finished"
    # A retry of a known eventId answers the original event, even after the end.
    r = await http.post(url, headers=pub(server), json={"userId": "alice", "status": "failed",
                                                        "error": "boom", "eventId": "final"})
    assert r.status_code == 202 and r.json()["seq"] == 2
    state = (await http.get(f"/api/v2/jobs/{uid}", headers=server.headers("alice"))).json()
    assert (state["status"], state["seq"], state["error"]) == ("failed", 2, "boom")


async def test_batch_reports_each_item_and_bad_items_do_not_hold_back_good_ones(http, server,
                                                                                 uid):
    batch = [
        {"jobId": f"{uid}-1", "userId": "u1", "status": "queued"},
        {"jobId": f"{uid}-2", "userId": "u1", "status": "exploded"},
        {"jobId": f"{uid}-1", "userId": "u2", "status": "processing"},
        "not an object",
        {"jobId": f"{uid}-3", "userId": "u1", "status": "completed"},
    ]
    r = await http.post("/api/v2/jobs/status", headers=pub(server), json=batch)
    assert r.status_code == 202
    results = r.json()["results"]
    assert results[0]["seq"] == 1 and results[4]["seq"] == 1
    assert (results[1]["status"], results[1]["jobId"]) == (422, f"{uid}-2")
    assert results[1]["error"]["field"] == "status"
    assert (results[2]["status"], results[2]["error"]["code"]) == (409, "owner_mismatch")
    assert results[3] == {"jobId": None, "status": 422, "error": {
        "code": "invalid_update", "message": "an update must be a JSON object"}}


async def test_batch_must_be_an_array_of_bounded_size(http, server):
    r = await http.post("/api/v2/jobs/status", headers=pub(server), json={"jobId": "x"})
    assert r.status_code == 422
    r = await http.post("/api/v2/jobs/status", headers=pub(server), content=b"[")
    assert r.status_code == 400
    r = await http.post("/api/v2/jobs/status", headers=server.headers("u1"), json=[])
    assert r.status_code == 403


async def test_polling_with_etag_and_retry_after(http, server, uid):
    user = f"{uid}-u"
    await http.post(f"/api/v2/jobs/{uid}-a/status", headers=pub(server),
                    json={"userId": user, "status": "processing", "progress": 5})
    await http.post(f"/api/v2/jobs/{uid}-b/status", headers=pub(server),
                    json={"userId": user, "status": "completed"})
    headers = server.headers(user)
    r = await http.get("/api/v2/jobs/status", headers=headers)
    assert r.status_code == 200
    body = r.json()
    assert sorted(j["jobId"] for j in body["jobs"]) == [f"{uid}-a", f"{uid}-b"]
    assert body["cursor"] == max((j["id"] for j in body["jobs"]),
                                 key=lambda i: tuple(map(int, i.split("-"))))
    assert r.headers["retry-after"] == "1"  # a job is moving right now
    etag = r.headers["etag"]
    r2 = await http.get("/api/v2/jobs/status", headers={**headers, "If-None-Match": etag})
    assert r2.status_code == 304 and r2.headers["etag"] == etag and r2.content == b""
    await http.post(f"/api/v2/jobs/{uid}-a/status", headers=pub(server),
                    json={"userId": user, "status": "completed"})
    r3 = await http.get("/api/v2/jobs/status", headers={**headers, "If-None-Match": etag})
    assert r3.status_code == 200 and r3.headers["etag"] != etag
    assert r3.headers["retry-after"] == "30"  # nothing running: poll rarely
    only = await http.get(f"/api/v2/jobs/status?jobIds={uid}-b", headers=headers)
    assert [j["jobId"] for j in only.json()["jobs"]] == [f"{uid}-b"]


async def test_polling_isolation_and_errors(http, server, uid):
    await http.post(f"/api/v2/jobs/{uid}/status", headers=pub(server),
                    json={"userId": "alice", "status": "queued"})
    r = await http.get(f"/api/v2/jobs/{uid}", headers=server.headers("mallory"))
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    r = await http.get(f"/api/v2/jobs/{uid}-missing", headers=server.headers("alice"))
    assert r.status_code == 404
    r = await http.get(f"/api/v2/jobs/status?jobIds={uid}", headers=server.headers("mallory"))
    assert r.json()["jobs"] == []
    r = await http.get("/api/v2/jobs/status?userId=alice", headers=server.headers("mallory"))
    assert r.status_code == 403
    r = await http.get(f"/api/v2/jobs/{uid}", headers=server.headers("root", "admin"))
    assert r.status_code == 200 and r.json()["userId"] == "alice"
    r = await http.get(f"/api/v2/jobs/{uid}", headers=pub(server))
    assert r.status_code == 403
    r = await http.get(f"/api/v2/jobs/{uid}")
    assert r.status_code == 401
    r = await http.get("/api/v2/jobs/status?jobIds=a,b%20c", headers=server.headers("alice"))
    assert r.status_code == 400 and r.json()["error"]["field"] == "jobIds"
    # Token in the query and in the cookie are accepted too.
    r = await http.get(f"/api/v2/jobs/{uid}?token={server.token('alice')}")
    assert r.status_code == 200
    http.cookies.set("jobwire_token", server.token("alice"))
    r = await http.get(f"/api/v2/jobs/{uid}")
    assert r.status_code == 200


async def test_health_ready_and_metrics(http, server):
    assert (await http.get("/healthz")).json() == {"status": "ok", "websocket": "fast"}
    assert (await http.get("/readyz")).status_code == 200
    text = (await http.get("/metrics")).text
    assert "jobwire_events_published_total" in text and "jobwire_broker_ready 1.0" in text


async def test_index_page_is_served(http):
    r = await http.get("/")
    assert r.status_code == 200 and "dashboard.js" in r.text
    js = await http.get("/static/jobwire.js")
    assert js.status_code == 200 and "javascript" in js.headers["content-type"]


async def test_cors_is_closed_by_default_and_open_to_configured_origins(http, server):
    preflight = {"Origin": "https://app.example", "Access-Control-Request-Method": "GET"}
    r = await http.options("/api/v2/jobs/status", headers=preflight)
    assert "access-control-allow-origin" not in r.headers
    srv = start_server(allowed_origins="https://app.example")
    try:
        async with httpx.AsyncClient(base_url=srv.url, timeout=WAIT) as client:
            r = await client.options("/api/v2/jobs/status", headers=preflight)
            assert r.headers["access-control-allow-origin"] == "https://app.example"
            r = await client.options("/api/v2/jobs/status",
                                     headers={**preflight, "Origin": "https://evil.example"})
            assert "access-control-allow-origin" not in r.headers
    finally:
        srv.stop()


async def test_unknown_paths_and_methods_answer_json_errors(http):
    r = await http.get("/api/v2/nothing-here")
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    r = await http.delete("/api/v2/jobs/status")
    assert r.status_code == 405 and r.json()["error"]["code"] == "method_not_allowed"


async def test_metrics_count_what_happens(uid):
    srv = start_server()  # its own server: every count starts at zero, so each is exact
    try:
        client = await connect(srv, srv.token(f"{uid}-m"))
        await client.subscribe(all=True)
        await publish(srv, f"{uid}-m1", f"{uid}-m", "queued")
        await client.recv_until(lambda m: "jobId" in m)
        expected = [
            ("jobwire_connections", {"transport": "websocket"}, 1),
            ("jobwire_subscriptions", {}, 1), ("jobwire_events_published_total", {}, 1),
            ("jobwire_events_delivered_total", {}, 1),
            ("jobwire_delivery_latency_seconds_count", {}, 1),
            ("jobwire_delivery_latency_seconds_bucket", {"le": "+Inf"}, 1),
            ("jobwire_events_shed_total", {}, 0), ("jobwire_slow_disconnects_total", {}, 0),
            ("jobwire_rate_limited_total", {}, 0)]
        for name, labels, value in expected:
            assert await metric(srv, name, **labels) == value, name
        await client.close()
    finally:
        srv.stop()
