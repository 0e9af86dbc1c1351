"""Sign jobwire connections in with the Django session cookie: the authentication hook.

    Jobwire(authenticate=jobwire.integrations.django.auth.authenticate)
    # or for `jobwire serve` beside the Django site (same database, same SECRET_KEY), with
    # DJANGO_SETTINGS_MODULE set: JOBWIRE_AUTHENTICATE=jobwire.integrations.django.auth:authenticate

The cookie named SESSION_COOKIE_NAME is loaded with the SessionStore of SESSION_ENGINE and the
user found as `django.contrib.auth.get_user` finds it: the backend recorded in the session
(one of AUTHENTICATION_BACKENDS), and the session's auth hash checked against the user's
current password (or SECRET_KEY_FALLBACKS), so a password change signs jobwire out too.
Inactive users are refused. Staff are jobwire admins. The identity ends when the session does.
A session only reads: publishing takes a publisher token, so no page can be made to write job
status with a visitor's cookie.

Unlike `get_user`, it never writes the session: a request that cannot set a cookie must not
rotate the session key (which would sign the browser out) or flush it; the user's next Django
request does that.
"""

from __future__ import annotations

import threading
from importlib import import_module
from typing import Any

import django
from django.apps import apps
from django.conf import settings
from django.contrib.auth import (
    BACKEND_SESSION_KEY,
    HASH_SESSION_KEY,
    SESSION_KEY,
    get_user_model,
    load_backend,
)
from django.core.exceptions import ValidationError
from django.db import close_old_connections
from django.utils.crypto import constant_time_compare

from ...auth import Credentials, Identity

__all__ = ["authenticate", "identity_of", "role_of", "user_id_of"]


def user_id_of(user: Any) -> str:
    """The jobwire user id of a Django user: its primary key, which never changes (a
    username can, and may hold characters jobwire ids do not allow)."""
    return str(user.pk)


def role_of(user: Any) -> str:
    return "admin" if getattr(user, "is_staff", False) else "user"


def identity_of(user: Any, expires_at: float | None = None) -> Identity:
    return Identity(user_id_of(user), role_of(user), expires_at)


def authenticate(credentials: Credentials) -> Identity | None:
    """The hook: the identity of the session cookie's user, or None (not signed in). Sync:
    jobwire runs it in a thread, where Django's database access is allowed."""
    if credentials.transport == "publish":
        return None  # a browser's session reads; workers publish with publisher tokens
    _ensure_django()
    session_key = credentials.cookies.get(settings.SESSION_COOKIE_NAME)
    if not session_key:
        return None
    # As around each Django request: drop connections that are broken or past
    # CONN_MAX_AGE, so the threads this runs in never keep a stale one.
    close_old_connections()
    try:
        return _identity(session_key)
    finally:
        close_old_connections()


_setup_lock = threading.Lock()


def _ensure_django() -> None:
    """Under `jobwire serve` nothing has set Django up: do it on first use, from
    DJANGO_SETTINGS_MODULE. Inside the Django site it already is."""
    if apps.ready:
        return
    with _setup_lock:
        if not apps.ready:
            django.setup()


def _identity(session_key: str) -> Identity | None:
    data, expires_at = _load_session(session_key)
    try:
        user_id = get_user_model()._meta.pk.to_python(data[SESSION_KEY])
        backend_path = data[BACKEND_SESSION_KEY]
    except (KeyError, ValueError, TypeError, ValidationError):
        return None  # no session, or one without a (valid) user: anonymous
    if backend_path not in settings.AUTHENTICATION_BACKENDS:
        return None
    user = load_backend(backend_path).get_user(user_id)
    if user is None or not getattr(user, "is_active", True):
        return None
    if hasattr(user, "get_session_auth_hash") and not _hash_verified(data, user):
        return None
    return identity_of(user, expires_at)


def _hash_verified(data: dict[str, Any], user: Any) -> bool:
    session_hash = data.get(HASH_SESSION_KEY)
    if not session_hash:
        return False
    if constant_time_compare(session_hash, user.get_session_auth_hash()):
        return True
    return any(constant_time_compare(session_hash, fallback)
               for fallback in user.get_session_auth_fallback_hash())


def _load_session(session_key: str) -> tuple[dict[str, Any], float | None]:
    """The session's data ({} if unknown, expired or tampered with) and when it expires."""
    store = import_module(settings.SESSION_ENGINE).SessionStore(session_key)
    if store.session_key is None:  # not a well-formed key
        return {}, None
    row_of = getattr(store, "_get_session_from_db", None)
    if row_of is not None:
        # The database backends (db, cached_db): their row holds the real expiry, where the
        # store's get_expiry_date() counts from now and would extend the session on every
        # connection. None: missing or expired.
        row = row_of()
        if row is None:
            return {}, None
        return store.decode(row.session_data), row.expire_date.timestamp()
    data = store.load()
    if not data:
        return {}, None
    # Other backends keep no date to read: an expiry set on the session, else a full
    # SESSION_COOKIE_AGE from now (their own expiry then ends the session on the next
    # long-poll or connection).
    expires = store.get_expiry_date(expiry=data.get("_session_expiry"))
    return data, expires.timestamp()
