"""Sharded pub/sub on Redis Cluster: one connection per primary, subscribed (SSUBSCRIBE) to
the shard channels this instance wants that live in that primary's slots.

A link that fails (the node died, the link went silent, a subscribe answered MOVED) is
dropped with all its channels; they are placed again on whichever primaries own their slots
now (the cluster client learns the new layout when a command on that slot fails over), and
only once they are subscribed again is the broker asked to catch them up from the streams.
A channel whose slot migrated away gets an unsolicited `sunsubscribe` from Redis: it is
placed again the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.backoff import NoBackoff
from redis.retry import Retry

from .clusterkeys import key_slot

log = logging.getLogger("jobwire.redis")

PING_SECONDS = 1.0
SILENT_AFTER = 3.0
CONFIRM_SECONDS = 5.0
MAX_BACKOFF = 2.0

OnMessage = Callable[[str, str], None]


class LinkFailed(Exception):
    pass


async def settle(tasks: list[asyncio.Task[None]] | list[asyncio.Future[None]],
                 seconds: float) -> None:
    """Cancel `tasks` and wait at most `seconds` for them to end, never longer.

    redis-py's cluster client does not always honour a cancellation that lands while it
    writes a command (the task goes on waiting, for ever): awaiting such a task, or a
    `wait_for` around it, would never return. A task still running after `seconds` is left
    to the event loop's end."""
    for task in tasks:
        task.cancel()
    if tasks:
        await asyncio.wait(tasks, timeout=seconds)


async def within(seconds: float, call: Awaitable[object]) -> bool:
    """Run `call` for at most `seconds` (see `settle`); whether it succeeded in time."""
    task = asyncio.ensure_future(call)
    await asyncio.wait({task}, timeout=seconds)
    if not task.done():
        task.cancel()
        return False
    return not task.cancelled() and task.exception() is None


class ShardLink:
    """One pub/sub connection to one node."""

    def __init__(self, host: str, port: int, on_message: OnMessage,
                 on_failed: Callable[[ShardLink, BaseException], None],
                 on_dropped: Callable[[str], None]):
        self.addr = f"{host}:{port}"
        # No retries: redis-py would reconnect and subscribe again silently, and what was
        # published meanwhile would never be caught up.
        self.client = aioredis.Redis(host=host, port=port, decode_responses=True,
                                     socket_connect_timeout=2, retry=Retry(NoBackoff(), 0))
        self.pubsub = self.client.pubsub()
        self.channels: set[str] = set()
        self.on_message = on_message
        self.on_failed = on_failed
        self.on_dropped = on_dropped  # a channel Redis unsubscribed (its slot moved)
        self._confirm: dict[str, asyncio.Future[None]] = {}
        self._leaving: set[str] = set()
        self._tasks: list[asyncio.Task[None]] = []
        self._heard = 0.0
        self.failed = False

    async def subscribe(self, channels: list[str]) -> None:
        """Subscribe and wait for Redis to confirm each channel."""
        loop = asyncio.get_running_loop()
        by_slot: dict[int, list[str]] = {}
        for channel in channels:
            by_slot.setdefault(key_slot(channel), []).append(channel)
        waits = []
        for group in by_slot.values():
            for channel in group:
                self._leaving.discard(channel)
                waits.append(self._confirm.setdefault(channel, loop.create_future()))
            await self.pubsub.ssubscribe(*group)  # one slot per command: no CROSSSLOT
            self.channels.update(group)
        if not self._tasks:
            self._heard = loop.time()
            self._tasks = [asyncio.create_task(self._read(), name="jobwire-shard-read"),
                           asyncio.create_task(self._ping(), name="jobwire-shard-ping")]
        await asyncio.wait_for(asyncio.gather(*waits), CONFIRM_SECONDS)

    async def unsubscribe(self, channels: list[str]) -> None:
        by_slot: dict[int, list[str]] = {}
        for channel in channels:
            if channel in self.channels:
                self.channels.discard(channel)
                self._leaving.add(channel)
                by_slot.setdefault(key_slot(channel), []).append(channel)
        for group in by_slot.values():
            await self.pubsub.sunsubscribe(*group)

    async def _read(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while True:
                message = await self.pubsub.get_message(timeout=None)
                self._heard = loop.time()
                if message is None:
                    continue
                kind, channel = message["type"], message["channel"]
                if kind == "smessage":
                    self.on_message(channel, message["data"])
                elif kind == "ssubscribe":
                    future = self._confirm.pop(channel, None)
                    if future is not None and not future.done():
                        future.set_result(None)
                elif kind == "sunsubscribe":
                    if channel in self._leaving:
                        self._leaving.discard(channel)
                    elif channel in self.channels:
                        self.channels.discard(channel)
                        self.on_dropped(channel)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            self._fail(exc)

    async def _ping(self) -> None:
        """A PING on a subscribed connection is answered in order with the messages: a link
        that answers nothing for SILENT_AFTER is dead, even if writes still succeed."""
        loop = asyncio.get_running_loop()
        try:
            while True:
                await asyncio.sleep(PING_SECONDS)
                silent = loop.time() - self._heard
                if silent > SILENT_AFTER:
                    raise LinkFailed(f"no answer from {self.addr} for {silent:.1f} s")
                connection = self.pubsub.connection
                if connection is None:
                    raise LinkFailed(f"the link to {self.addr} lost its connection")
                await asyncio.wait_for(connection.send_command("PING", check_health=False),
                                       PING_SECONDS)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            self._fail(exc)

    def _fail(self, exc: BaseException) -> None:
        if self.failed:
            return
        self.failed = True
        for future in self._confirm.values():
            if not future.done():
                future.set_exception(LinkFailed(str(exc) or type(exc).__name__))
        self.on_failed(self, exc)

    async def close(self) -> None:
        current = asyncio.current_task()
        await settle([t for t in self._tasks if t is not current], PING_SECONDS * 2)
        await within(PING_SECONDS * 2, self.pubsub.aclose())
        await within(PING_SECONDS * 2, self.client.aclose())


class ClusterSubscriber:
    """The channels this instance wants, each on a link to the primary that owns its slot."""

    def __init__(self, cluster: RedisCluster, on_message: OnMessage,
                 on_restored: Callable[[list[str]], Awaitable[None]]):
        self.cluster = cluster
        self.on_message = on_message
        self.on_restored = on_restored  # channels subscribed again after a loss: catch up
        self.wanted: set[str] = set()
        self.links: dict[str, ShardLink] = {}
        self.lost: set[str] = set()  # wanted, not subscribed now
        # Subscribed again, not caught up yet: the broker holds their live messages until
        # the catch-up is done, and takes the channels out of here then.
        self.restoring: set[str] = set()
        self._lock = asyncio.Lock()  # one placement at a time
        self._recovery: asyncio.Task[None] | None = None
        self._closing: set[asyncio.Future[None]] = set()

    @property
    def healthy(self) -> bool:
        return not self.lost

    async def add(self, channels: list[str]) -> None:
        """Subscribe to `channels`; returns once Redis confirmed them (or raises)."""
        new = [c for c in channels if c not in self.wanted]
        if not new:
            return
        self.wanted.update(new)
        try:
            await self._place(new)
        except BaseException:
            self.wanted.difference_update(new)
            raise

    async def remove(self, channels: list[str]) -> None:
        gone = [c for c in channels if c in self.wanted]
        self.wanted.difference_update(gone)
        self.lost.difference_update(gone)
        for link in list(self.links.values()):
            mine = [c for c in gone if c in link.channels]
            if mine:
                with contextlib.suppress(Exception):
                    await link.unsubscribe(mine)

    async def _place(self, channels: list[str]) -> None:
        async with self._lock:
            by_node: dict[tuple[str, int], list[str]] = {}
            for channel in channels:
                node = self.cluster.get_node_from_key(channel)
                by_node.setdefault((node.host, node.port), []).append(channel)
            for (host, port), group in by_node.items():
                link = self._link(host, port)
                await link.subscribe(group)

    def _link(self, host: str, port: int) -> ShardLink:
        addr = f"{host}:{port}"
        link = self.links.get(addr)
        if link is None or link.failed:
            link = self.links[addr] = ShardLink(host, port, self.on_message, self._failed,
                                                self._dropped)
        return link

    def _failed(self, link: ShardLink, exc: BaseException) -> None:
        if self.links.get(link.addr) is link:
            del self.links[link.addr]
        channels = [c for c in link.channels if c in self.wanted]
        log.warning("lost the shard link to %s (%s); placing %d channels again", link.addr,
                    exc, len(channels))
        closing = asyncio.ensure_future(link.close())
        self._closing.add(closing)
        closing.add_done_callback(self._closing.discard)
        self._lose(channels)

    def _dropped(self, channel: str) -> None:
        if channel in self.wanted:
            log.info("Redis moved the channel %s; placing it again", channel)
            self._lose([channel])

    def _lose(self, channels: list[str]) -> None:
        self.lost.update(channels)
        if self._recovery is None or self._recovery.done():
            self._recovery = asyncio.create_task(self._recover(), name="jobwire-shard-recover")

    async def _recover(self) -> None:
        """Place the lost channels again (backing off while their slots have no primary),
        then have them caught up."""
        attempt = 0
        while self.lost:
            channels = sorted(self.lost & self.wanted)
            self.lost.clear()
            if not channels:
                return
            self.restoring.update(channels)
            try:
                await self._refresh(channels)
                await self._place(channels)
                await self.on_restored(channels)
                attempt = 0
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.restoring.difference_update(channels)
                self.lost.update(c for c in channels if c in self.wanted)
                attempt += 1
                log.debug("placing channels again failed (%s); retrying", exc)
                await asyncio.sleep(random.uniform(0, min(MAX_BACKOFF, 0.05 * 2**attempt)))

    async def _refresh(self, channels: list[str]) -> None:
        """A command on each lost slot: the cluster client follows a failover or a migration
        (MOVED, or a dead node) while answering it, so its slot map is current after."""
        for slot_key in {key_slot(c): c for c in channels}.values():
            await self.cluster.exists(slot_key)

    async def close(self) -> None:
        if self._recovery is not None:
            await settle([self._recovery], PING_SECONDS * 2)
        for link in list(self.links.values()):
            await link.close()
        self.links.clear()
