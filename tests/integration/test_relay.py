"""The test relay itself: it forwards, blackholes silently, resets, and stops."""

from __future__ import annotations

import socket
import threading

import pytest

from tests.conftest import WAIT
from tests.relay import Relay


@pytest.fixture
def echo_port():
    """A TCP echo server in a thread: every connection echoes what it reads."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(WAIT)

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=echo, args=(conn,), daemon=True).start()

    def echo(conn: socket.socket) -> None:
        with conn:
            try:
                while data := conn.recv(4096):
                    conn.sendall(data)
            except OSError:
                pass  # the relay reset the connection: what one test does on purpose

    threading.Thread(target=serve, daemon=True).start()
    yield listener.getsockname()[1]
    listener.close()


def roundtrip(sock: socket.socket, data: bytes) -> bytes:
    sock.sendall(data)
    received = b""
    while len(received) < len(data):
        chunk = sock.recv(4096)
        assert chunk, "connection closed"
        received += chunk
    return received


def test_forward_blackhole_and_back(echo_port):
    with Relay(echo_port) as relay, socket.create_connection(("127.0.0.1", relay.port)) as s:
        s.settimeout(WAIT)
        assert roundtrip(s, b"one") == b"one"
        relay.blackhole()
        s.sendall(b"two")
        s.settimeout(0.3)
        with pytest.raises(TimeoutError):  # neither data nor FIN nor RST
            s.recv(4096)
        # a new connection is accepted but goes nowhere
        with socket.create_connection(("127.0.0.1", relay.port), timeout=WAIT) as late:
            late.sendall(b"late")
            late.settimeout(0.3)
            with pytest.raises(TimeoutError):
                late.recv(4096)
            relay.forward()
            late.settimeout(WAIT)
            assert late.recv(4096) == b"late"
        s.settimeout(WAIT)
        assert s.recv(4096) == b"two"  # held bytes flow in order once the link is back


def test_reset_aborts_every_connection(echo_port):
    with Relay(echo_port) as relay, socket.create_connection(("127.0.0.1", relay.port)) as s:
        s.settimeout(WAIT)
        assert roundtrip(s, b"x") == b"x"
        relay.reset()
        with pytest.raises(ConnectionResetError):
            s.recv(4096)
        assert relay.connections == 0


def test_close_sends_fin_and_stop_refuses_new_connections(echo_port):
    relay = Relay(echo_port)
    with socket.create_connection(("127.0.0.1", relay.port)) as s:
        s.settimeout(WAIT)
        assert roundtrip(s, b"x") == b"x"
        relay.close()
        assert s.recv(4096) == b""
    relay.stop()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", relay.port), timeout=WAIT)


def test_stops_by_itself_after_its_lifetime(echo_port):
    relay = Relay(echo_port, lifetime=0.2)
    relay._thread.join(WAIT)
    assert not relay._thread.is_alive()


def test_down_resets_open_and_new_connections(echo_port):
    with Relay(echo_port) as relay, socket.create_connection(("127.0.0.1", relay.port)) as s:
        s.settimeout(WAIT)
        assert roundtrip(s, b"x") == b"x"
        relay.down()
        with pytest.raises(ConnectionResetError):
            s.recv(4096)
        with pytest.raises(ConnectionError):  # at connect or at the first read: a race
            with socket.create_connection(("127.0.0.1", relay.port), timeout=WAIT) as late:
                late.recv(4096)
        relay.forward()
        with socket.create_connection(("127.0.0.1", relay.port), timeout=WAIT) as back:
            assert roundtrip(back, b"y") == b"y"


def test_trip_on_a_pattern_acts_before_those_bytes_go_on(echo_port):
    with Relay(echo_port) as relay, socket.create_connection(("127.0.0.1", relay.port)) as s:
        s.settimeout(WAIT)
        tripped = relay.trip_on(b"STOP", "blackhole")
        assert roundtrip(s, b"go on") == b"go on"
        assert not tripped.is_set()
        s.sendall(b"now STOP")
        assert tripped.wait(WAIT)
        s.settimeout(0.3)
        with pytest.raises(TimeoutError):
            s.recv(4096)
        assert relay.mode == "blackhole"
