"""Connecting to Redis (a URL, or a master named by Sentinel), and what a Redis failure
means to callers: `BrokerUnavailable`, a retry. Never "nothing": an empty answer read during
a failure would look like "no events" and move a client's cursor past what it missed."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any
from urllib.parse import unquote, urlsplit

import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ..errors import BrokerUnavailable

log = logging.getLogger("jobwire.redis")

MAX_CONNECTIONS = 64  # per instance, the subscriber's included
_UNREACHABLE = (RedisConnectionError, RedisTimeoutError, OSError)


def connect(url: str) -> aioredis.Redis:
    """A client for `redis://`, `rediss://`, `unix://`, a Sentinel URL
    `redis+sentinel://[:password@]host:port[,host:port…]/master-name[/db]`, whose client
    asks the sentinels for the current master on every new connection (so it follows a
    failover), or a cluster URL `redis+cluster://[:password@]host:port[,host:port…]` (any
    nodes of it: the client learns the rest)."""
    options: dict[str, Any] = dict(decode_responses=True, health_check_interval=5,
                                   socket_connect_timeout=2, socket_timeout=5)
    if url.startswith("redis+cluster://"):
        return _cluster(url)  # type: ignore[return-value]
    if not url.startswith("redis+sentinel://"):
        # A bounded pool that makes callers wait for a connection: a burst of thousands of
        # subscribes must queue, not open thousands of connections at once.
        pool = aioredis.BlockingConnectionPool.from_url(
            url, max_connections=MAX_CONNECTIONS, timeout=10, **options)
        return aioredis.Redis.from_pool(pool)
    parts = urlsplit(url)
    hosts = parts.netloc.rsplit("@", 1)[-1]
    sentinels = []
    for host in hosts.split(","):
        name, _, port = host.rpartition(":")
        sentinels.append((name or "127.0.0.1", int(port or 26379)))
    path = [p for p in parts.path.split("/") if p]
    if not path:
        raise ValueError("a Sentinel URL names the master: redis+sentinel://host:port/mymaster")
    if len(path) > 1:
        options["db"] = int(path[1])
    if parts.password:
        options["password"] = unquote(parts.password)
    sentinel = Sentinel(sentinels, socket_timeout=2)
    return sentinel.master_for(path[0], **options)


def _cluster(url: str) -> RedisCluster:
    parts = urlsplit(url)
    nodes = []
    for host in parts.netloc.rsplit("@", 1)[-1].split(","):
        name, _, port = host.rpartition(":")
        nodes.append(ClusterNode(name or "127.0.0.1", int(port or 6379)))
    if parts.path.strip("/"):
        raise ValueError("a Redis Cluster has one database: no /db in redis+cluster:// URLs")
    return RedisCluster(startup_nodes=nodes, decode_responses=True, socket_connect_timeout=2,
                        socket_timeout=5, password=unquote(parts.password) if parts.password
                        else None)


def named_master(redis: aioredis.Redis) -> tuple[str, int] | None:
    """The master address a Sentinel client last connected to; None for other URLs."""
    pool = redis.connection_pool
    return pool.master_address if isinstance(pool, SentinelConnectionPool) else None


async def ask_master(redis: aioredis.Redis) -> tuple[str, int] | None:
    """The master the sentinels name now (None when they name none, or for other URLs)."""
    pool = redis.connection_pool
    if not isinstance(pool, SentinelConnectionPool):
        return None
    try:
        return await pool.get_master_address()
    except (RedisError, OSError):
        return None  # no sentinel answers, or none names a master yet


@contextlib.contextmanager
def unavailable(what: str = "the broker") -> Iterator[None]:
    """Turn any Redis failure inside into `BrokerUnavailable`: unreachable, timed out, or an
    error reply (a read-only replica after a failover, out of memory)."""
    try:
        yield
    except _UNREACHABLE as exc:
        raise BrokerUnavailable(f"{what} is unreachable; retry") from exc
    except RedisError as exc:
        log.warning("Redis refused a command: %s", exc)
        raise BrokerUnavailable(f"{what} refused the request; retry") from exc


def is_missing_key(exc: ResponseError) -> bool:
    """XINFO STREAM's answer for a stream that does not exist."""
    return "no such key" in str(exc).lower()
