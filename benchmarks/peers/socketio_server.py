"""python-socketio peer for benchmarks/compare_peers.py (runs in benchmarks/peers/.venv).

The same server as socketio_server.js: WebSocket only, the token in the CONNECT packet is the
user name (trivial auth), `subscribe` {rooms: [...]} with an ack joins the rooms named after the
user, and `POST /publish` takes a JSON array of {room, data} and emits each item's data to its
room as `status_update`. With --redis URL the rooms go through AsyncRedisManager. It runs as an
ASGI app on uvicorn with uvloop, httptools and websockets-sansio, as `jobwire serve` does.

    .venv/bin/python socketio_server.py --port 3200 [--redis redis://127.0.0.1:6390/0]
"""

from __future__ import annotations

import argparse
import json
from importlib.metadata import version

import socketio
import uvicorn


def make_server(redis_url: str | None) -> socketio.AsyncServer:
    manager = socketio.AsyncRedisManager(redis_url) if redis_url else None
    sio = socketio.AsyncServer(async_mode="asgi", transports=["websocket"],
                               client_manager=manager, cors_allowed_origins=[])
    users: dict[str, str] = {}  # sid -> user

    @sio.event
    async def connect(sid: str, environ: dict, auth: dict | None) -> None:
        token = (auth or {}).get("token")
        if not isinstance(token, str) or not token:
            raise socketio.exceptions.ConnectionRefusedError("unauthorized")
        users[sid] = token

    @sio.event
    async def disconnect(sid: str, *reason: object) -> None:
        users.pop(sid, None)

    @sio.event
    async def subscribe(sid: str, msg: dict) -> dict:
        user = users.get(sid, "")
        own = [r for r in (msg or {}).get("rooms", ())
               if r == user or r.startswith(user + ":")]
        for room in own:
            await sio.enter_room(sid, room)
        return {"rooms": own}

    return sio


def publish_app(sio: socketio.AsyncServer):
    """The plain-HTTP part: GET /healthz and POST /publish (anything else: 404)."""

    async def app(scope: dict, receive, send) -> None:
        if scope["type"] != "http":
            return
        status, body = 404, {"error": "no"}
        path, method = scope["path"], scope["method"]
        if method == "GET" and path == "/healthz":
            status, body = 200, {"ok": True}
        elif method == "POST" and path == "/publish":
            raw = b""
            more = True
            while more:
                message = await receive()
                raw += message.get("body", b"")
                more = message.get("more_body", False)
            batch = json.loads(raw)
            for item in batch:
                await sio.emit("status_update", item["data"], room=item["room"])
            status, body = 202, {"emitted": len(batch)}
        data = json.dumps(body).encode()
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(data)).encode())]})
        await send({"type": "http.response.body", "body": data})

    return app


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=3200)
    p.add_argument("--redis", help="Redis URL for AsyncRedisManager; unset: in memory")
    args = p.parse_args()
    sio = make_server(args.redis)
    app = socketio.ASGIApp(sio, other_asgi_app=publish_app(sio))
    print(f"python-socketio {version('python-socketio')} on {args.host}:{args.port}"
          + (" with AsyncRedisManager" if args.redis else ""), flush=True)
    uvicorn.run(app, host=args.host, port=args.port, loop="uvloop", http="httptools",
                ws="websockets-sansio", log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
