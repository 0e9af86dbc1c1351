"""An application's own sign-in, for `JOBWIRE_AUTHENTICATE=tests.integration.hook_app:...`:
the `app_session` cookie names the user, the way a web app's session cookie does."""

from __future__ import annotations

import asyncio
import time

from jobwire.auth import Credentials, Identity
from jobwire.errors import Unauthorized

FIXED = {"s-alice": Identity("alice"), "s-bob": Identity("bob"),
         "s-root": Identity("root", "admin"), "s-badid": Identity("not a valid id!")}


def authenticate(credentials: Credentials) -> Identity | None:
    session = credentials.cookies.get("app_session")
    if session is None:
        return None
    if session in FIXED:
        return FIXED[session]
    if session.startswith("exp-"):  # exp-<unix seconds>: a session that ends then
        return Identity("alice", expires_at=float(session[4:]))
    if session.startswith("only-"):  # only-<transport>: signed in on that transport alone
        return Identity("alice") if credentials.transport == session[5:] else None
    if session == "s-banned":
        raise Unauthorized("banned")
    if session == "s-boom":
        raise RuntimeError("the session database is down")
    if session == "s-wrong":
        return ("alice", "user")  # type: ignore[return-value]  # not an Identity
    return None


async def authenticate_async(credentials: Credentials) -> Identity | None:
    await asyncio.sleep(0)
    return authenticate(credentials)


def expiring_in(seconds: float) -> str:
    return f"exp-{time.time() + seconds:.3f}"
