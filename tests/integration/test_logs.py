"""Structured logs: JSON lines with connection fields, and never a token."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile

import orjson

from jobwire.auth import JwtAuth
from tests.conftest import WAIT, Server, connect, eventually, free_port


async def test_json_logs_carry_connection_fields_and_no_tokens():
    secret, port = "s" * 40, free_port()
    env = {**os.environ, "JOBWIRE_SECRET": secret, "JOBWIRE_PORT": str(port),
           "JOBWIRE_LOG_LEVEL": "debug", "JOBWIRE_LOG_FORMAT": "json"}
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(  # noqa: ASYNC220 - started once, before any awaiting
            [sys.executable, "-m", "jobwire.cli", "serve"], env=env, stderr=log)
        server = Server(f"http://127.0.0.1:{port}", f"ws://127.0.0.1:{port}/ws/jobs",
                        JwtAuth(secret=secret), proc, env)
        try:
            token = server.token("logged-user")
            client = None

            async def up() -> bool:
                nonlocal client
                try:
                    client = await connect(server, token)
                    return True
                except OSError:
                    return False

            await eventually(up, timeout=3 * WAIT)
            await client.subscribe(all=True)
            await client.close()

            def closed_logged() -> bool:
                log.seek(0)
                return b"connection closed" in log.read()

            await eventually(closed_logged)
        finally:
            server.stop()
        log.seek(0)
        lines = [orjson.loads(line) for line in log.read().splitlines() if line.strip()]
    assert lines and all({"time", "level", "logger", "message"} <= set(e) for e in lines)
    closed = next(e for e in lines if e["message"] == "connection closed")
    assert closed["user"] == "logged-user" and closed["transport"] == "websocket"
    assert len(closed["conn"]) == 8 and closed["reason"] == "client"
    text = orjson.dumps(lines).decode()
    assert token not in text and token.split(".")[2] not in text
    assert "token=[redacted]" in text  # the handshake's request line, logged at debug
