"""Arbitrary input over real sockets never crashes a connection or the server, and invalid
input changes nothing."""

from __future__ import annotations

import json
import secrets

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import WAIT, connect, metric, start_server


@pytest.fixture(scope="module")
def server():
    """A server of this module's own: "nothing was published" is read off its event counter,
    which another module's job going stalled on a shared server would move."""
    srv = start_server(heartbeat_seconds=30, auth_timeout_seconds=1, max_message_bytes=4096)
    yield srv
    srv.stop()

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=12), inner,
                                                                 max_size=6),
    max_leaves=20)
near_messages = st.fixed_dictionaries(
    {"type": st.sampled_from(["auth", "subscribe", "unsubscribe", "ping", "nope"])},
    optional={"jobIds": json_values, "all": json_values, "userId": json_values,
              "lastEventId": json_values, "token": json_values})
FUZZ = settings(max_examples=60, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])


@FUZZ
@given(payload=st.one_of(st.binary(max_size=300), st.text(max_size=300),
                         json_values.map(json.dumps),
                         near_messages.map(json.dumps)))
async def test_websocket_survives_any_message(server, payload):
    client = await connect(server, server.token("fuzzer"))
    await client.send(payload)
    await client.send({"type": "ping"})
    # Whatever came first (an error, a subscribed, an unsubscribed, a pong), the connection
    # is alive and answers the ping.
    got = await client.recv_until(lambda m: m["type"] == "pong", timeout=WAIT)
    assert all(m["type"] in ("error", "subscribed", "unsubscribed", "authenticated", "pong")
               for m in got)
    await client.close()


@FUZZ
@given(body=st.one_of(st.binary(max_size=300), json_values.map(lambda v: json.dumps(v).encode())))
async def test_publish_endpoints_refuse_garbage_and_change_nothing(server, body):
    job = f"/api/v2/jobs/fuzz-{secrets.token_hex(6)}"  # a job that does not exist yet
    admin = server.headers("r", "admin")
    async with httpx.AsyncClient(base_url=server.url, timeout=WAIT) as http:
        assert (await http.get(job, headers=admin)).status_code == 404
        published = await metric(server, "jobwire_events_published_total")
        headers = server.headers("fuzz-worker", "publisher")
        one = await http.post(f"{job}/status", content=body, headers=headers)
        many = await http.post("/api/v2/jobs/status", content=body, headers=headers)
        assert one.status_code in (202, 400, 409, 413, 422)
        assert many.status_code in (202, 400, 413, 422)
        for r in (one, many):
            if r.status_code != 202:
                assert set(r.json()["error"]) >= {"code", "message"}
        acks = many.json()["results"] if many.status_code == 202 else []
        accepted = (one.status_code == 202) + sum("error" not in item for item in acks)
        if one.status_code != 202:
            assert (await http.get(job, headers=admin)).status_code == 404  # still no job
        if accepted == 0:  # every update refused: not one event went out
            assert await metric(server, "jobwire_events_published_total") == published
        assert (await http.get("/healthz")).status_code == 200
