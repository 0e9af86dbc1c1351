"""The turns heartbeats go out in: every WebSocket session once per interval, at a tick fixed
for its life, sessions spread evenly over the ticks, ended ones let go."""

from __future__ import annotations

from jobwire.auth import Principal, Role
from jobwire.heartbeats import HeartbeatTurns
from jobwire.session import Session


def open_sessions(sessions: dict[Session, str], n: int, transport: str = "websocket"
                  ) -> list[Session]:
    opened = [Session(Principal(f"u{i}", Role.USER)) for i in range(n)]
    sessions.update(dict.fromkeys(opened, transport))
    return opened


def one_interval(turns: HeartbeatTurns, sessions: dict[Session, str], first_tick: int
                 ) -> list[list[Session]]:
    return [list(turns.due(sessions, tick))
            for tick in range(first_tick, first_tick + turns.ticks)]


def test_every_websocket_session_once_an_interval_at_the_same_tick_spread_evenly():
    turns = HeartbeatTurns(15.0)
    assert (turns.ticks, turns.tick_seconds) == (15, 1.0)
    sessions: dict[Session, str] = {}
    websockets = open_sessions(sessions, 300)
    open_sessions(sessions, 20, "sse")  # SSE streams time their own heartbeats
    first = one_interval(turns, sessions, 1)
    assert sorted(s.serial for tick in first for s in tick) == sorted(
        s.serial for s in websockets)
    assert {len(tick) for tick in first} == {20}
    assert one_interval(turns, sessions, 16) == first


def test_a_new_session_gets_its_first_turn_within_an_interval_and_ended_ones_leave():
    turns = HeartbeatTurns(4.0)
    sessions: dict[Session, str] = {}
    early = open_sessions(sessions, 8)
    one_interval(turns, sessions, 1)
    gone = early[:4]
    for session in gone:
        del sessions[session]
    late = open_sessions(sessions, 8)
    beaten = [s for tick in one_interval(turns, sessions, 5) for s in tick]
    assert sorted(s.serial for s in beaten) == sorted(s.serial for s in early[4:] + late)
    assert not set(gone) & {s for turn in turns.turns for s in turn}


def test_a_short_interval_is_one_turn():
    turns = HeartbeatTurns(0.3)
    assert (turns.ticks, turns.tick_seconds) == (1, 0.3)
    sessions: dict[Session, str] = {}
    opened = open_sessions(sessions, 5)
    assert turns.due(sessions, 1) == opened == turns.due(sessions, 2)
