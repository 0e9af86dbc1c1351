"""The instance's one pub/sub subscription to Redis: kept alive, checked alive, and re-made
after any failure.

A blocking read on a link that silently died (no RST, no FIN: a dropped route, a frozen
peer) never returns, and redis-py's `health_check_interval` only pings before a read starts.
So a read task does the reading and this loop pings the connection every `PING_SECONDS`: a
link that answers nothing, not even the PONG, for `SILENT_AFTER` seconds is declared dead,
and the instance reports not-ready until it has subscribed again and caught up."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable

import redis.asyncio as aioredis
from redis.asyncio.client import PubSub
from redis.exceptions import ConnectionError as RedisConnectionError

from .redisconn import ask_master, named_master

log = logging.getLogger("jobwire.redis")

PING_SECONDS = 1.0
SILENT_AFTER = 3.0  # nothing heard for this long, a PONG included: the link is dead
MAX_BACKOFF = 5.0
MASTER_CHECK_SECONDS = 0.25  # while backing off, how often the sentinels are asked again


class LinkSilent(RedisConnectionError):
    """The subscription's connection answered nothing, PINGs included."""


class Subscriber:
    def __init__(self, redis: aioredis.Redis, channels: tuple[str, ...], *,
                 on_message: Callable[[str], None], on_subscribed: Callable[[], Awaitable[None]],
                 ping_seconds: float = PING_SECONDS, silent_after: float = SILENT_AFTER):
        self.redis = redis
        self.channels = channels
        self.on_message = on_message
        self.on_subscribed = on_subscribed  # after each (re)subscribe: catch up
        self.ping_seconds = ping_seconds
        self.silent_after = silent_after
        self.subscribed = False
        self._heard = 0.0  # loop time anything last arrived on the subscription

    async def run(self, ready: asyncio.Future[None]) -> None:
        """Subscribe and route until cancelled; on any failure reconnect (backoff with
        jitter, skipped for the first attempt and cut short by a newly named master), then
        catch up through `on_subscribed`."""
        attempt = 0
        while True:
            pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(*self.channels)
                await self.on_subscribed()
                self.subscribed = True
                attempt = 0
                if not ready.done():
                    ready.set_result(None)
                await self._listen(pubsub)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # any failure: the same recovery
                if self.subscribed:
                    log.warning("lost the Redis subscription (%s); reconnecting", exc)
                self.subscribed = False
                failed_on = named_master(self.redis)
                attempt += 1
                await self._pause(attempt, failed_on)
            finally:
                self.subscribed = False
                with contextlib.suppress(Exception):
                    # Bounded: closing a connection over a dead link must not hang here.
                    await asyncio.wait_for(pubsub.aclose(), self.ping_seconds * 2)

    async def _listen(self, pubsub: PubSub) -> None:
        """Read in a task, ping from here; return only by raising."""
        loop = asyncio.get_running_loop()
        self._heard = loop.time()
        reader = asyncio.create_task(self._read(pubsub), name="jobwire-redis-read")
        try:
            while True:
                started = loop.time()
                done, _ = await asyncio.wait((reader,), timeout=self.ping_seconds)
                if done:
                    if not reader.cancelled():
                        reader.result()  # its failure
                    raise RedisConnectionError("the subscription ended")
                now = loop.time()
                if now - started > 2 * self.ping_seconds:
                    # This loop itself was starved (a busy process): so was the read, and
                    # what waits in the socket is no evidence against the link.
                    self._heard = max(self._heard, now - self.ping_seconds)
                silent = now - self._heard
                if silent > self.silent_after:
                    raise LinkSilent(f"no answer from Redis for {silent:.1f} s")
                connection = pubsub.connection
                if connection is None:
                    raise RedisConnectionError("the subscription lost its connection")
                # A PING on a subscribed connection is answered in order with the messages,
                # so it proves the read side alive too. A write on a dead link may still
                # succeed (it only fills buffers); the missing PONG is what tells.
                await asyncio.wait_for(connection.send_command("PING", check_health=False),
                                       self.ping_seconds)
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reader

    async def _read(self, pubsub: PubSub) -> None:
        loop = asyncio.get_running_loop()
        on_message = self.on_message
        while True:
            # Blocking, with no timeout: a timed read costs a timeout context per message.
            message = await pubsub.get_message(timeout=None)
            self._heard = loop.time()
            if message is not None and message["type"] == "message":
                on_message(message["data"])

    async def _pause(self, attempt: int, failed_on: tuple[str, int] | None) -> None:
        """Before reconnect `attempt`: none for the first (most failures are one dropped
        connection), then a growing random wait so many instances do not reconnect in step.
        Behind Sentinel the wait ends as soon as the sentinels name another master than the
        one that failed: a failover is over, and waiting longer only delays delivery."""
        if attempt <= 1:
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + random.uniform(0, min(MAX_BACKOFF, 0.1 * 2**attempt))
        while (left := deadline - loop.time()) > 0:
            await asyncio.sleep(min(left, MASTER_CHECK_SECONDS) if failed_on else left)
            if failed_on is not None and await ask_master(self.redis) not in (None, failed_on):
                return
