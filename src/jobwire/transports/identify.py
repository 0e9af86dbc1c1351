"""Who a request or a WebSocket handshake is: a jobwire token, an app session, or the
application's authenticate hook, in that order; and the Origin rule for every credential a
browser attaches on its own."""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.requests import HTTPConnection

from ..auth import Credentials, Principal, Transport, located_token
from ..errors import Forbidden
from .origin import origin_allowed

if TYPE_CHECKING:
    from ..service import Service


def credentials_of(conn: HTTPConnection, transport: Transport) -> Credentials:
    return Credentials(headers=conn.headers, cookies=conn.cookies, query=conn.query_params,
                       transport=transport, client=conn.client.host if conn.client else None)


async def identify(conn: HTTPConnection, service: Service,
                   transport: Transport) -> Principal | None:
    """The principal, None when the request carries nothing to go on (HTTP then answers 401,
    a WebSocket waits for an in-band `auth`), or the credential's error.

    A browser sends cookies to any site that asks, so whatever authenticates by cookie (the
    token cookie, the session cookie, the hook, which may read any cookie) needs an allowed
    Origin: refused with `origin not allowed` otherwise (403; WebSocket close 1008). A token
    in the header or query was put there by the page itself and is never checked."""
    token, source = located_token(conn.headers, conn.query_params, conn.cookies)
    store, hook = service.sessions_store, service.authenticate_hook
    session_id = conn.cookies.get(service.settings.session_cookie) if store else None
    # A value that is not a JWT may be the app's own credential: the session store's, else
    # the hook's to judge (it sees the same headers).
    jobwire_token = token is not None and (
        token.count(".") == 2 or store is not None or hook is None)
    if jobwire_token or session_id is not None:
        if source == "cookie" or (token is None and session_id is not None):
            _check_origin(conn, service)
        return await service.authenticate(token, session_id)
    if hook is None:
        return None
    principal = await hook(credentials_of(conn, transport))
    if principal is not None:
        _check_origin(conn, service)
    return principal


def _check_origin(conn: HTTPConnection, service: Service) -> None:
    if not origin_allowed(conn.headers, service.settings.origin_list):
        raise Forbidden("origin not allowed")
