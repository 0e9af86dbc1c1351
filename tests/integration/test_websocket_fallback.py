"""The fast path's start-up check against a uvicorn that lacks what it needs: one warning
naming what is missing, and WebSockets served through plain ASGI sends, in full."""

from __future__ import annotations

import httpx

from tests.conftest import WAIT, connect, publish, start_server_with_shim

# Loaded by Python at start-up from PYTHONPATH, before jobwire: write flow control taken out
# of uvicorn's WebSocket protocol, as in a uvicorn older than 0.52.1.
SHIM = """
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

del WebSocketsSansIOProtocol.pause_writing
"""



async def test_a_uvicorn_without_write_flow_control_gets_plain_asgi_and_one_warning(
        tmp_path, uid):
    log_path = tmp_path / "server.log"
    srv = start_server_with_shim(SHIM, tmp_path)
    try:
        async with httpx.AsyncClient(timeout=WAIT) as http:
            assert (await http.get(srv.url + "/healthz")).json()["websocket"] == "asgi"
        user = f"{uid}-u"
        client = await connect(srv, srv.token(user))
        await client.subscribe(all=True)
        await publish(srv, f"{uid}-j", user, "processing", progress=5)
        (event,) = await client.recv_until(lambda m: "jobId" in m)
        assert (event["jobId"], event["progress"]) == (f"{uid}-j", 5)
        await client.close()
    finally:
        srv.stop()
    lines = log_path.read_text().splitlines()
    warnings = [line for line in lines if "fast path" in line]
    assert len(warnings) == 1, lines
    assert "WARNING" in warnings[0] and "pause_writing() is missing" in warnings[0]
    assert "plain ASGI" in warnings[0]
    assert not [line for line in lines if "Traceback" in line or "ERROR" in line], lines
