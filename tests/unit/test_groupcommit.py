"""Group commit: concurrent submissions share calls, each gets its own replies."""

from __future__ import annotations

import asyncio

import pytest

from jobwire.broker.groupcommit import GroupCommit

WAIT = 5


class Runner:
    """Stands in for the script call: records each call's items; a call ends on release."""

    def __init__(self):
        self.calls: list[list[str]] = []
        self.gate = asyncio.Event()
        self.started = asyncio.Event()
        self.fail: Exception | None = None
        self.hang = asyncio.Event()  # a call of ["hang"] waits on this instead
        self.hanging = asyncio.Event()  # set once such a call has begun

    async def __call__(self, items):
        self.calls.append(list(items))
        self.started.set()
        if items == ["hang"]:
            self.hanging.set()
        await (self.hang if items == ["hang"] else self.gate).wait()
        if self.fail is not None:
            raise self.fail
        return [f"r:{item}" for item in items]


async def test_the_first_submission_runs_at_once_and_later_ones_go_together():
    run = Runner()
    group = GroupCommit(run)
    async with asyncio.timeout(WAIT):
        first = asyncio.create_task(group.submit(["a"]))
        await run.started.wait()
        later = [asyncio.create_task(group.submit([f"b{i}", f"c{i}"])) for i in range(3)]
        await asyncio.sleep(0)  # let them queue behind the call in flight
        run.gate.set()
        assert await first == ["r:a"]
        assert await asyncio.gather(*later) == [[f"r:b{i}", f"r:c{i}"] for i in range(3)]
    assert run.calls == [["a"], ["b0", "c0", "b1", "c1", "b2", "c2"]]
    assert group.calls == 2


async def test_a_failed_call_fails_every_submission_in_it_and_the_next_call_runs():
    run = Runner()
    group = GroupCommit(run)
    async with asyncio.timeout(WAIT):
        first = asyncio.create_task(group.submit(["a"]))
        await run.started.wait()
        waiting = [asyncio.create_task(group.submit([x])) for x in "bc"]
        await asyncio.sleep(0)
        run.fail = ConnectionError("down")
        run.gate.set()
        for task in (first, *waiting):
            with pytest.raises(ConnectionError):
                await task
        run.fail = None
        assert await group.submit(["d"]) == ["r:d"]  # not stuck busy


async def test_a_cancelled_waiter_leaves_the_others_their_replies():
    run = Runner()
    group = GroupCommit(run)
    async with asyncio.timeout(WAIT):
        first = asyncio.create_task(group.submit(["a"]))
        await run.started.wait()
        gone = asyncio.create_task(group.submit(["b"]))
        kept = asyncio.create_task(group.submit(["c"]))
        await asyncio.sleep(0)
        gone.cancel()
        run.gate.set()
        assert await first == ["r:a"]
        assert await kept == ["r:c"]
        assert gone.cancelled()
    assert run.calls[-1] == ["b", "c"]  # its items were committed all the same


async def test_close_cancels_what_waits():
    run = Runner()
    group = GroupCommit(run)
    async with asyncio.timeout(WAIT):
        first = asyncio.create_task(group.submit(["a"]))
        await run.started.wait()
        waiting = asyncio.create_task(group.submit(["hang"]))
        await asyncio.sleep(0)
        run.gate.set()
        await first
        await run.hanging.wait()  # the drain's call, which never ends by itself
        await group.close()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        assert await group.submit(["b"]) == ["r:b"]  # usable again
