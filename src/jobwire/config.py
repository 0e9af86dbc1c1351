"""Settings: every name, default and limit in one table, read from `JOBWIRE_*` variables and
`jobwire serve` flags, validated once at start-up with messages that name the bad value."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import ConfigError

TRANSPORTS = ("websocket", "sse", "longpoll", "poll")


def _setting(default: Any, help: str, minimum: float | None = None) -> Any:
    return field(default=default, metadata={"help": help, "min": minimum})


@dataclass(frozen=True)
class Settings:
    host: str = _setting("127.0.0.1", "address to listen on")
    port: int = _setting(3000, "port to listen on", 0)
    workers: int = _setting(1, "server processes sharing the port; above 1 needs Redis", 1)
    secret: str | None = _setting(None, "HMAC secret that signs tokens (required for HS*)")
    jwt_algorithm: str = _setting("HS256", "JWT algorithm: HS256/384/512, RS256…, ES256…")
    jwt_public_key: str | None = _setting(None, "PEM public key (or @path) for RS*/ES*")
    jwt_private_key: str | None = _setting(None, "PEM private key (or @path), to mint RS*/ES*")
    redis_url: str | None = _setting(None, "Redis URL; unset: in-process broker")
    redis_prefix: str = _setting("jobwire:", "prefix of every Redis key")
    redis_durable_replicas: int = _setting(
        0, "replicas that must confirm a publish before it is acknowledged (WAIT)", 0)
    redis_channel_prefix: str = _setting("", "prefix of the Redis pub/sub channel names")
    redis_partitions: int = _setting(
        16, "Redis Cluster: partitions users are spread over (the same on every instance, "
            "for the life of the data)", 1)
    authenticate: str | None = _setting(
        None, "the app's sign-in for requests without a token: package.module:function "
              "returning jobwire.auth.Identity or None")
    session_prefix: str = _setting("", "Redis key prefix of app sessions ({userId, role} JSON); "
                                       "empty: sessions off")
    session_redis_url: str | None = _setting(None, "Redis holding the sessions; unset: "
                                                   "JOBWIRE_REDIS_URL")
    session_cookie: str = _setting("sessionid", "cookie that carries a session id")
    transports: str = _setting("websocket,sse,longpoll,poll", "enabled transports")
    ws_fast_path: str = _setting("on", "WebSocket frames written straight to uvicorn's "
                                       "connections if its start-up check passes; off: ASGI")
    heartbeat_seconds: float = _setting(
        15.0, "heartbeat interval; also the time a WebSocket peer has to answer a ping and to "
              "acknowledge what was written to it", 0.05)
    ws_ping_seconds: float = _setting(
        60.0, "WebSocket protocol ping interval, for peers that stop answering above TCP "
              "(behind a proxy); 0: no pings", 0)
    auth_timeout_seconds: float = _setting(10.0, "time to send `auth` on a WebSocket", 0.05)
    allowed_origins: str = _setting("", "comma-separated browser origins; empty: same origin")
    max_message_bytes: int = _setting(65536, "largest WebSocket message or update body", 256)
    max_batch_bytes: int = _setting(1048576, "largest batch publish body", 256)
    max_batch_items: int = _setting(1000, "most updates in one batch publish", 1)
    max_subscriptions: int = _setting(1000, "most subscriptions per connection", 1)
    max_outbox: int = _setting(1000, "messages buffered per connection before shedding", 8)
    max_messages_per_second: float = _setting(
        50.0, "client messages per WebSocket (bursts of 2x); 0: no limit", 0)
    max_connections_per_second_per_user: float = _setting(
        10.0, "new WebSocket/SSE connections per user (bursts of 10x); 0: no limit", 0)
    max_connections_per_second_per_ip: float = _setting(
        100.0, "new WebSocket/SSE connections per client IP (bursts of 10x); 0: no limit", 0)
    max_connections_per_user: int = _setting(
        100, "open WebSocket/SSE connections per user; 0: no limit", 0)
    max_longpolls_per_user: int = _setting(100, "waiting long-polls per user; 0: no limit", 0)
    max_publishes_per_second: float = _setting(
        5000.0, "updates per second per publisher (bursts of 2x); 0: no limit", 0)
    history_size: int = _setting(1000, "events retained per user", 1)
    global_history_size: int = _setting(10000, "events retained for admins' all-jobs view", 1)
    history_ttl_seconds: float = _setting(86400.0, "how long events are retained", 1)
    max_updates_per_job_per_second: float = _setting(10.0, "progress conflation rate", 0)
    stalled_after_seconds: float = _setting(60.0, "silence before `job_stalled`", 0.05)
    shutdown_timeout_seconds: float = _setting(10.0, "graceful shutdown deadline", 0)
    log_level: str = _setting("info", "debug, info, warning or error")
    log_format: str = _setting("text", "text, or json: one object per line")

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value, minimum = getattr(self, f.name), f.metadata.get("min")
            if minimum is not None and value < minimum:
                raise ConfigError(f"{env_name(f.name)}={value} must be at least {minimum}")
        unknown = set(self.transport_list) - set(TRANSPORTS)
        if unknown or not self.transport_list:
            raise ConfigError(f"JOBWIRE_TRANSPORTS={self.transports!r}: choose from "
                              f"{', '.join(TRANSPORTS)}")
        if self.port > 65535:
            raise ConfigError(f"JOBWIRE_PORT={self.port} is not a TCP port")
        if self.ws_fast_path not in ("on", "off"):
            raise ConfigError(f"JOBWIRE_WS_FAST_PATH={self.ws_fast_path!r}: on or off")
        if self.log_format not in ("text", "json"):
            raise ConfigError(f"JOBWIRE_LOG_FORMAT={self.log_format!r}: text or json")
        if self.log_level not in ("debug", "info", "warning", "error"):
            raise ConfigError(f"JOBWIRE_LOG_LEVEL={self.log_level!r}: debug, info, warning, error")
        if self.workers > 1 and self.redis_url is None:
            raise ConfigError(f"JOBWIRE_WORKERS={self.workers} needs JOBWIRE_REDIS_URL: the "
                              "in-process broker cannot be shared between processes")
        if self.workers > 1 and self.port == 0:
            raise ConfigError(f"JOBWIRE_WORKERS={self.workers} needs a fixed JOBWIRE_PORT: "
                              "with port 0 each worker would listen on a port of its own")
        if self.redis_url is not None and not self.redis_url.startswith(
                ("redis://", "rediss://", "unix://", "redis+sentinel://", "redis+cluster://")):
            raise ConfigError(f"JOBWIRE_REDIS_URL={self.redis_url!r}: use redis://host:port/db, "
                              "rediss://…, unix://path, redis+sentinel://host:port,…/master "
                              "or redis+cluster://host:port,host:port…")
        if self.redis_partitions > 1024:
            raise ConfigError(f"JOBWIRE_REDIS_PARTITIONS={self.redis_partitions}: at most 1024")
        if (self.redis_url or "").startswith("redis+cluster://") and (
                "{" in self.redis_prefix or "}" in self.redis_prefix):
            raise ConfigError(f"JOBWIRE_REDIS_PREFIX={self.redis_prefix!r}: no '{{' or '}}' "
                              "on Redis Cluster (they would choose the keys' slot)")

    @property
    def transport_list(self) -> tuple[str, ...]:
        return tuple(t.strip() for t in self.transports.split(",") if t.strip())

    @property
    def origin_list(self) -> tuple[str, ...]:
        return tuple(o.strip().rstrip("/") for o in self.allowed_origins.split(",") if o.strip())

    @classmethod
    def load(cls, env: Mapping[str, str], overrides: Mapping[str, Any] | None = None
             ) -> Settings:
        """Environment first, then explicit overrides (command-line flags) on top."""
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            raw = env.get(env_name(f.name))
            if raw is not None and raw != "":
                values[f.name] = _convert(f, raw)
        for key, value in (overrides or {}).items():
            if value is not None:
                values[key] = value
        for key in ("jwt_public_key", "jwt_private_key"):
            values[key] = _read_key(key, values.get(key))
        return cls(**values)


def env_name(field_name: str) -> str:
    return "JOBWIRE_" + field_name.upper()


def _convert(f: dataclasses.Field[Any], raw: str) -> Any:
    kind = f.type if isinstance(f.type, str) else f.type.__name__
    try:
        if kind.startswith("int"):
            return int(raw)
        if kind.startswith("float"):
            return float(raw)
    except ValueError:
        raise ConfigError(f"{env_name(f.name)}={raw!r} is not a number") from None
    return raw


def _read_key(name: str, value: str | None) -> str | None:
    if value and value.startswith("@"):
        try:
            with open(value[1:], encoding="utf-8") as fh:
                return fh.read()
        except OSError as exc:
            raise ConfigError(f"{env_name(name)}: cannot read {value[1:]}: {exc}") from None
    return value


def describe() -> list[tuple[str, str, str]]:
    """(variable, default, meaning) for every setting: the README's table comes from this."""
    return [(env_name(f.name), str(f.default), f.metadata["help"])
            for f in dataclasses.fields(Settings)]
