"""Token → principal. JWT (HS256 by default; RS256/ES256 with a public key). Pure but for key
loading: the transports pull the token out of a request and hand it here."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Literal

import jwt

from .errors import ConfigError, Unauthorized

ID_RE = re.compile(r"^[A-Za-z0-9_.:\-]{1,128}$")
ASYMMETRIC = ("RS256", "RS384", "RS512", "ES256", "ES384", "ES512")
SYMMETRIC = ("HS256", "HS384", "HS512")
CACHE_SIZE = 4096  # verified tokens remembered


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
             now: float | None = None) -> str:
        if self._sign_key is None:
            raise ConfigError("minting needs the private key (JOBWIRE_JWT_PRIVATE_KEY)")
        if not ID_RE.fullmatch(user_id):
            raise ValueError(f"user id {user_id!r} must be 1-128 characters of A-Z a-z 0-9 _ . : -")
        issued = int(now if now is not None else time.time())
        claims = {"sub": user_id, "role": Role(role).value, "iat": issued,
                  "exp": issued + int(ttl)}
        return jwt.encode(claims, self._sign_key, algorithm=self.algorithm)


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
