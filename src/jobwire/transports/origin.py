"""Cross-site checks: a browser's `Origin` must be this server or an allowed origin."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.requests import HTTPConnection

from ..auth import located_token

if TYPE_CHECKING:
    from ..service import Service


def origin_allowed(headers: Any, allowed: tuple[str, ...]) -> bool:
    origin = headers.get("origin")
    if origin is None:
        return True  # not a browser: cross-site hijacking needs one
    origin = origin.rstrip("/")
    if origin in allowed or "*" in allowed:
        return True
    host = headers.get("host", "")
    return origin.split("://", 1)[-1] == host



def cookie_from_foreign_origin(conn: HTTPConnection, service: Service) -> bool:
    """Whether a request (a WebSocket handshake, an SSE stream) authenticates by a cookie and
    comes from an origin that is not allowed. A browser attaches cookies on its own to
    requests from any site; a token in the header or the query was put there by the page
    itself, so it is never subject to this check. What decides is where the token came
    from, not its value. With app sessions and no token, the session cookie authenticates."""
    _, source = located_token(conn.headers, conn.query_params, conn.cookies)
    by_cookie = source == "cookie" or (
        source is None and service.sessions_store is not None
        and conn.cookies.get(service.settings.session_cookie) is not None)
    return by_cookie and not origin_allowed(conn.headers, service.settings.origin_list)
