"""Long-polling transport, `/api/v2/jobs/poll`. Without a cursor the first answer is the
snapshot; with one, a first quick poll (`timeout=0`) confirms the server answers, then each
poll waits for events after the cursor. The server keeps no session: the cursor is all."""

from __future__ import annotations

from typing import Any

import httpx

from .base import Conn, check, http_failure
from .errors import TransportFailure
from .state import Tracker

NAME = "longpoll"
PATH = "/api/v2/jobs/poll"


async def _get(conn: Conn, params: dict[str, Any], wait: float) -> dict[str, Any]:
    # The server answers by `wait` at the latest: an answer later than that and a margin
    # (heartbeats' worth) means a dead link, not a slow server.
    timeout = httpx.Timeout(conn.open_timeout, read=wait + conn.overrun_margin)
    try:
        response = await conn.http.get(conn.endpoint(PATH), headers=await conn.headers(),
                                       params={**conn.job_params(), **params}, timeout=timeout)
    except httpx.HTTPError as exc:
        raise http_failure(exc) from exc
    check(response)
    body = response.json()
    if not isinstance(body, dict) or "cursor" not in body:
        raise TransportFailure("unexpected long-poll answer")
    return body


async def run(conn: Conn, tracker: Tracker) -> None:
    if tracker.cursor is None:
        body = await _get(conn, {}, 0)
        await tracker.subscribed(NAME, body.get("jobs", []), body["cursor"])
    else:
        body = await _answer(conn, tracker, {"last_seen": tracker.cursor, "timeout": 0}, 0)
        if body.get("error") is None:
            await tracker.subscribed(NAME, [], tracker.cursor, errors=body.get("errors", []),
                                     replay=True)
        await _events(tracker, body)
    while True:
        params = {"last_seen": tracker.cursor, "timeout": conn.longpoll_timeout}
        await _events(tracker, await _answer(conn, tracker, params, conn.longpoll_timeout))


async def _answer(conn: Conn, tracker: Tracker, params: dict[str, Any],
                  wait: float) -> dict[str, Any]:
    body = await _get(conn, params, wait)
    error = body.get("error")
    if isinstance(error, dict) and error.get("code") == "cursor_expired":
        # Too old to replay: the current states and a fresh cursor instead.
        await tracker.subscribed(NAME, body.get("jobs", []), body["cursor"],
                                 errors=[{"type": "error", **error}])
    return body


async def _events(tracker: Tracker, body: dict[str, Any]) -> None:
    for event in body.get("events", []):
        await tracker.event(event)
