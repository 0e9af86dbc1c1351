"""The host app's own sign-in: two demo users, and sessions kept in a dict keyed by a random
cookie. jobwire knows nothing of them; its authentication hook (`jobwire_user`) asks this
store who a request's cookie belongs to, so the browser needs no jobwire token."""

from __future__ import annotations

import hmac
import secrets

from jobwire.auth import Credentials, Identity

COOKIE = "example_session"

# Demo accounts. A real app checks salted password hashes in its database.
USERS = {"alice": "alice-password", "bob": "bob-password"}


class Sessions:
    """Signed-in browsers: session id (the cookie's value) → user name. In memory, so a
    restart signs everyone out; a real app uses its database or Redis."""

    def __init__(self) -> None:
        self._users: dict[str, str] = {}

    def sign_in(self, username: str, password: str) -> str | None:
        """A new session id for valid credentials, else None."""
        expected = USERS.get(username)
        # compare_digest: the time taken does not tell how much of a password was right.
        if expected is None or not hmac.compare_digest(expected.encode(), password.encode()):
            return None
        session_id = secrets.token_urlsafe(32)
        self._users[session_id] = username
        return session_id

    def user(self, session_id: str | None) -> str | None:
        return self._users.get(session_id) if session_id else None

    def sign_out(self, session_id: str | None) -> None:
        if session_id:
            self._users.pop(session_id, None)

    def jobwire_user(self, credentials: Credentials) -> Identity | None:
        """jobwire's authentication hook: the signed-in user of the request's session cookie,
        or None (jobwire then refuses the connection). The user name is the jobwire user id,
        so each user sees only the jobs published for that name."""
        user = self.user(credentials.cookies.get(COOKIE))
        return Identity(user, "user") if user else None
