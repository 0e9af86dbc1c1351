"""`jobwire loadtest --processes N`: the worker protocol over a real worker process, and over
a real socket pair."""

from __future__ import annotations

import asyncio
import socket
import threading

import orjson
import pytest

from jobwire.loadtest.readers import ReaderGroup, run_loop
from jobwire.loadtest.workers import FRAME, WorkerReaders, serve


def test_a_worker_process_answers_the_commands() -> None:
    async def scenario() -> list[dict[str, object]]:
        worker = await WorkerReaders.spawn()
        try:
            answers = [await worker.call("start", clients=[], concurrent=1, pollInterval=1.0),
                       await worker.call("status"), await worker.call("cutoff", timeout=1.0),
                       await worker.call("measure")]
            with pytest.raises(RuntimeError, match="unknown command"):
                await worker.call("explode")
            answers.append(await worker.call("finish"))
        finally:
            await worker.stop()
        assert worker.proc.returncode == 0
        answers.append({"pid": worker.pid})
        return answers

    start, status, cutoff, measure, finish, spawned = asyncio.run(
        asyncio.wait_for(scenario(), 60))
    assert start["pid"] == spawned["pid"] == finish["pid"]
    assert status["connected"] == status["delivered"] == status["up"] == 0
    assert cutoff["live"] == []
    assert measure["cpu"] > 0
    assert finish["clients"] == 0 and finish["tallies"] == {}
    assert finish["cpuSeconds"] >= 0 and isinstance(finish["lags"], list)


def test_a_large_finish_answer_arrives_whole(monkeypatch: pytest.MonkeyPatch) -> None:
    """The `finish` answer (every latency measured) can be megabytes, far more than a socket
    buffer holds: it arrives whole, in one frame, and the worker's loop then ends."""
    big = [0.001 * i for i in range(400_000)]

    async def finish(self: ReaderGroup) -> dict[str, object]:
        return {"lags": big}

    monkeypatch.setattr(ReaderGroup, "finish", finish)
    ours, theirs = socket.socketpair()
    worker = threading.Thread(target=run_loop, args=(serve(theirs.detach()),))
    worker.start()
    try:
        request = orjson.dumps({"cmd": "finish"})
        ours.sendall(FRAME.pack(len(request)) + request)
        ours.settimeout(20)
        data = b""
        while chunk := ours.recv(1 << 20):
            data += chunk
    finally:
        ours.close()
        worker.join(20)
    assert not worker.is_alive()
    assert len(data) >= FRAME.size
    (size,) = FRAME.unpack(data[:FRAME.size])
    assert len(data) == FRAME.size + size
    assert orjson.loads(data[FRAME.size:])["lags"] == big
