"""A lean HTTP/1.1 client for the load generator's hot paths (the publisher's batch POSTs, the
long-polls and polls): one keep-alive connection, one request at a time (a publishing lane or a
reader never has two in flight), responses parsed by httptools (llhttp, as in uvicorn). It
costs about a tenth of httpx's CPU per request (~0.1 ms against ~1 ms, measured on the batch
POST), which was most of the load generator's own CPU."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httptools

READ_SIZE = 65536


class HttpError(Exception):
    """The request got no usable answer (connection failed or closed, malformed response)."""


@dataclass
class Response:
    status: int
    headers: dict[str, str]  # names in lower case
    body: bytes

    def text(self, limit: int = 200) -> str:
        return self.body[:limit].decode(errors="replace")


class Connection:
    """Requests to one server (POSTs to one URL by default) over a kept-alive connection,
    remade when it closes. `headers` go with every request."""

    def __init__(self, url: str, headers: dict[str, str],
                 ssl_context: ssl.SSLContext | None = None):
        parts = urlsplit(url)
        self.https = parts.scheme == "https"
        self.host = parts.hostname or "localhost"
        self.port = parts.port or (443 if self.https else 80)
        self.ssl = (ssl_context or ssl.create_default_context()) if self.https else None
        self.target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        lines = [f"Host: {parts.netloc}", "User-Agent: jobwire-loadtest",
                 *(f"{k}: {v}" for k, v in headers.items())]
        self.fixed = ("\r\n".join(lines) + "\r\n").encode()
        self.post_head = f"POST {self.target} HTTP/1.1\r\n".encode() + self.fixed
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, body: bytes) -> tuple[int, bytes]:
        """(status, body) of a POST of `body` to the URL."""
        r = await self.send(self.post_head + b"Content-Length: %d\r\n\r\n" % len(body) + body)
        return r.status, r.body

    async def get(self, target: str, headers: dict[str, str] | None = None) -> Response:
        """GET `target` (a path and query) with `headers` besides the fixed ones."""
        extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        return await self.send(f"GET {target} HTTP/1.1\r\n".encode() + self.fixed
                               + extra.encode() + b"\r\n")

    async def send(self, request: bytes) -> Response:
        """The response to one whole request. A kept-alive connection found closed before
        anything was answered is replaced and the request sent once more."""
        for _ in range(2):
            reused = self.writer is not None
            if self.writer is None:
                try:
                    self.reader, self.writer = await asyncio.open_connection(
                        self.host, self.port, ssl=self.ssl)
                except OSError as exc:
                    raise HttpError(f"cannot connect: {exc}") from None
            assert self.reader is not None and self.writer is not None
            try:
                self.writer.write(request)
                return await self.response(self.reader)
            except (OSError, asyncio.IncompleteReadError, httptools.HttpParserError) as exc:
                self.close()
                stale = reused and isinstance(exc, (ConnectionError, asyncio.IncompleteReadError)) \
                    and not getattr(exc, "partial", b"")
                if not stale:
                    raise HttpError(f"{type(exc).__name__}: {exc}") from None
        raise HttpError("the connection closed twice before an answer")

    async def response(self, reader: asyncio.StreamReader) -> Response:
        parsed = _Parsed()
        parser = parsed.parser = httptools.HttpResponseParser(parsed)
        received = False
        close = False
        while not parsed.complete:
            data = await reader.read(READ_SIZE)
            if not data:
                if parsed.headers_complete and not ({"content-length", "transfer-encoding"}
                                                    & parsed.headers.keys()):
                    close = True  # a body that runs until the server closes
                    break
                # Nothing at all: a kept-alive connection the server had closed (retried).
                raise asyncio.IncompleteReadError(b"x" if received else b"", None)
            received = True
            parser.feed_data(data)
        if close or not parsed.keep_alive:
            self.close()
        return Response(parsed.status, parsed.headers, b"".join(parsed.body))

    def close(self) -> None:
        if self.writer is not None:
            with contextlib.suppress(Exception):
                self.writer.close()
        self.reader = self.writer = None


@dataclass
class _Parsed:
    """What the parser reports of one response."""

    headers: dict[str, str] = field(default_factory=dict)  # names in lower case
    body: list[bytes] = field(default_factory=list)
    headers_complete: bool = False
    complete: bool = False
    parser: Any = None
    status: int = 0
    keep_alive: bool = False  # read with the headers: the parser resets once a message ends

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        self.headers_complete = True
        self.status = self.parser.get_status_code()
        self.keep_alive = self.parser.should_keep_alive()

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        self.complete = True
