"""Whose turn it is to get a heartbeat. The WebSocket heartbeats of an interval go out in
turns, a share of the sockets at each tick, so that thousands of writes never hold up the
event loop at once. A session's turn is its serial modulo the number of ticks, fixed for its
life, so its heartbeats stay one interval apart; a new session gets its first within an
interval. Each tick costs in proportion to the sessions due and the sessions opened since
the last, not to every open session."""

from __future__ import annotations

from .session import Session

TICK_SECONDS = 1.0  # turns about this far apart (an interval under 1.5 s is a single turn)


class HeartbeatTurns:
    def __init__(self, interval: float, transport: str = "websocket"):
        self.ticks = max(1, round(interval / TICK_SECONDS))
        self.tick_seconds = interval / self.ticks
        self.transport = transport
        self.turns: list[list[Session]] = [[] for _ in range(self.ticks)]
        self.newest = -1  # the highest serial taken in so far

    def due(self, sessions: dict[Session, str], tick: int) -> list[Session]:
        """The open sessions of `transport` whose turn `tick` is. `sessions` is the service's
        live sessions, in order of creation (a dict keeps the order of insertion, and each
        session is inserted as it is created): the new ones are at its end."""
        opened = []
        for session in reversed(sessions):
            if session.serial <= self.newest:
                break
            opened.append(session)
        if opened:
            self.newest = opened[0].serial
            for session in reversed(opened):
                if sessions[session] == self.transport:
                    self.turns[session.serial % self.ticks].append(session)
        turn = tick % self.ticks
        # Sessions that ended since their last turn leave here (they were held until now).
        kept = self.turns[turn] = [s for s in self.turns[turn] if s in sessions]
        return kept
