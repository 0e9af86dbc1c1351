"""A write that fails after the outbox was drained: those messages are lost to the connection,
so it must end (and the client resume from its cursor), never carry on past a hole."""

from __future__ import annotations

import pytest
import websockets

from tests.conftest import WAIT, connect, publish, start_server_with_shim

# Loaded at start-up from PYTHONPATH: the first write of a frame naming a poisoned job fails.
SHIM = """
from jobwire.transports import uvicorn_fast_path

_write = uvicorn_fast_path.FastWebSocketProtocol.write_frames
_failed = []


def write_frames(self, data):
    if b"poisoned" in data and not _failed:
        _failed.append(True)
        raise OSError("injected write failure")
    _write(self, data)


uvicorn_fast_path.FastWebSocketProtocol.write_frames = write_frames
"""



async def test_a_failed_write_drops_the_connection_and_the_resume_has_the_lost_event(
        tmp_path, uid):
    srv = start_server_with_shim(SHIM, tmp_path)
    user = f"{uid}-u"
    try:
        client = await connect(srv, srv.token(user))
        await client.subscribe(all=True)
        await publish(srv, f"{uid}-a", user, "processing", progress=1)
        (first,) = await client.recv_until(lambda m: "jobId" in m)
        await publish(srv, f"{uid}-poisoned", user, "processing", progress=2)
        await publish(srv, f"{uid}-b", user, "processing", progress=3)
        # The connection ends; job b never arrives on it past the lost event.
        with pytest.raises(websockets.ConnectionClosed):
            await client.recv_until(lambda m: "jobId" in m, timeout=WAIT)
        again = await connect(srv, srv.token(user))
        await again.subscribe(all=True, lastEventId=first["id"])
        events = await again.recv_until(lambda m: m.get("jobId") == f"{uid}-b")
        assert [e["jobId"] for e in events if "jobId" in e] == [f"{uid}-poisoned", f"{uid}-b"]
        await again.close()
    finally:
        srv.stop()
    assert "injected write failure" in (tmp_path / "server.log").read_text()
