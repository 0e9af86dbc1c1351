"""Where the readers run: in this process (`--processes 1`), or split over worker processes,
each its own event loop (uvloop if there), driven by the parent over a socket pair with the
commands of readers.py (4-byte length, then one JSON object; one answer per command, in order).

A worker is `python -m jobwire.loadtest.workers FD`: it serves commands until `finish` or until
the parent's end of the socket closes (the parent exited), then closes its clients and exits.
It ignores SIGINT: on Ctrl-C the parent stops it."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import struct
import subprocess
import sys
from typing import Any, Protocol

import orjson

from .readers import ReaderGroup, run_loop

FRAME = struct.Struct(">I")
START_TIMEOUT = 30.0  # a worker's start-up (imports) and first answer
CALL_TIMEOUT = 60.0  # any other answer (`finish` closes up to thousands of connections)
EXIT_TIMEOUT = 10.0  # a worker's exit after `finish` or after its socket closed


class Readers(Protocol):
    pid: int
    local: bool

    async def call(self, cmd: str, **args: Any) -> dict[str, Any]: ...

    async def stop(self) -> None: ...


async def send(writer: asyncio.StreamWriter, msg: dict[str, Any]) -> None:
    data = orjson.dumps(msg)
    writer.write(FRAME.pack(len(data)) + data)
    await writer.drain()


async def receive(reader: asyncio.StreamReader) -> dict[str, Any] | None:
    """The next message; None at the end of the stream."""
    try:
        head = await reader.readexactly(FRAME.size)
        return orjson.loads(await reader.readexactly(FRAME.unpack(head)[0]))
    except asyncio.IncompleteReadError:
        return None


class LocalReaders:
    """The readers in the parent's own event loop."""

    local = True

    def __init__(self) -> None:
        self.group = ReaderGroup()
        self.pid = os.getpid()

    async def call(self, cmd: str, **args: Any) -> dict[str, Any]:
        return await self.group.handle({"cmd": cmd, **args})

    async def stop(self) -> None:
        await self.group.close()


class WorkerReaders:
    """A worker process and the parent's end of its socket."""

    local = False

    def __init__(self, proc: asyncio.subprocess.Process, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter):
        self.proc = proc
        self.pid = proc.pid
        self.reader, self.writer = reader, writer
        self.lock = asyncio.Lock()  # one command at a time: answers come in order

    @classmethod
    async def spawn(cls) -> WorkerReaders:
        ours, theirs = socket.socketpair()
        try:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-X", "faulthandler", "-m", "jobwire.loadtest.workers",
                str(theirs.fileno()),
                pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL)  # stderr shared: a worker's traceback shows
        finally:
            theirs.close()
        reader, writer = await asyncio.open_connection(sock=ours, limit=2**20)
        return cls(proc, reader, writer)

    async def call(self, cmd: str, **args: Any) -> dict[str, Any]:
        timeout = START_TIMEOUT if cmd == "start" else CALL_TIMEOUT
        async with self.lock:
            try:
                async with asyncio.timeout(timeout):
                    await send(self.writer, {"cmd": cmd, **args})
                    answer = await receive(self.reader)
            except (OSError, TimeoutError) as exc:
                raise RuntimeError(f"reader process {self.pid}: {cmd} failed: "
                                   f"{type(exc).__name__}: {exc}") from None
        if answer is None:
            raise RuntimeError(f"reader process {self.pid} exited during {cmd} "
                               f"(status {self.proc.returncode})")
        if "error" in answer:
            raise RuntimeError(f"reader process {self.pid}: {cmd}: {answer['error']}")
        return answer

    async def stop(self) -> None:
        """Close the socket (the worker then closes its clients and exits), wait for it to
        exit, and kill it (by its PID) if it does not."""
        with contextlib.suppress(OSError):
            self.writer.close()
        try:
            await asyncio.wait_for(self.proc.wait(), EXIT_TIMEOUT)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
            await self.proc.wait()


async def start_readers(processes: int) -> list[Readers]:
    """One LocalReaders, or `processes` worker processes (started concurrently)."""
    if processes <= 1:
        return [LocalReaders()]
    started = await asyncio.gather(*(WorkerReaders.spawn() for _ in range(processes)),
                                   return_exceptions=True)
    workers: list[Readers] = [w for w in started if isinstance(w, WorkerReaders)]
    failure = next((w for w in started if isinstance(w, BaseException)), None)
    if failure is not None:
        await asyncio.gather(*(w.stop() for w in workers))
        raise RuntimeError(f"could not start a reader process: {failure}")
    return workers


def split(n: int, parts: int) -> list[range]:
    """0..n-1 in `parts` contiguous ranges whose sizes differ by at most one."""
    return [range(n * k // parts, n * (k + 1) // parts) for k in range(parts)]


async def serve(fd: int) -> None:
    reader, writer = await asyncio.open_connection(sock=socket.socket(fileno=fd),
                                                   limit=2**20)
    group = ReaderGroup()
    try:
        while (msg := await receive(reader)) is not None:
            try:
                answer = await group.handle(msg)
            except Exception as exc:
                answer = {"error": f"{type(exc).__name__}: {exc}"}
            await send(writer, answer)
            if msg["cmd"] == "finish":
                break
    finally:
        await group.close()
        writer.close()  # flushes what is still buffered (the `finish` answer) first
        with contextlib.suppress(OSError):
            await asyncio.wait_for(writer.wait_closed(), EXIT_TIMEOUT)


def main(argv: list[str]) -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    with contextlib.suppress(ConnectionError):
        run_loop(serve(int(argv[0])))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
