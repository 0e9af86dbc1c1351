"""Who is asking → principal: a JWT (HS256 by default; RS256/ES256 with a public key), or an
application's own authenticate hook. Pure but for key loading and running the hook: the
transports pull the credentials out of a request and hand them here."""

from __future__ import annotations

import asyncio
import importlib
import inspect
import logging
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Literal

import jwt

from .errors import BrokerUnavailable, ConfigError, JobwireError, Unauthorized

__all__ = ["AuthenticateHook", "Credentials", "Identity", "JwtAuth", "Principal", "Role"]

log = logging.getLogger("jobwire.auth")

ID_RE = re.compile(r"^[A-Za-z0-9_.:\-]{1,128}$")
ASYMMETRIC = ("RS256", "RS384", "RS512", "ES256", "ES384", "ES512")
SYMMETRIC = ("HS256", "HS384", "HS512")
CACHE_SIZE = 4096  # verified tokens remembered
RESERVED_CLAIMS = frozenset({"sub", "role", "iat", "exp", "nbf"})  # what mint() decides


class Role(StrEnum):
    USER = "user"
    ADMIN = "admin"
    PUBLISHER = "publisher"


@dataclass(frozen=True, slots=True)
class Principal:
    user_id: str
    role: Role
    expires_at: float | None = None  # Unix seconds, from `exp`

    @property
    def is_admin(self) -> bool:
        return self.role is Role.ADMIN

    @property
    def can_read(self) -> bool:
        return self.role is not Role.PUBLISHER

    @property
    def can_publish(self) -> bool:
        return self.role in (Role.PUBLISHER, Role.ADMIN)

    def may_see(self, owner: str | None) -> bool:
        """Delivery-time check: admins see all, users their own, publishers nothing."""
        if self.role is Role.ADMIN:
            return True
        return self.role is Role.USER and owner == self.user_id


def make_principal(user_id: object, role: object, expires_at: float | None,
                   source: str) -> Principal:
    """A principal from untrusted claims (a token's, a stored session's), or Unauthorized."""
    if not isinstance(user_id, str) or not ID_RE.fullmatch(user_id):
        raise Unauthorized(f"invalid {source} user")
    try:
        role = Role(role)
    except ValueError:
        raise Unauthorized(f"invalid {source} role") from None
    return Principal(user_id, role, expires_at)


class JwtAuth:
    """Verifies tokens with exactly one configured algorithm, so `alg: none` and HS/RS
    confusion are refused by construction."""

    def __init__(self, *, secret: str | None, algorithm: str = "HS256",
                 public_key: str | None = None, private_key: str | None = None,
                 leeway: float = 0.0):
        if algorithm in SYMMETRIC:
            if not secret:
                raise ConfigError("JOBWIRE_SECRET is required (set it, or run `jobwire demo`)")
            # RFC 7518 §3.2: an HMAC key at least as long as the hash output.
            minimum = int(algorithm[2:]) // 8
            if len(secret.encode()) < minimum:
                raise ConfigError(f"JOBWIRE_SECRET must be at least {minimum} bytes for "
                                  f"{algorithm} (got {len(secret.encode())})")
            self._verify_key: Any = secret
            self._sign_key: Any = secret
        elif algorithm in ASYMMETRIC:
            if not public_key:
                raise ConfigError(f"JOBWIRE_JWT_PUBLIC_KEY is required for {algorithm}")
            self._verify_key = public_key
            self._sign_key = private_key
        else:
            raise ConfigError(f"JOBWIRE_JWT_ALGORITHM {algorithm!r} is not supported; "
                              f"use one of {', '.join(SYMMETRIC + ASYMMETRIC)}")
        self.algorithm = algorithm
        self.leeway = leeway
        self._cache: dict[str, tuple[Principal, float]] = {}

    def verify(self, token: str | None) -> Principal:
        if not token:
            raise Unauthorized("a token is required")
        # A verified token stays valid until `exp`: skip the signature check on repeats
        # (publishers send the same token with every request).
        cached = self._cache.get(token)
        if cached is not None:
            principal, not_before = cached
            now = time.time()
            if now + self.leeway >= not_before and (
                    principal.expires_at is None or now - self.leeway < principal.expires_at):
                return principal
            del self._cache[token]
        principal, not_before = self._decode(token)
        if len(self._cache) >= CACHE_SIZE:
            self._cache.pop(next(iter(self._cache)))
        self._cache[token] = (principal, not_before)
        return principal

    def _decode(self, token: str) -> tuple[Principal, float]:
        try:
            claims = jwt.decode(
                token,
                self._verify_key,
                algorithms=[self.algorithm],
                options={"require": ["sub", "exp"], "verify_aud": False},
                leeway=self.leeway,
            )
        except jwt.ExpiredSignatureError:
            raise Unauthorized("token expired") from None
        except jwt.PyJWTError:
            raise Unauthorized("invalid token") from None
        exp, nbf = claims.get("exp"), claims.get("nbf")
        principal = make_principal(claims.get("sub"), claims.get("role", "user"),
                                   float(exp) if isinstance(exp, int | float) else None,
                                   source="token")
        return principal, float(nbf) if isinstance(nbf, int | float) else 0.0

    def mint(self, user_id: str, role: Role | str = Role.USER, ttl: float = 3600,
             now: float | None = None, claims: Mapping[str, Any] | None = None) -> str:
        if self._sign_key is None:
            raise ConfigError("minting needs the private key (JOBWIRE_JWT_PRIVATE_KEY)")
        if not isinstance(user_id, str) or not ID_RE.fullmatch(user_id):
            raise ValueError(f"user id {user_id!r} must be 1-128 characters of A-Z a-z 0-9 _ . : -")
        try:
            role = Role(role)
        except ValueError:
            raise ValueError(f"role {role!r} must be one of "
                             f"{', '.join(r.value for r in Role)}") from None
        reserved = RESERVED_CLAIMS.intersection(claims or ())
        if reserved:
            names = ", ".join(sorted(reserved))
            raise ValueError(f"claim{'s' if len(reserved) > 1 else ''} {names} "
                             f"{'are' if len(reserved) > 1 else 'is'} set by jobwire itself")
        issued = int(now if now is not None else time.time())
        payload = {**(claims or {}), "sub": user_id, "role": role.value, "iat": issued,
                   "exp": issued + int(ttl)}
        return jwt.encode(payload, self._sign_key, algorithm=self.algorithm)


TOKEN_COOKIE = "jobwire_token"
TokenSource = Literal["header", "query", "cookie"]


def located_token(headers: Any, query: Any,
                  cookies: Any) -> tuple[str, TokenSource] | tuple[None, None]:
    """The token of a request and where it came from: `Authorization: Bearer`, then
    `?token=`, then the cookie. Only a cookie is sent by a browser on its own, so only a
    cookie token needs the Origin check: the source decides, never the token's value."""
    header = headers.get("authorization")
    if header:
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip(), "header"
    if query.get("token"):
        return query["token"], "query"
    if cookies.get(TOKEN_COOKIE):
        return cookies[TOKEN_COOKIE], "cookie"
    return None, None


def token_from(headers: Any, query: Any, cookies: Any) -> str | None:
    """The token of a request: `Authorization: Bearer`, then `?token=`, then the cookie."""
    return located_token(headers, query, cookies)[0]


# --- The authentication hook: an application's own idea of who is asking ------------------

Transport = Literal["websocket", "sse", "longpoll", "poll", "publish"]


@dataclass(frozen=True, slots=True)
class Credentials:
    """What a hook is given: the request's headers (lower-case names), cookies and query, the
    transport asking, and the peer's address."""

    headers: Mapping[str, str]
    cookies: Mapping[str, str]
    query: Mapping[str, str]
    transport: Transport
    client: str | None = None


@dataclass(frozen=True, slots=True)
class Identity:
    """What a hook returns for a signed-in user: the jobwire user id (1-128 characters of
    A-Z a-z 0-9 _ . : -), the role (`user`, `admin` or `publisher`), and when it ends (Unix
    seconds; connections close with 4401 then), if it does."""

    user_id: str
    role: str = "user"
    expires_at: float | None = None


AuthenticateHook = Callable[[Credentials], "Identity | Awaitable[Identity | None] | None"]


class AuthHook:
    """Runs an application's `authenticate(credentials)`, sync (in a thread, so a database
    lookup does not stall every connection) or async, and turns its answer into a principal
    with the same checks a token gets. None means: this request is nobody."""

    def __init__(self, fn: AuthenticateHook):
        if not callable(fn):
            raise ConfigError(f"the authenticate hook {fn!r} is not callable")
        self.fn = fn
        # A coroutine function, or an object whose class has an async __call__.
        self.is_async = (inspect.iscoroutinefunction(fn)
                         or inspect.iscoroutinefunction(type(fn).__call__))

    async def __call__(self, credentials: Credentials) -> Principal | None:
        try:
            if self.is_async:
                answer = await self.fn(credentials)  # type: ignore[misc]
            else:
                answer = await asyncio.to_thread(self.fn, credentials)
                if inspect.isawaitable(answer):
                    answer = await answer
        except JobwireError:
            raise  # Unauthorized (refused with its message) or Forbidden, as the app chose
        except Exception as exc:
            log.exception("the authenticate hook failed")
            raise BrokerUnavailable("authentication is unavailable") from exc
        if answer is None:
            return None
        if not isinstance(answer, Identity):
            log.error("the authenticate hook returned %r, not an Identity or None",
                      type(answer).__name__)
            raise BrokerUnavailable("authentication is unavailable")
        expires = answer.expires_at
        if expires is not None and not isinstance(expires, int | float):
            raise Unauthorized("invalid hook expiry")
        if expires is not None and expires <= time.time():
            raise Unauthorized("session expired")
        return make_principal(answer.user_id, answer.role,
                              float(expires) if expires is not None else None, "hook")


def load_hook(path: str) -> AuthHook:
    """`package.module:attribute` (JOBWIRE_AUTHENTICATE) → the hook, or a ConfigError that
    names what is wrong."""
    module_name, sep, attribute = path.partition(":")
    if not sep or not module_name or not attribute:
        raise ConfigError(f"JOBWIRE_AUTHENTICATE={path!r}: use package.module:function")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"JOBWIRE_AUTHENTICATE={path!r}: cannot import {module_name}: "
                          f"{exc}") from None
    fn: Any = module
    for part in attribute.split("."):
        fn = getattr(fn, part, None)
    if fn is None:
        raise ConfigError(f"JOBWIRE_AUTHENTICATE={path!r}: {module_name} has no {attribute}")
    return AuthHook(fn)
