"""The security suite, run against every transport: bad tokens, cross-user probes, roles,
and cookie auth from a foreign origin."""

from __future__ import annotations

import base64
import json
import time

import httpx
import jwt
import orjson
import pytest
import websockets
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from httpx_sse import aconnect_sse

from tests.conftest import WAIT, Client, publish

TRANSPORTS = ["websocket", "sse", "longpoll", "poll"]


def _b64(obj: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()


def bad_tokens(server) -> dict[str, str]:
    future = int(time.time()) + 3600
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    return {
        "forged": jwt.encode({"sub": "alice", "exp": future}, "x" * 32, algorithm="HS256"),
        "expired": server.token("alice", ttl=-5),
        "alg_none": f"{_b64({'alg': 'none', 'typ': 'JWT'})}."
                    f"{_b64({'sub': 'alice', 'role': 'admin', 'exp': future})}.",
        "wrong_key_rs256": jwt.encode({"sub": "alice", "exp": future}, pem, algorithm="RS256"),
        "not_yet_valid": jwt.encode({"sub": "alice", "exp": future, "nbf": future - 60},
                                    server.secret, algorithm="HS256"),
        "no_exp": jwt.encode({"sub": "alice"}, server.secret, algorithm="HS256"),
        "bad_role": jwt.encode({"sub": "alice", "role": "root", "exp": future}, server.secret,
                               algorithm="HS256"),
        "garbage": "a.b.c",
    }


async def read(server, transport: str, token: str, **query) -> tuple[int, list[dict]]:
    """(status or close code, messages) of one short read on `transport`."""
    if transport == "websocket":
        ws = await websockets.connect(f"{server.ws_url}?token={token}", open_timeout=WAIT)
        client = Client(ws)
        try:
            first = await client.recv()
        except websockets.ConnectionClosed as exc:
            return exc.rcvd.code if exc.rcvd else 1006, []
        if first.get("type") != "authenticated":
            return 0, [first]
        await client.send({"type": "subscribe", **query})
        msgs = await client.recv_until(lambda m: m["type"] == "subscribed" or (
            m["type"] == "error" and m["code"] in ("forbidden",) and "jobId" not in m))
        await client.close()
        return 101, msgs
    params = {k: (",".join(v) if isinstance(v, list) else v) for k, v in query.items()
              if k != "all"}
    async with httpx.AsyncClient(base_url=server.url, timeout=WAIT,
                                 headers={"Authorization": f"Bearer {token}"}) as http:
        if transport == "sse":
            async with aconnect_sse(http, "GET", "/api/v2/jobs/stream", params=params) as s:
                if s.response.status_code != 200:
                    await s.response.aread()
                    return s.response.status_code, []
                msgs = []
                async for sse in s.aiter_sse():
                    msgs.append(orjson.loads(sse.data))
                    if msgs[-1]["type"] == "subscribed":
                        return 200, msgs
        path = "/api/v2/jobs/poll" if transport == "longpoll" else "/api/v2/jobs/status"
        if transport == "longpoll":
            params.setdefault("timeout", "0")
        r = await http.get(path, params=params)
        return r.status_code, [r.json()]
    raise AssertionError("unreachable")


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_bad_tokens_are_refused_everywhere(server, transport):
    for name, token in bad_tokens(server).items():
        status, _ = await read(server, transport, token, all=True)
        expected = 4401 if transport == "websocket" else 401
        assert status == expected, f"{name} on {transport}: {status}"


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_user_cannot_probe_another_users_jobs(server, transport, uid):
    alice, bob = f"{uid}-alice", f"{uid}-bob"
    secret = await publish(server, f"{uid}-secret", bob, "processing", progress=5,
                           currentOperation="bob's business")
    token = server.token(alice)
    probes = [{"jobIds": [f"{uid}-secret"]}, {"all": True},
              {"jobIds": [f"{uid}-secret"], "lastEventId": "0-0"}]
    if transport == "longpoll":
        probes.append({"last_seen": "0-0"})
        probes.append({"last_seen": secret["id"].split("-")[0][:10]})  # by time
    for probe in probes:
        status, msgs = await read(server, transport, token, **probe)
        assert status in (101, 200)
        assert "bob's business" not in orjson.dumps(msgs).decode(), (transport, probe)
    # Naming bob as the user is refused outright.
    if transport == "websocket":
        _, msgs = await read(server, transport, token, all=True, userId=bob)
        assert msgs[-1]["code"] == "forbidden"
    elif transport == "poll":
        status, _ = await read(server, transport, token, userId=bob)
        assert status == 403
    async with httpx.AsyncClient(base_url=server.url, timeout=WAIT) as http:
        r = await http.get(f"/api/v2/jobs/{uid}-secret", headers=server.headers(alice))
        assert r.status_code == 404


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_admin_sees_all_and_publishers_read_nothing(server, transport, uid):
    await publish(server, f"{uid}-x", f"{uid}-someone", "queued")
    status, msgs = await read(server, transport, server.token("root", "admin"),
                              jobIds=[f"{uid}-x"])
    assert f"{uid}-x" in orjson.dumps(msgs).decode()
    status, msgs = await read(server, transport, server.token("w", "publisher"), all=True)
    if transport == "websocket":
        assert msgs[-1]["code"] == "forbidden"
    else:
        assert status == 403


@pytest.mark.parametrize("transport", ["websocket", "http"])
async def test_cookie_auth_from_a_foreign_origin(server, transport, uid):
    cookie = {"Cookie": f"jobwire_token={server.token(uid)}"}
    if transport == "websocket":
        ws = await websockets.connect(server.ws_url, open_timeout=WAIT,
                                      origin="http://evil.example", additional_headers=cookie)
        assert await Client(ws).expect_close() == 1008
        return
    # Over HTTP too: a foreign page's request carrying the user's cookie is refused (and no
    # CORS is granted), on reads and on publishing alike.
    cookie = {"Cookie": f"jobwire_token={server.token(uid, 'admin')}"}
    async with httpx.AsyncClient(base_url=server.url, timeout=WAIT) as http:
        for method, path in (("GET", "/api/v2/jobs/status"), ("GET", "/api/v2/jobs/poll"),
                             ("GET", f"/api/v2/jobs/{uid}"),
                             ("POST", f"/api/v2/jobs/{uid}/status")):
            r = await http.request(method, path,
                                   headers={**cookie, "Origin": "http://evil.example"},
                                   json={"userId": uid, "status": "queued"})
            assert (r.status_code, r.json()["error"]["message"]) == (403, "origin not allowed")
            assert "access-control-allow-origin" not in r.headers
        r = await http.get(f"/api/v2/jobs/{uid}", headers={**cookie, "Origin": server.url})
        assert r.status_code == 404  # the same cookie from the server's own page: let in



async def _ws_outcome(server, origin: str, headers: dict[str, str], query: str = "") -> int:
    """101 if the handshake token was accepted (the `authenticated` greeting), else the close
    code."""
    ws = await websockets.connect(server.ws_url + query, open_timeout=WAIT, origin=origin,
                                  additional_headers=headers)
    client = Client(ws)
    try:
        greeting = await client.recv()
    except websockets.ConnectionClosed as exc:
        return exc.rcvd.code if exc.rcvd else 1006
    await client.close()
    assert greeting["type"] == "authenticated", greeting
    return 101


async def _sse_status(server, origin: str, headers: dict[str, str], query: str = "") -> int:
    async with httpx.AsyncClient(base_url=server.url, timeout=WAIT) as http:
        async with aconnect_sse(http, "GET", "/api/v2/jobs/stream" + query,
                                headers={**headers, "Origin": origin}) as s:
            return s.response.status_code


@pytest.mark.parametrize("transport", ["websocket", "sse"])
async def test_origin_check_follows_where_the_token_came_from(server, transport, uid):
    """Only a token taken from the cookie is checked against the Origin. A page that puts
    its token in the query (or a header) is served from any origin, even when the browser
    also sends the cookie with that same value."""
    token, evil = server.token(uid), "http://evil.example"
    cookie = {"Cookie": f"jobwire_token={token}"}
    outcome = _ws_outcome if transport == "websocket" else _sse_status
    ok, refused = (101, 1008) if transport == "websocket" else (200, 403)
    assert await outcome(server, evil, cookie, f"?token={token}") == ok
    assert await outcome(server, evil, {**cookie, "Authorization": f"Bearer {token}"}) == ok
    assert await outcome(server, evil, {"Authorization": f"Bearer {token}"}) == ok
    assert await outcome(server, evil, cookie) == refused
    # The cookie from the server's own origin (or no Origin: not a browser) is fine.
    assert await outcome(server, server.url, cookie) == ok
    assert await outcome(server, evil, cookie, f"?token={server.token(uid + 'x')}") == ok


async def test_the_authenticated_greeting(server, uid):
    """Every successful authentication at connect is answered with `authenticated`, first,
    whatever carried the token; a refresh is answered the same way."""
    user = f"{uid}-u"
    token = server.token(user, ttl=600)
    expires = float(jwt.decode(token, options={"verify_signature": False})["exp"])
    ways = {"query": (f"?token={token}", {}),
            "header": ("", {"Authorization": f"Bearer {token}"}),
            "cookie": ("", {"Cookie": f"jobwire_token={token}"}),
            "in-band": ("", {})}
    for way, (query, headers) in ways.items():
        client = Client(await websockets.connect(server.ws_url + query, open_timeout=WAIT,
                                                 additional_headers=headers))
        if way == "in-band":
            await client.send({"type": "auth", "token": token})
        greeting = await client.recv()
        assert greeting == {"type": "authenticated", "userId": user, "role": "user",
                            "expiresAt": expires}, way
        await client.close()
