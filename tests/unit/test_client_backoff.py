"""The client's reconnection pacing: full-jitter exponential backoff, the failure window, and
the reconnect loop's choices (which transport next, how long to wait), with injected randomness
and time."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest

from jobwire.client import AuthError, Backoff, ClientError, FailureWindow, ceiling, full_jitter
from jobwire.client.base import Conn
from jobwire.client.errors import TransportFailure, Unauthorized, Unreachable, Unsupported
from jobwire.client.fallback import Fallback
from jobwire.client.state import Tracker
from tests.conftest import WAIT


def test_ceiling_doubles_from_base_up_to_the_cap():
    assert [ceiling(n, 0.5, 15) for n in range(7)] == [0.5, 1, 2, 4, 8, 15, 15]
    assert ceiling(10_000, 0.5, 15) == 15  # no overflow for a long outage
    assert ceiling(3, 1, 100, factor=3) == 27


def test_full_jitter_scales_the_ceiling_by_the_random_draw():
    assert full_jitter(3, 0.5, 15, rand=0.0) == 0
    assert full_jitter(3, 0.5, 15, rand=0.5) == 2
    assert full_jitter(3, 0.5, 15, rand=0.999) == pytest.approx(3.996)
    assert full_jitter(50, 0.5, 15, rand=0.5) == 7.5


def test_delays_stay_within_bounds_and_are_jittered():
    rng = random.Random(7)
    backoff = Backoff(base=0.5, cap=15, rand=rng.random)
    delays = [backoff.next_delay() for _ in range(40)]
    for n, delay in enumerate(delays):
        assert 0 <= delay < min(15, 0.5 * 2**n)
    late = delays[10:]
    assert max(late) <= 15
    assert len(set(late)) == len(late)  # jittered: no two the same
    assert min(late) < 7.5 < max(late)  # spread over [0, cap), not pinned to the cap


def test_the_draw_is_used_in_order_and_the_cap_holds():
    draws = iter([1 - 1e-9, 0.5, 0.25, 1 - 1e-9, 1 - 1e-9, 1 - 1e-9, 1 - 1e-9])
    backoff = Backoff(base=1, cap=10, rand=lambda: next(draws))
    got = [backoff.next_delay() for _ in range(7)]
    assert got == pytest.approx([1, 1, 1, 8, 10, 10, 10], abs=1e-6)
    assert backoff.attempt == 7


def test_reset_after_a_success_starts_again_from_base():
    backoff = Backoff(base=0.5, cap=30, rand=lambda: 1 - 1e-9)
    for _ in range(8):
        backoff.next_delay()
    assert backoff.next_delay() == pytest.approx(30)
    backoff.reset()
    assert backoff.attempt == 0
    assert backoff.next_delay() == pytest.approx(0.5)
    assert backoff.next_delay() == pytest.approx(1)


@pytest.mark.parametrize("kwargs", [{"base": 0}, {"base": 2, "cap": 1}, {"factor": 0.5}])
def test_nonsense_settings_are_refused(kwargs):
    with pytest.raises(ValueError):
        Backoff(**kwargs)


def test_failure_window_counts_only_recent_failures():
    window = FailureWindow(limit=3, window=10)
    assert not window.record(0)
    assert not window.record(4)
    assert window.record(9)  # three within 10 s: abandon
    window.clear()
    assert not window.record(20)
    assert not window.record(29)
    assert not window.record(35)  # the one at 20 s has left the window
    assert window.record(38)


def test_failure_window_spread_out_failures_never_trip_it():
    window = FailureWindow(limit=3, window=10)
    assert not any(window.record(n * 5.5) for n in range(40))


# The reconnect loop's decisions, with scripted transports, a fake clock and a fake sleep.

class Stop(Exception):
    pass


class Script:
    """Transports that fail as told; `open` first answers a subscription (a success)."""

    def __init__(self, sleeps: int = 8, **plans: list[dict]):
        self.plans = plans
        self.calls: list[str] = []
        self.delays: list[float] = []
        self.now = 0.0
        self.sleeps = sleeps

    def runner(self, name: str):
        async def run(conn: Conn, tracker: Tracker) -> None:
            self.calls.append(name)
            step = self.plans[name].pop(0) if self.plans[name] else {"fail": Unreachable("x")}
            if step.get("open"):
                await tracker.subscribed(name, [], None)
            if step.get("hang"):
                await asyncio.Event().wait()
            self.now += step.get("lived", 0.0)
            raise step["fail"]
        return run

    async def sleep(self, delay: float) -> None:
        self.delays.append(delay)
        if len(self.delays) >= self.sleeps:
            raise Stop

    async def run(self, token: Any = "t", **kwargs: Any) -> Fallback:
        fallback = Fallback([(n, self.runner(n)) for n in self.plans],
                            backoff=Backoff(base=1, cap=8, rand=lambda: 0.5),
                            clock=lambda: self.now, sleep=self.sleep, **kwargs)
        with pytest.raises(Stop):  # bounded: a transport that hangs for good fails the test
            await asyncio.wait_for(fallback.run(Conn("http://x", token, None), Tracker()), WAIT)
        return fallback


async def test_transports_the_server_lacks_are_skipped_at_once():
    script = Script(sleeps=3, websocket=[{"fail": Unsupported("403")}],
                    sse=[{"fail": Unsupported("404")}], longpoll=[{"open": True, "lived": 60,
                                                                   "fail": Unreachable("x")}])
    await script.run()
    assert script.calls == ["websocket", "sse", "longpoll"]
    assert script.delays == [0, 0, 0.5]  # skipping costs no wait


async def test_a_transport_that_keeps_failing_is_abandoned_for_the_next():
    fail = {"fail": TransportFailure("handshake timed out"), "lived": 1}
    script = Script(sleeps=3, websocket=[fail, fail, fail], sse=[])
    fallback = await script.run(max_failures=3, failure_window=60)
    assert script.calls == ["websocket"] * 3 and fallback.index == 1
    assert script.delays == [0.5, 1.0, 0.0]  # backoff, backoff, then the next one at once


async def test_an_unreachable_server_keeps_the_transport_with_capped_growing_delays():
    script = Script(sleeps=6, websocket=[], sse=[])
    await script.run()
    assert script.calls == ["websocket"] * 6
    assert script.delays == [0.5, 1, 2, 4, 4, 4]


async def test_restart_reconnects_at_once_and_a_success_resets_the_backoff():
    restart = TransportFailure("closed 1012", immediate=True, counts=False)
    script = Script(sleeps=5, websocket=[{"fail": Unreachable("x")}, {"fail": Unreachable("x")},
                                         {"open": True, "lived": 30, "fail": restart}])
    await script.run()
    assert script.delays == [0.5, 1.0, 0.0, 0.5, 1.0]


async def test_a_connection_that_opens_then_dies_fast_counts_as_a_failure():
    quick = {"open": True, "lived": 0.1, "fail": TransportFailure("closed 1006")}
    script = Script(sleeps=3, websocket=[quick, quick, quick], sse=[])
    fallback = await script.run(stable_after=5)
    assert script.calls == ["websocket"] * 3 and fallback.index == 1


async def test_a_refused_token_is_refreshed_once_at_once_or_ends_the_run():
    refused = {"fail": Unauthorized("4401")}
    with pytest.raises(AuthError):
        await Script(websocket=[refused]).run(token="static")
    script = Script(websocket=[refused, refused, refused])
    with pytest.raises(AuthError):
        await script.run(token=lambda: "fresh", max_auth_failures=3)
    assert script.delays == [0.0, 0.5]


async def test_nothing_offered_at_all_is_an_error():
    script = Script(websocket=[{"fail": Unsupported("403")}], poll=[{"fail": Unsupported("404")}])
    with pytest.raises(ClientError, match="no transport"):
        await script.run()


async def test_an_upgrade_probe_that_fails_goes_straight_back_down():
    script = Script(sleeps=4, websocket=[{"fail": Unsupported("403")}] * 2,
                    sse=[{"open": True, "hang": True}, {"open": True, "hang": True},
                         {"fail": Unreachable("x")}])
    await script.run(probe_interval=0.01)
    assert script.calls == ["websocket", "sse", "websocket", "sse", "websocket", "sse"]
    assert script.delays == [0, 0, 0, 0.5]
