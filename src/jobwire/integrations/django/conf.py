"""The Django settings this app reads, each with its default.

- JOBWIRE_SECRET: signs jobwire tokens (the token view, and the router's jobwire). Unset:
  JOBWIRE_OPTIONS["secret"], else the JOBWIRE_SECRET environment variable and the other key
  variables (`Tokens.from_env()`).
- JOBWIRE_TOKEN_TTL: seconds a token from the token view lives (300).
- JOBWIRE_PREFIX: where the ASGI router mounts jobwire ("/realtime").
- JOBWIRE_SCRIPT_URL: the URL `{% jobwire_script %}` loads (JOBWIRE_PREFIX + "/static/jobwire.js").
- JOBWIRE_OPTIONS: more jobwire settings for the router's jobwire, as keywords of
  `jobwire.asgi.Jobwire` (`{"redis_url": ..., "allowed_origins": ...}`), on top of the
  JOBWIRE_* environment variables.
"""

from __future__ import annotations

import functools
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from ...tokens import Tokens

DEFAULT_PREFIX = "/realtime"
DEFAULT_TOKEN_TTL = 300


def secret() -> str | None:
    # One key for the tokens the view mints and the mounted jobwire that verifies them.
    return getattr(settings, "JOBWIRE_SECRET", None) or options().get("secret") or None


def token_ttl() -> int:
    return int(getattr(settings, "JOBWIRE_TOKEN_TTL", DEFAULT_TOKEN_TTL))


def prefix() -> str:
    value = str(getattr(settings, "JOBWIRE_PREFIX", DEFAULT_PREFIX)).strip("/")
    if not value:  # jobwire at the root would hide every page of the site
        raise ImproperlyConfigured("JOBWIRE_PREFIX must be a path such as /realtime")
    return "/" + value


def script_url() -> str:
    return getattr(settings, "JOBWIRE_SCRIPT_URL", None) or prefix() + "/static/jobwire.js"


def options() -> dict[str, Any]:
    return dict(getattr(settings, "JOBWIRE_OPTIONS", None) or {})


def tokens() -> Tokens:
    return _tokens(secret())


@functools.lru_cache(maxsize=4)
def _tokens(secret: str | None) -> Tokens:
    # Keyed by the secret, so a test's override_settings takes effect.
    return Tokens(secret) if secret else Tokens.from_env()
