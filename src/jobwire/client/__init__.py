"""Python client of jobwire: `JobwireClient` follows jobs live over WebSocket, falling back to
Server-Sent Events, long-polling and polling, and resumes from its cursor after every
reconnect. See `jobwire.client.client` for the items it yields."""

from .backoff import Backoff, FailureWindow, ceiling, full_jitter
from .client import TRANSPORTS, JobwireClient
from .errors import AuthError, ClientError

TERMINAL = frozenset({"completed", "failed", "cancelled"})

__all__ = ["TERMINAL", "TRANSPORTS", "AuthError", "Backoff", "ClientError", "FailureWindow",
           "JobwireClient", "ceiling", "full_jitter"]
