"""Client errors. `ClientError` and its subclasses reach the caller (they end iteration);
`TransportFailure` and its subclasses stay inside the client and drive reconnection."""

from __future__ import annotations


class ClientError(Exception):
    """A failure that retrying cannot fix (refused subscription, bad request, no transport)."""


class AuthError(ClientError):
    """The server refused the token and no fresh one could be had."""


class TransportFailure(Exception):
    """One connection (or request) failed. `counts`: it counts towards abandoning the
    transport; `immediate`: reconnecting at once is appropriate (server restarting)."""

    counts = True

    def __init__(self, reason: str, *, immediate: bool = False, counts: bool | None = None):
        super().__init__(reason)
        self.immediate = immediate
        if counts is not None:
            self.counts = counts


class Unsupported(TransportFailure):
    """The server does not offer this transport (endpoint removed): try the next one."""


class Unreachable(TransportFailure):
    """The server could not be reached at all; another transport would not help."""

    counts = False


class Unauthorized(TransportFailure):
    """`401` / close `4401`: reconnect with a fresh token."""

    counts = False
