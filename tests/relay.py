"""A userspace TCP relay for tests, to simulate network faults without iptables or netem.

    with Relay(redis.port) as relay:        # listens on 127.0.0.1:relay.port
        ...connect to relay.port...
        relay.blackhole()                   # a silently dropped link
        relay.forward()                     # the link is back; queued bytes flow in order
        relay.reset()                       # every connection gets an RST (or close(): FIN)
        relay.down()                        # as if the target were down: RST, now and later
        tripped = relay.trip_on(b"XINFO", "down")  # that, the moment a client sends XINFO

One thread with a selector serves every connection, so the relay works the same from sync
and async tests. In `blackhole` mode nothing is read or written in either direction and
nothing is closed: peers see neither RST nor FIN, their bytes wait in the kernel's buffers
(as on a link that drops packets, the sender's window eventually fills). New connections are
accepted but not connected onward until the mode is `forward` again. In `down` mode every
connection, open or new, is reset at once. The relay stops by
itself after `lifetime` seconds, so a test that forgets to stop it cannot leave it running.
"""

from __future__ import annotations

import selectors
import socket
import struct
import threading
import time
from collections.abc import Callable
from typing import Literal

Mode = Literal["forward", "blackhole", "down"]

CHUNK = 65536
BUFFER_LIMIT = 1 << 20  # per direction; past it the relay stops reading, like a full window


class _Link:
    """One accepted connection and its onward connection (None until forwarded)."""

    def __init__(self, client: socket.socket) -> None:
        self.client = client
        self.upstream: socket.socket | None = None
        self.to_upstream = bytearray()
        self.to_client = bytearray()

    def sockets(self) -> list[socket.socket]:
        return [s for s in (self.client, self.upstream) if s is not None]


class Relay:
    def __init__(self, target_port: int, target_host: str = "127.0.0.1", *,
                 lifetime: float = 300.0) -> None:
        self.target = (target_host, target_port)
        self.mode: Mode = "forward"
        self.accepted = 0  # connections accepted so far
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.setblocking(False)
        self.port: int = self._listener.getsockname()[1]
        self._links: list[_Link] = []
        self._commands: list[tuple[Callable[[], None], threading.Event]] = []
        self._lock = threading.Lock()
        self._wake_reader, self._wake_writer = socket.socketpair()
        self._wake_reader.setblocking(False)
        self._selector = selectors.DefaultSelector()
        self._masks: dict[socket.socket, int] = {}
        self._trip: tuple[bytes, Mode, threading.Event] | None = None
        self._stopping = False
        self._deadline = time.monotonic() + lifetime
        self._thread = threading.Thread(target=self._run, name=f"relay:{self.port}",
                                        daemon=True)
        self._thread.start()

    # -- control, from any thread; each returns once the relay thread has applied it

    def forward(self) -> None:
        self._call(lambda: self._set_mode("forward"))

    def blackhole(self) -> None:
        self._call(lambda: self._set_mode("blackhole"))

    def down(self) -> None:
        self._call(lambda: self._set_mode("down"))

    def trip_on(self, pattern: bytes, mode: Mode) -> threading.Event:
        """Switch to `mode` the moment a client sends `pattern` (say, a Redis command name),
        before those bytes go on: a fault at an exact point of a conversation. The returned
        event is set when it happened. Fires once."""
        tripped = threading.Event()

        def arm() -> None:
            self._trip = (pattern, mode, tripped)

        self._call(arm)
        return tripped

    def reset(self) -> None:
        """Abort every connection with an RST, both sides."""
        self._call(lambda: self._close_all(abortive=True))

    def close(self) -> None:
        """Close every connection cleanly (FIN), both sides."""
        self._call(lambda: self._close_all(abortive=False))

    @property
    def connections(self) -> int:
        return len(self._links)

    def stop(self) -> None:
        if self._thread.is_alive():
            self._call(self._request_stop)
            self._thread.join(5)

    def __enter__(self) -> Relay:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _call(self, command: Callable[[], None], timeout: float = 5.0) -> None:
        done = threading.Event()
        with self._lock:
            self._commands.append((command, done))
        try:
            self._wake_writer.send(b"x")
        except OSError:
            pass  # the thread is gone
        if self._thread.is_alive() and not done.wait(timeout):
            raise TimeoutError("relay thread did not answer")

    def _request_stop(self) -> None:
        self._stopping = True

    def _set_mode(self, mode: Mode) -> None:
        self.mode = mode
        if mode == "down":
            self._close_all(abortive=True)

    # -- the relay thread

    def _run(self) -> None:
        self._selector.register(self._listener, selectors.EVENT_READ)
        self._selector.register(self._wake_reader, selectors.EVENT_READ)
        try:
            while not self._stopping and time.monotonic() < self._deadline:
                self._update_interest()
                for key, events in self._selector.select(timeout=0.5):
                    sock = key.fileobj
                    if sock is self._listener:
                        self._accept()
                    elif sock is self._wake_reader:
                        self._run_commands()
                    else:
                        self._service(sock, events)  # type: ignore[arg-type]
        finally:
            self._close_all(abortive=False)
            self._selector.close()
            self._listener.close()
            self._wake_reader.close()
            self._run_commands()  # release anyone still waiting
            self._wake_writer.close()

    def _run_commands(self) -> None:
        try:
            while self._wake_reader.recv(4096):
                pass
        except OSError:
            pass
        with self._lock:
            commands, self._commands = self._commands, []
        for command, done in commands:
            command()
            done.set()

    def _accept(self) -> None:
        try:
            client, _ = self._listener.accept()
        except OSError:
            return
        self.accepted += 1
        if self.mode == "down":
            client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            client.close()
            return
        client.setblocking(False)
        self._links.append(_Link(client))

    def _update_interest(self) -> None:
        forwarding = self.mode == "forward"
        for link in list(self._links):
            if forwarding and link.upstream is None and not self._connect(link):
                continue
            for sock, inbox, outbox in self._directions(link):
                mask = 0
                if forwarding:
                    if len(outbox) < BUFFER_LIMIT:
                        mask |= selectors.EVENT_READ
                    if inbox:
                        mask |= selectors.EVENT_WRITE
                self._set_mask(sock, mask)

    @staticmethod
    def _directions(link: _Link) -> list[tuple[socket.socket, bytearray, bytearray]]:
        """(socket, bytes waiting to be written to it, buffer its reads go to)."""
        out = [(link.client, link.to_client, link.to_upstream)]
        if link.upstream is not None:
            out.append((link.upstream, link.to_upstream, link.to_client))
        return out

    def _connect(self, link: _Link) -> bool:
        try:
            upstream = socket.create_connection(self.target, timeout=2)
        except OSError:
            self._drop(link, abortive=False)  # the target refuses: so does the relay
            return False
        upstream.setblocking(False)
        link.upstream = upstream
        return True

    def _service(self, sock: socket.socket, events: int) -> None:
        link = next((ln for ln in self._links if sock in ln.sockets()), None)
        if link is None:
            return
        for candidate, inbox, outbox in self._directions(link):
            if candidate is not sock:
                continue
            try:
                if events & selectors.EVENT_WRITE and inbox:
                    del inbox[:sock.send(inbox)]
                if events & selectors.EVENT_READ:
                    data = sock.recv(CHUNK)
                    if not data:
                        self._finish(link)
                        return
                    if sock is link.client and self._tripped_by(data):
                        if self.mode == "down":
                            return  # this link too was reset, its bytes with it
                    outbox += data
            except BlockingIOError:
                pass
            except OSError:
                self._drop(link, abortive=True)  # one side reset: pass the reset on

    def _tripped_by(self, data: bytes) -> bool:
        # A pattern split across two reads is missed; commands of a test are small writes.
        if self._trip is None or self._trip[0] not in data:
            return False
        _, mode, tripped = self._trip
        self._trip = None
        tripped.set()  # first: a peer may see the fault (and a test look) before it returns
        self._set_mode(mode)
        return True

    def _finish(self, link: _Link) -> None:
        """One side closed: deliver what is buffered (best effort), then close both."""
        for sock, inbox, _ in self._directions(link):
            try:
                sock.setblocking(True)
                sock.settimeout(1)
                sock.sendall(inbox)
            except OSError:
                pass
        self._drop(link, abortive=False)

    def _drop(self, link: _Link, *, abortive: bool) -> None:
        for sock in link.sockets():
            self._set_mask(sock, 0)
            if abortive:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.close()
        if link in self._links:
            self._links.remove(link)

    def _close_all(self, *, abortive: bool) -> None:
        for link in list(self._links):
            self._drop(link, abortive=abortive)

    def _set_mask(self, sock: socket.socket, mask: int) -> None:
        current = self._masks.get(sock, 0)
        if mask == current:
            return
        if current == 0:
            self._selector.register(sock, mask)
        elif mask == 0:
            self._selector.unregister(sock)
        else:
            self._selector.modify(sock, mask)
        if mask:
            self._masks[sock] = mask
        else:
            self._masks.pop(sock, None)
