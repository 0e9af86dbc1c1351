"""Cross-site checks: a browser's `Origin` must be this server or an allowed origin."""

from __future__ import annotations

from typing import Any


def origin_allowed(headers: Any, allowed: tuple[str, ...]) -> bool:
    origin = headers.get("origin")
    if origin is None:
        return True  # not a browser: cross-site hijacking needs one
    origin = origin.rstrip("/")
    if origin in allowed or "*" in allowed:
        return True
    host = headers.get("host", "")
    return origin.split("://", 1)[-1] == host

