"""The fast path's start-up check, and the small receive queue and writable flag that replace
asyncio's in its WebSocket protocol (the WebSocket tests run over them on the fast path;
these pin their own behaviour)."""

from __future__ import annotations

import asyncio
import logging
import socket

import pytest

from jobwire.transports.uvicorn_fast_path import (
    FastWebSocketProtocol,
    Flag,
    MessageQueue,
    PlainWebSocketProtocol,
    check_fast_path,
    drop_unanswered_after,
    websocket_protocol,
)


def test_the_installed_uvicorn_passes_the_check_and_off_means_plain_asgi(caplog):
    assert check_fast_path() == []
    with caplog.at_level(logging.INFO, logger="jobwire.websocket"):
        assert websocket_protocol(True) == (FastWebSocketProtocol, True)
        assert websocket_protocol(False) == (PlainWebSocketProtocol, False)
    assert [r.levelname for r in caplog.records] == ["INFO", "INFO"]
    assert "fast path on" in caplog.records[0].message
    assert "JOBWIRE_WS_FAST_PATH=off" in caplog.records[1].message


async def test_queue_hands_out_items_in_order_and_waits_when_empty():
    queue = MessageQueue()
    assert queue.empty()
    queue.put_nowait(1)
    queue.put_nowait(2)
    assert not queue.empty()
    assert [await queue.get(), await queue.get()] == [1, 2]
    waiting = asyncio.create_task(queue.get())
    await asyncio.sleep(0)  # let it start waiting: nothing to await but its first step
    assert not waiting.done()
    queue.put_nowait(3)
    assert await asyncio.wait_for(waiting, 1) == 3
    assert queue.empty() and queue.waiter is None


async def test_a_cancelled_get_leaves_the_queue_usable():
    queue = MessageQueue()
    waiting = asyncio.create_task(queue.get())
    await asyncio.sleep(0)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    queue.put_nowait("after")
    assert await asyncio.wait_for(queue.get(), 1) == "after"


async def test_flag_wait_returns_at_once_when_set_and_blocks_while_cleared():
    flag = Flag(True)
    assert flag.is_set() and await asyncio.wait_for(flag.wait(), 1)
    flag.clear()
    assert not flag.is_set()
    waiters = [asyncio.create_task(flag.wait()) for _ in range(3)]
    cancelled = asyncio.create_task(flag.wait())
    await asyncio.sleep(0)
    assert not any(w.done() for w in waiters)
    cancelled.cancel()
    await asyncio.sleep(0)
    flag.set()  # a cancelled waiter is skipped, the others released
    assert await asyncio.wait_for(asyncio.gather(*waiters), 1) == [True, True, True]
    assert cancelled.cancelled() and flag.waiters == []


async def test_a_tcp_connection_is_dropped_after_data_goes_unacknowledged_that_long(tmp_path):
    """TCP_USER_TIMEOUT on the accepted socket, in milliseconds; nothing on a Unix socket
    (no acknowledgements to wait for), and nothing when no timeout is configured."""
    accepted: asyncio.Queue[asyncio.StreamWriter] = asyncio.Queue()

    async def keep(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await accepted.put(writer)

    def user_timeout(writer: asyncio.StreamWriter) -> int:
        sock = writer.transport.get_extra_info("socket")
        return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT)

    tcp = await asyncio.start_server(keep, "127.0.0.1", 0)
    unix = await asyncio.start_unix_server(keep, str(tmp_path / "s"))
    writers = []
    try:
        port = tcp.sockets[0].getsockname()[1]
        for seconds, expected in ((15.0, 15000), (0.05, 50), (None, 0)):
            _, client = await asyncio.open_connection("127.0.0.1", port)
            server_side = await asyncio.wait_for(accepted.get(), 5)
            writers += [client, server_side]
            drop_unanswered_after(server_side.transport, seconds)
            assert user_timeout(server_side) == expected
        _, client = await asyncio.open_unix_connection(str(tmp_path / "s"))
        server_side = await asyncio.wait_for(accepted.get(), 5)
        writers += [client, server_side]
        drop_unanswered_after(server_side.transport, 15.0)  # no error
    finally:
        for writer in writers:
            writer.close()
        tcp.close()
        unix.close()
