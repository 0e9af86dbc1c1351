"""The test relay itself: it forwards, blackholes silently, resets, and stops."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from tests.conftest import WAIT
from tests.relay import Relay


@dataclass
class Echo:
    """A TCP echo server in a thread; `received` is every chunk it read, in order."""

    port: int = 0
    received: list[bytes] = field(default_factory=list)

    def heard(self, data: bytes) -> bool:
        return data in b"".join(self.received)

    def marker(self, data: bytes) -> None:
        """Echo `data` over a direct connection: whatever reached the server through the
        relay before it, and was meant to, has reached it now."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=WAIT) as direct:
            assert roundtrip(direct, data) == data


@pytest.fixture
def echo() -> Iterator[Echo]:
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)  # to notice `stopped`
    server = Echo(listener.getsockname()[1])
    stopped = threading.Event()

    def serve() -> None:
        while not stopped.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            conn.settimeout(None)
            threading.Thread(target=answer, args=(conn,), daemon=True).start()

    def answer(conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError):  # reset by the relay: on purpose in tests
            while data := conn.recv(4096):
                server.received.append(data)
                conn.sendall(data)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server
    stopped.set()
    thread.join(WAIT)
    listener.close()


def roundtrip(sock: socket.socket, data: bytes) -> bytes:
    sock.sendall(data)
    received = b""
    while len(received) < len(data):
        chunk = sock.recv(4096)
        assert chunk, "connection closed"
        received += chunk
    return received


@contextlib.contextmanager
def relayed(echo: Echo) -> Iterator[tuple[Relay, socket.socket]]:
    """A relay to the echo server and one connection through it, shown to work."""
    with Relay(echo.port) as relay, socket.create_connection(("127.0.0.1", relay.port)) as s:
        s.settimeout(WAIT)
        assert roundtrip(s, b"x") == b"x"
        yield relay, s


def assert_nothing_came_back(sock: socket.socket) -> None:
    """Nothing to read: no data, no FIN (that reads as b""), no RST (that raises)."""
    sock.setblocking(False)
    with pytest.raises(BlockingIOError):
        sock.recv(4096)
    sock.settimeout(WAIT)


def test_forward_blackhole_and_back(echo):
    with relayed(echo) as (relay, s):
        relay.blackhole()
        s.sendall(b"two")
        # A new connection is accepted but goes nowhere.
        with socket.create_connection(("127.0.0.1", relay.port), timeout=WAIT) as late:
            late.sendall(b"late")
            echo.marker(b"marker")
            assert not echo.heard(b"two") and not echo.heard(b"late")
            assert_nothing_came_back(s)
            assert_nothing_came_back(late)
            relay.forward()
            assert late.recv(4096) == b"late"
        assert s.recv(4096) == b"two"  # held bytes flow in order once the link is back


def test_reset_aborts_every_connection(echo):
    with relayed(echo) as (relay, s):
        relay.reset()
        with pytest.raises(ConnectionResetError):
            s.recv(4096)
        assert relay.connections == 0


def test_close_sends_fin_and_stop_refuses_new_connections(echo):
    with relayed(echo) as (relay, s):
        relay.close()
        assert s.recv(4096) == b""
        relay.stop()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", relay.port), timeout=WAIT)


def test_stops_by_itself_after_its_lifetime(echo):
    relay = Relay(echo.port, lifetime=0.2)
    relay._thread.join(WAIT)
    assert not relay._thread.is_alive()


def test_down_resets_open_and_new_connections(echo):
    with relayed(echo) as (relay, s):
        relay.down()
        with pytest.raises(ConnectionResetError):
            s.recv(4096)
        with pytest.raises(ConnectionError):  # at connect or at the first read: a race
            with socket.create_connection(("127.0.0.1", relay.port), timeout=WAIT) as late:
                late.recv(4096)
        relay.forward()
        with socket.create_connection(("127.0.0.1", relay.port), timeout=WAIT) as back:
            assert roundtrip(back, b"y") == b"y"


def test_trip_on_a_pattern_acts_before_those_bytes_go_on(echo):
    with relayed(echo) as (relay, s):
        tripped = relay.trip_on(b"STOP", "blackhole")
        assert roundtrip(s, b"go on") == b"go on"
        assert not tripped.is_set()
        s.sendall(b"now STOP")
        assert tripped.wait(WAIT)
        echo.marker(b"marker")
        assert not echo.heard(b"STOP")
        assert_nothing_came_back(s)
        assert relay.mode == "blackhole"
