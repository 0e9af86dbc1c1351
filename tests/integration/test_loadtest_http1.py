"""The load generator's minimal HTTP/1.1 client (the publisher's batch POSTs), against a tiny
asyncio server that answers in each of the ways HTTP/1.1 allows."""

from __future__ import annotations

import asyncio
import socket

import pytest

from jobwire.loadtest.http1 import Connection, HttpError

ANSWERS = {
    b"length": b"HTTP/1.1 202 Accepted\r\nContent-Length: 5\r\n\r\nhello",
    b"chunked": b"HTTP/1.1 202 Accepted\r\nTransfer-Encoding: chunked\r\n\r\n"
                b"3\r\nhel\r\n2;x=y\r\nlo\r\n0\r\nX-Trailer: 1\r\n\r\n",
    b"close": b"HTTP/1.1 429 Too Many Requests\r\nConnection: close\r\n"
              b"Content-Length: 4\r\n\r\nslow",
    b"eof": b"HTTP/1.1 200 OK\r\n\r\nuntil the end",
    b"vanish": b"HTTP/1.1 202 Accepted\r\nContent-Length: 2\r\n\r\nok",  # then closes
}


async def serve(accepted: list[int], wrong: list[str]) -> asyncio.Server:
    """`wrong` collects what the client sent amiss: an exception in a handler would only be
    logged, and the client would see a bare dropped connection."""
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(1)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                if head.startswith(b"GET /api/v2/jobs/status?x=1 HTTP/1.1\r\n"):
                    assert b"\r\nAuthorization: Bearer tok\r\n" in head
                    writer.write(b"HTTP/1.1 304 Not Modified\r\nETag: \"e1\"\r\n\r\n"
                                 if b"\r\nIf-None-Match: \"e1\"\r\n" in head else
                                 b"HTTP/1.1 200 OK\r\nETag: \"e1\"\r\nContent-Length: 2\r\n\r\n{}")
                    continue
                length = int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0])
                body = await reader.readexactly(length)
                assert head.startswith(b"POST /api/v2/jobs/status HTTP/1.1\r\n")
                assert b"\r\nAuthorization: Bearer tok\r\n" in head
                writer.write(ANSWERS[body])
                await writer.drain()
                if body in (b"close", b"eof", b"vanish"):
                    break
        except asyncio.IncompleteReadError:
            pass
        except AssertionError as exc:
            wrong.append(f"{exc}: {head!r}")
        writer.close()

    return await asyncio.start_server(handle, "127.0.0.1", 0)


def test_every_way_of_answering_is_read_and_the_connection_kept_or_remade() -> None:
    wrong: list[str] = []

    async def scenario() -> tuple[list[tuple[int, bytes]], list[int]]:
        accepted: list[int] = []
        server = await serve(accepted, wrong)
        port = server.sockets[0].getsockname()[1]
        conn = Connection(f"http://127.0.0.1:{port}/api/v2/jobs/status",
                          {"Authorization": "Bearer tok"})
        answers = []
        async with server:
            for body in (b"length", b"chunked", b"length", b"close", b"length", b"eof",
                         b"vanish", b"length"):
                answers.append(await conn.post(body))
                if body == b"vanish":  # the server closed it without saying so
                    await asyncio.sleep(0)
            first = await conn.get("/api/v2/jobs/status?x=1")
            again = await conn.get("/api/v2/jobs/status?x=1",
                                   {"If-None-Match": first.headers["etag"]})
            answers += [(first.status, first.body), (again.status, again.body)]
            answers.append(await conn.post(b"length"))  # still the same connection
            conn.close()
        return answers, accepted

    try:
        answers, accepted = asyncio.run(asyncio.wait_for(scenario(), 10))
    finally:
        assert wrong == []
    assert answers == [(202, b"hello"), (202, b"hello"), (202, b"hello"), (429, b"slow"),
                       (202, b"hello"), (200, b"until the end"), (202, b"ok"),
                       (202, b"hello"), (200, b"{}"), (304, b""), (202, b"hello")]
    # kept alive over the first three; remade after close, after eof and after vanish
    assert len(accepted) == 4


def test_no_server_is_an_http_error() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, not listening: refused

        async def scenario() -> None:
            await Connection(f"http://127.0.0.1:{port}/x", {}).post(b"{}")

        with pytest.raises(HttpError, match="cannot connect"):
            asyncio.run(asyncio.wait_for(scenario(), 10))
