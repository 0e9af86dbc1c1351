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


async def in_flight(group: GroupCommit, run: Runner) -> asyncio.Task:
    """Submit ["a"] and return once its call is in flight (later submissions must wait)."""
    first = asyncio.create_task(group.submit(["a"]))
    await run.started.wait()
    return first


async def queued(group: GroupCommit, *parts: list[str]) -> list[asyncio.Task]:
    """Submit each part behind the call in flight; return once they all wait for it."""
    tasks = [asyncio.create_task(group.submit(part)) for part in parts]
    await asyncio.sleep(0)
    return tasks


async def test_the_first_submission_runs_at_once_and_later_ones_go_together():
    run = Runner()
    group = GroupCommit(run)
    async with asyncio.timeout(WAIT):
        first = await in_flight(group, run)
        later = await queued(group, *([f"b{i}", f"c{i}"] for i in range(3)))
        run.gate.set()
        assert await first == ["r:a"]
        assert await asyncio.gather(*later) == [[f"r:b{i}", f"r:c{i}"] for i in range(3)]
    assert run.calls == [["a"], ["b0", "c0", "b1", "c1", "b2", "c2"]]
    assert group.calls == 2


async def test_a_failed_call_fails_every_submission_in_it_and_the_next_call_runs():
    run = Runner()
    group = GroupCommit(run)
    async with asyncio.timeout(WAIT):
        first = await in_flight(group, run)
        waiting = await queued(group, ["b"], ["c"])
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
        first = await in_flight(group, run)
        gone, kept = await queued(group, ["b"], ["c"])
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
        first = await in_flight(group, run)
        (waiting,) = await queued(group, ["hang"])
        run.gate.set()
        await first
        await run.hanging.wait()  # the drain's call, which never ends by itself
        await group.close()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        assert await group.submit(["b"]) == ["r:b"]  # usable again
