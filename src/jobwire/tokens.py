"""Minting and verifying jobwire tokens from Python, so an application never writes JWT code:

    from jobwire.tokens import Tokens
    tokens = Tokens(secret=SECRET)                       # or Tokens.from_env()
    token = tokens.mint("42", role="user", ttl=600)      # hand it to the user's browser
    tokens.verify(token)                                  # Principal(user_id='42', ...)

The same rules as the server's: one algorithm (HS256 by default; RS*/ES* with keys), user ids of
1-128 characters of A-Z a-z 0-9 _ . : -, roles user, admin or publisher."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from .auth import JwtAuth, Principal, Role

__all__ = ["Principal", "Role", "Tokens", "mint", "verify"]


class Tokens:
    def __init__(self, secret: str | None = None, *, algorithm: str = "HS256",
                 private_key: str | None = None, public_key: str | None = None):
        self._auth = JwtAuth(secret=secret, algorithm=algorithm, public_key=public_key,
                             private_key=private_key)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Tokens:
        """The server's own key settings: JOBWIRE_SECRET, JOBWIRE_JWT_ALGORITHM,
        JOBWIRE_JWT_PRIVATE_KEY and JOBWIRE_JWT_PUBLIC_KEY (a PEM, or @path)."""
        from .config import Settings

        settings = Settings.load(os.environ if env is None else env)
        return cls.from_settings(settings)

    @classmethod
    def from_settings(cls, settings: Any) -> Tokens:
        return cls(settings.secret, algorithm=settings.jwt_algorithm,
                   private_key=settings.jwt_private_key, public_key=settings.jwt_public_key)

    def mint(self, user_id: str, role: Role | str = Role.USER, *, ttl: float = 3600,
             claims: Mapping[str, Any] | None = None) -> str:
        """A token for `user_id` valid `ttl` seconds. `claims` adds claims of your own (jobwire
        ignores them); `sub`, `role`, `iat`, `exp` and `nbf` are jobwire's. A bad user id,
        role or claim raises ValueError."""
        return self._auth.mint(user_id, role, ttl=ttl, claims=claims)

    def verify(self, token: str) -> Principal:
        """The principal a token names, or jobwire.errors.Unauthorized (`invalid token`,
        `token expired`, ...)."""
        return self._auth.verify(token)


def mint(user_id: str, role: Role | str = Role.USER, *, ttl: float = 3600,
         claims: Mapping[str, Any] | None = None, secret: str | None = None) -> str:
    """`Tokens(secret).mint(...)`, or with the environment's key settings if no secret."""
    tokens = Tokens(secret) if secret is not None else Tokens.from_env()
    return tokens.mint(user_id, role, ttl=ttl, claims=claims)


def verify(token: str, *, secret: str | None = None) -> Principal:
    """`Tokens(secret).verify(token)`, or with the environment's key settings if no secret."""
    tokens = Tokens(secret) if secret is not None else Tokens.from_env()
    return tokens.verify(token)
