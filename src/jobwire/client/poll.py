"""Regular polling, `/api/v2/jobs/status`: the current state of each job, as often as the
server's `Retry-After` suggests (at most `max_poll_interval` apart), with `If-None-Match`.
The first answer is the snapshot; after it each changed job is passed on as its latest
event (intermediate events between two polls are not seen: a `seq` gap)."""

from __future__ import annotations

import asyncio

import httpx

from .base import Conn, check, http_failure
from .state import Tracker, pos

NAME = "poll"
PATH = "/api/v2/jobs/status"
DEFAULT_INTERVAL = 5.0


async def run(conn: Conn, tracker: Tracker) -> None:
    etag: str | None = None
    first = True
    while True:
        headers = await conn.headers()
        if etag:
            headers["If-None-Match"] = etag
        try:
            response = await conn.http.get(conn.endpoint(PATH), headers=headers,
                                           params=conn.job_params(),
                                           timeout=conn.open_timeout)
        except httpx.HTTPError as exc:
            raise http_failure(exc) from exc
        check(response)
        if response.status_code == 200:
            etag = response.headers.get("etag")
            body = response.json()
            jobs = body.get("jobs", [])
            if first:
                await tracker.subscribed(NAME, jobs, body.get("cursor"))
            else:
                for state in sorted(jobs, key=lambda s: pos(s["id"])):
                    await tracker.event(state)
        first = False
        await asyncio.sleep(interval(response.headers.get("retry-after"),
                                     conn.max_poll_interval))


def interval(retry_after: str | None, maximum: float) -> float:
    try:
        value = float(retry_after) if retry_after is not None else DEFAULT_INTERVAL
    except ValueError:
        value = DEFAULT_INTERVAL
    return max(0.0, min(value, maximum))
