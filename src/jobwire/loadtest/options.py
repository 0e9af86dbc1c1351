"""The options of a load test, their parsing and their validation (pure)."""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from urllib.parse import urlsplit

TRANSPORTS = ("ws", "sse", "longpoll", "poll")
CHOICES = (*TRANSPORTS, "mixed")
WS_CLIENTS = ("picows", "websockets")
ALIASES = {"websocket": "ws"}
PUBLISHER_SHARE = 4000.0  # updates/s per publisher identity: under the default 5000/s limit

_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ms|h|m|s)?")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


def parse_duration(text: str) -> float:
    """Seconds from `30`, `30s`, `2.5s`, `500ms`, `2m`, `1h` or `1m30s`."""
    value = text.strip().lower()
    pos, total, parts = 0, 0.0, 0
    while pos < len(value):
        m = _DURATION.match(value, pos)
        if m is None or (m.group(2) is None and (parts or m.end() != len(value))):
            raise ValueError(f"invalid duration {text!r}: use e.g. 30, 30s, 500ms, 2m or 1m30s")
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos, parts = m.end(), parts + 1
    if not parts or not math.isfinite(total):
        raise ValueError(f"invalid duration {text!r}: use e.g. 30, 30s, 500ms, 2m or 1m30s")
    return total


def transport_of(index: int, transport: str) -> str:
    """Client `index`'s transport: `transport`, or for `mixed` an even round-robin split."""
    return TRANSPORTS[index % len(TRANSPORTS)] if transport == "mixed" else transport


@dataclass
class Options:
    urls: list[str] = field(default_factory=list)  # several: clients and publishing spread
    secret: str | None = None
    connections: int = 1000
    duration: float = 30.0
    rate: float = 1000.0  # updates per second
    concurrent: int = 200  # connection attempts in flight while ramping up
    transport: str = "ws"
    disconnect_every: int = 0  # clients force-closed every `disconnect_interval` seconds
    disconnect_interval: float = 2.0
    poll_interval: float = 1.0
    connect_timeout: float = 60.0  # the whole ramp-up
    server_pids: list[int] = field(default_factory=list)
    spawn: bool = False
    instances: int = 1  # with `spawn`: above 1, sharing a private redis-server
    json: bool = False  # the result as JSON on stdout
    json_path: str = ""  # the result file to write (and the report on stdout)
    progress: bool = False  # the live line on stderr
    publishers: int = 0  # publisher identities; 0: one per PUBLISHER_SHARE updates/s
    jobs_per_user: int = 0  # 0: enough that every job gets at most ~2 updates/s
    title: str = "load test"
    processes: int = 1  # reader processes: 1, in this one; above 1, that many workers
    ws_client: str = ""  # picows or websockets; empty: picows if installed

    def publisher_count(self) -> int:
        return self.publishers or max(1, math.ceil(self.rate / PUBLISHER_SHARE))


def validate(o: Options) -> list[str]:
    """What is wrong with the options (empty when they can run)."""
    problems = []
    if o.spawn and o.urls:
        problems.append("--url and --spawn exclude each other")
    if not o.spawn and not o.urls:
        problems.append("--url is required (or --spawn, to try it on a private local server)")
    for url in o.urls:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            problems.append(f"--url {url!r} must be http://host:port or https://host")
    if not o.spawn and not o.secret:
        problems.append("a secret is needed to mint tokens: --secret or JOBWIRE_SECRET")
    if o.connections < 1:
        problems.append("--connections must be at least 1")
    if not (o.duration > 0 and math.isfinite(o.duration)):
        problems.append("--duration must be positive")
    if not (o.rate > 0 and math.isfinite(o.rate)):
        problems.append("--updates-per-second must be positive")
    if o.concurrent < 1:
        problems.append("--concurrent must be at least 1")
    if o.transport not in CHOICES:
        problems.append(f"--transport must be one of {', '.join(CHOICES)}")
    if o.disconnect_every < 0:
        problems.append("--disconnect-every must not be negative")
    elif o.disconnect_every >= o.connections > 0:
        problems.append("--disconnect-every must be below --connections")
    if o.disconnect_interval <= 0:
        problems.append("--disconnect-interval must be positive")
    if o.poll_interval <= 0:
        problems.append("--poll-interval must be positive")
    if o.connect_timeout <= 0:
        problems.append("--connect-timeout must be positive")
    if o.instances < 1:
        problems.append("--instances must be at least 1")
    if o.instances > 1 and not o.spawn:
        problems.append("--instances is for --spawn (give several --url otherwise)")
    if o.processes < 1:
        problems.append("--processes must be at least 1")
    elif o.processes > max(1, o.connections):
        problems.append("--processes must not be above --connections")
    if o.ws_client and o.ws_client not in WS_CLIENTS:
        problems.append(f"--ws-client must be one of {', '.join(WS_CLIENTS)}")
    for pid in o.server_pids:
        if not os.path.exists(f"/proc/{pid}/stat"):
            problems.append(f"--server-pid {pid}: no such process here (/proc/{pid})")
    return problems
