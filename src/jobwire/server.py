"""uvicorn, taught to drain: on SIGTERM every session ends first (WebSockets close with 1012,
SSE streams end, waiting long-polls answer with what they have), then uvicorn waits for the
connections to finish, up to the shutdown timeout."""

from __future__ import annotations

import socket

import uvicorn

from .service import Service


class DrainingServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, service: Service):
        super().__init__(config)
        self.service = service

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self.service.shutdown_sessions()
        await super().shutdown(sockets)
