"""The Redis Cluster broker: past one Redis, with sharded pub/sub.

Layout (clusterkeys.py): users are spread over partitions, each one slot, holding its users'
jobs, states, streams and channels, so a publish is one script call on one shard. A job's
owner is claimed by job id alone, first writer wins, before the job is written in its
owner's partition.

Ids: `<ms>-<k * P + p>`, issued by the partition's clock in the commit script, so ids of
different partitions never collide and sort by time. A user's events all come from one
partition, in id order: a user's cursor works as with one Redis.

Routing (SSUBSCRIBE): an instance subscribes to the channel of each user it serves and gets
only their events, at once. While it serves an admin it also subscribes to every partition's
channel and merges them into one id order (mergefeed.py): admins get an event once every
partition has been heard from up to its id, so an admin's single cursor resumes without
skipping an event another shard committed a moment later.

Durable mode fences and WAITs on the primary of each partition a publish wrote to: a shard
whose primary has too few replicas (a replica just promoted, none yet attached) refuses
durable publishes with 503 until one is back; other shards go on.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import time
from collections import Counter, OrderedDict
from collections.abc import AsyncIterator, Iterable, Sequence
from typing import Any

import orjson
import redis.asyncio as aioredis

from ..cursor import Position, format_id, parse_id
from ..errors import BrokerUnavailable, JobwireError, OwnerMismatch
from ..events import Event
from ..history import Log, in_scope
from ..jobs import Ack, Job
from ..jobstate import event_from
from ..protocol import JobUpdate
from .base import EVERYONE, Scope, View
from .clusterclient import close, harden
from .clusterkeys import ClusterKeys, floor_position
from .clustersub import ClusterSubscriber, settle, within
from .mergefeed import MergedFeed
from .redis import REPLICA_WAIT_MS, SWEEP_SECONDS, RedisBroker, log
from .redisconn import unavailable
from .rediskeys import script, view_states

__all__ = ["EVERYONE", "ClusterBroker"]

UNFOLLOW_AFTER = 30.0  # keep a channel this long after its last follower: reconnects are cheap
TICK_SECONDS = 0.01  # at most one tick per partition this often: admins' extra latency
ADMIN_READY_SECONDS = 5.0
OWNER_CACHE_SIZE = 100_000
OWNER_CACHE_SECONDS = 60.0  # owners are permanent until the job expires: re-check now and then
CATCH_UP_PAGE = 1000
STOP_SECONDS = 6.0  # a command in flight ends within the client's socket timeout (5 s)
RECENT_PER_USER = 64

clog = logging.getLogger("jobwire.cluster")


class ClusterBroker(RedisBroker):
    split_audience = True
    # Not grouped: a group's call spans shards, and one failing shard would refuse the
    # publishes of users on healthy ones.
    group_commits = False

    def __init__(self, url: str, *, prefix: str = "jobwire:", partitions: int = 16,
                 **options: Any):
        super().__init__(url, prefix=prefix, **options)
        self.keys: ClusterKeys = ClusterKeys(prefix, partitions)  # type: ignore[assignment]
        self.hardened = harden(self.redis)  # see clusterclient.py
        self.partitions = partitions
        self._commit = self.redis.register_script(script("cluster_commit.lua"))
        self._tick = self.redis.register_script(script("cluster_tick.lua"))
        self.sub = ClusterSubscriber(self.redis, self._on_message, self._restored)
        self.feed = MergedFeed(partitions)
        self._partition_of_channel = {self.keys.channel(p): p for p in range(partitions)}
        self._followers: Counter[str] = Counter()
        self._following: dict[str, asyncio.Future[None]] = {}  # a first follow under way
        self._locks: dict[str, asyncio.Lock] = {}
        self._user_of_channel: dict[str, str] = {}
        self._last: dict[str, Position] = {}  # per followed user: the newest event routed
        # Per followed user, the events routed lately: recent resumes (long-polls) are
        # answered from here instead of Redis.
        self._recent_of: dict[str, Log] = {}
        self._held: dict[str, list[str]] = {}  # live messages of channels catching up
        self._ticked_at = [0.0] * partitions
        self._tick_due = asyncio.Event()
        self._stopping = asyncio.Event()
        self._owners: OrderedDict[str, tuple[str, float]] = OrderedDict()
        self._fences: dict[str, aioredis.Redis] = {}
        self._initialized = False

    # --- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        # Serve even if the cluster is down at start: /readyz says so until it answers (the
        # sweeper tries again every second).
        await self._initialize()
        self._tasks = [asyncio.create_task(self._sweeper(), name="jobwire-cluster-sweep"),
                       asyncio.create_task(self._ticker(), name="jobwire-cluster-tick")]

    async def stop(self) -> None:
        """Every wait bounded (see clustersub.settle): the background loops are asked to
        end between two commands, and cancelled only if they do not within seconds."""
        self._stopping.set()
        self._tick_due.set()
        await asyncio.wait(self._tasks, timeout=STOP_SECONDS)
        await settle(self._tasks, 1.0)
        await within(2, self._group.close())
        await self.sub.close()
        for client in self._fences.values():
            await within(2, client.aclose())
        await within(STOP_SECONDS, close(self.redis))

    async def _initialize(self) -> None:
        self._initialized = await within(5, self.redis.initialize())

    def ready(self) -> bool:
        """The cluster answered, and not every channel this instance needs is lost."""
        if not self._initialized:
            return False
        wanted = self.sub.wanted
        return not wanted or len(self.sub.lost) < len(wanted)

    # --- who this instance serves -----------------------------------------------------------

    async def follow(self, keys: Iterable[str]) -> None:
        """Receive the events of these users (EVERYONE: of all, in merged order) from now on;
        returns once subscribed. Each call is paired with `unfollow`."""
        for key in keys:
            self._followers[key] += 1
            try:
                await self._subscribed(key)
            except BaseException:
                self.unfollow([key])
                raise

    def unfollow(self, keys: Iterable[str]) -> None:
        for key in keys:
            self._followers[key] -= 1
            if self._followers[key] <= 0:
                asyncio.get_running_loop().call_later(
                    UNFOLLOW_AFTER, lambda k=key: asyncio.ensure_future(self._drop(k)))

    async def _subscribed(self, key: str) -> None:
        if key in self._last or (key == EVERYONE and self.feed.complete
                                 and EVERYONE not in self._following):
            return  # already: no await, so nothing can be released before the caller reads
        pending = self._following.get(key)
        if pending is None:
            pending = self._following[key] = asyncio.ensure_future(self._subscribe(key))
            pending.add_done_callback(lambda _: self._following.pop(key, None))
        with unavailable("the Redis cluster"):
            await asyncio.shield(pending)

    async def _subscribe(self, key: str) -> None:
        async with self._changing(key):
            await self._subscribe_now(key)

    async def _subscribe_now(self, key: str) -> None:
        if key != EVERYONE:
            channel = self.keys.user_channel(key)
            self._user_of_channel[channel] = key
            await self.sub.add([channel])
            head = await self.redis.xrevrange(self.keys.user_stream(key), count=1)
            last = self._last.setdefault(key, parse_id(head[0][0]) if head else (0, 0))
            recent = self._recent_of[key] = Log(min(RECENT_PER_USER, self.retention.history_size))
            recent.floor = last  # it holds what comes after
            return
        await self.sub.add([self.keys.channel(p) for p in range(self.partitions)])
        # Every partition's clock, told on its channel: from then on the watermark holds.
        await asyncio.gather(*(self._send_tick(p) for p in range(self.partitions)))
        deadline = time.monotonic() + ADMIN_READY_SECONDS
        while not self.feed.complete:
            if time.monotonic() > deadline:
                raise BrokerUnavailable("not every shard answered; retry")
            await asyncio.sleep(0.005)

    async def _drop(self, key: str) -> None:
        if self._followers[key] > 0 or key in self._following:
            return
        del self._followers[key]
        # Forget first, with no await before: a follow arriving meanwhile finds nothing to
        # reuse and subscribes afresh once this is done (the same lock).
        if key == EVERYONE:
            self.feed = MergedFeed(self.partitions)
            channels = [self.keys.channel(p) for p in range(self.partitions)]
        else:
            self._last.pop(key, None)
            self._recent_of.pop(key, None)
            channels = [self.keys.user_channel(key)]
        async with self._changing(key):
            if self._followers[key] <= 0:
                await self.sub.remove(channels)

    @contextlib.asynccontextmanager
    async def _changing(self, key: str) -> AsyncIterator[None]:
        """One subscribe or unsubscribe of a key at a time."""
        lock = self._locks.setdefault(key, asyncio.Lock())
        try:
            async with lock:
                yield
        finally:
            if not lock.locked() and self._locks.get(key) is lock:
                del self._locks[key]

    # --- publishing -----------------------------------------------------------------------

    async def _publish_batch(self, updates: list[JobUpdate]) -> list[Ack | JobwireError]:
        """Claim each new job for its user (first writer wins, across every instance and
        shard), refuse the updates of jobs that are someone else's, publish the rest."""
        owners = await self._claim(updates)
        mine = [i for i, u in enumerate(updates) if owners[u.jobId] == u.userId]
        results: list[Ack | JobwireError] = [
            OwnerMismatch(f"job {u.jobId} belongs to another user", field="userId",
                          job_id=u.jobId) for u in updates]
        if mine:
            for i, result in zip(mine, await super()._publish_batch([updates[i] for i in mine]),
                                 strict=True):
                results[i] = result
        return results

    async def _claim(self, updates: list[JobUpdate]) -> dict[str, str]:
        now = time.monotonic()
        owners: dict[str, str] = {}
        claims: dict[str, str] = {}
        for update in updates:
            if update.jobId in owners or update.jobId in claims:
                continue
            cached = self._owners.get(update.jobId)
            if cached is not None and cached[1] > now:
                owners[update.jobId] = cached[0]
            else:
                claims[update.jobId] = update.userId
        if claims:
            # A job already in its user's partition is theirs (only the claim's winner writes
            # it there): no need to read the claim, which may live on another shard.
            async with self.redis.pipeline(transaction=False) as pipe:
                for job_id, user_id in claims.items():
                    pipe.exists(self.keys.job(job_id, user_id))
                there = await pipe.execute()
            for (job_id, user_id), found in zip(list(claims.items()), there, strict=True):
                if found:
                    owners[job_id] = user_id
                    self._owners[job_id] = (user_id, now + OWNER_CACHE_SECONDS)
                    del claims[job_id]
        if claims:
            async with self.redis.pipeline(transaction=False) as pipe:
                for job_id, user_id in claims.items():
                    pipe.set(self.keys.owner(job_id), user_id, nx=True, get=True)
                replies = await pipe.execute()
            for (job_id, user_id), before in zip(claims.items(), replies, strict=True):
                owners[job_id] = owner = before if before is not None else user_id
                self._owners[job_id] = (owner, now + OWNER_CACHE_SECONDS)
                self._owners.move_to_end(job_id)
            while len(self._owners) > OWNER_CACHE_SIZE:
                self._owners.popitem(last=False)
        return owners

    def _job_key(self, update: JobUpdate) -> str:
        return self.keys.job(update.jobId, update.userId)

    def _commit_call(self, job: Job, expected: str, event: Event | None,
                     remember: list[str], fresh: Sequence[str] = ()) -> list[Any]:
        call = super()._commit_call(job, expected, event, remember, fresh)
        call[7] = self.keys.user_channel(job.user_id)
        call.append(self.keys.partition(job.user_id))  # read here only, not by the script
        return call

    async def _commit_all(self, commits: list[list[Any]]) -> list[Any]:
        """One script call per partition the commits touch, concurrently; replies in order."""
        groups: dict[int, list[int]] = {}
        for n, call in enumerate(commits):
            groups.setdefault(call[-1], []).append(n)
        k = self.keys

        async def run(p: int, members: list[int]) -> list[Any]:
            return await self._commit(
                keys=[k.stream(p), k.jobs(p), k.processing(p), k.clock(p)],
                args=[orjson.dumps([commits[n] for n in members]), p, self.partitions,
                      k.channel(p)])

        answers = await asyncio.gather(*(run(p, m) for p, m in groups.items()))
        replies: list[Any] = [None] * len(commits)
        for members, answer in zip(groups.values(), answers, strict=True):
            for n, reply in zip(members, answer, strict=True):
                replies[n] = reply
        ended = [commits[n] for n, r in enumerate(replies) if r[0] and commits[n][12]]
        if ended:
            # An ended job's owner claim expires with the job, freeing its id, as with one
            # Redis. Not atomic with the commit (another slot): a claim left behind only
            # keeps the id its owner's.
            with contextlib.suppress(Exception):
                async with self.redis.pipeline(transaction=False) as pipe:
                    for call in ended:
                        pipe.expire(self.keys.owner(call[10]), int(call[12]))
                    await pipe.execute()
        return replies

    async def _await_replicas(self, committed: list[Any]) -> None:
        """Durable mode, per primary written to (see RedisBroker._await_replicas)."""
        partitions = {call[-1] for call in committed}
        by_node: dict[str, int] = {}
        for p in partitions:
            node = self.redis.get_node_from_key(self.keys.fence(p))
            by_node.setdefault(f"{node.host}:{node.port}", p)

        async def fence(addr: str, p: int) -> int:
            client = self._fences.get(addr)
            if client is None:
                host, port = addr.rsplit(":", 1)
                client = self._fences[addr] = aioredis.Redis(
                    host=host, port=int(port), decode_responses=True, socket_connect_timeout=2,
                    socket_timeout=5)
            async with client.pipeline(transaction=False) as pipe:
                pipe.set(self.keys.fence(p), time.time(), px=60_000)
                pipe.execute_command("WAIT", self.durable_replicas, REPLICA_WAIT_MS)
                _, acked = await pipe.execute()
            return int(acked)

        acks = await asyncio.gather(*(fence(a, p) for a, p in by_node.items()))
        if min(acks, default=self.durable_replicas) < self.durable_replicas:
            raise BrokerUnavailable(f"stored, but {min(acks)} of {self.durable_replicas} "
                                    "replicas of a shard confirmed; retry")

    # --- reading --------------------------------------------------------------------------

    async def owners(self, job_ids: Sequence[str]) -> dict[str, str]:
        if not job_ids:
            return {}
        with unavailable():
            async with self.redis.pipeline(transaction=False) as pipe:
                for job_id in job_ids:
                    pipe.get(self.keys.owner(job_id))
                owners = await pipe.execute()
        return {j: o for j, o in zip(job_ids, owners, strict=True) if o is not None}

    async def job(self, job_id: str) -> dict[str, Any] | None:
        with unavailable():
            owner = await self.redis.get(self.keys.owner(job_id))
            if owner is None:
                return None
            state, latest = await self.redis.hmget(self.keys.job(job_id, owner), "s", "id")
        if state is None or not latest:
            return None
        event = orjson.loads(state)["event"]
        return {**event, "id": latest} if event is not None else None

    async def view(self, scope: Scope, after: Position | None,
                   with_states: bool = True) -> View:
        user = scope.owner if scope.owner is not None else scope.user_id
        if scope.admin or user is None:
            return await self._admin_view(scope, after)
        recent = self._recent_of.get(user)
        if not with_states and after is not None and recent is not None \
                and after >= recent.floor and self.keys.user_channel(user) not in (
                    self.sub.lost | self.sub.restoring):
            events = [e for e in recent.since(after) if in_scope(e, user, scope.job_ids)]
            return View([], events, self._last[user])
        p = self.keys.partition(user)
        with unavailable():
            states, head = await self._states(p, scope, user)
            events: list[Event] = []
            if after is not None:
                events = await self._since(self.keys.user_stream(user), after, head)
                if scope.job_ids is not None:
                    events = [e for e in events if e.job_id in scope.job_ids]
        states.sort(key=lambda s: parse_id(s["id"]))
        return View(states, events, head)

    async def _admin_view(self, scope: Scope, after: Position | None) -> View:
        """Read up to the merged feed's watermark: what is below it has been released live
        already (or is read here), what is above it will be."""
        with unavailable("the Redis cluster"):
            await self._subscribed(EVERYONE)
            self.follow_briefly()
            # Everything committed before this read is released first (what a caller
            # published a moment ago is in its snapshot); then the watermark is the head.
            # The session was subscribed before: what is released meanwhile reaches it live
            # and is dropped there as at or below the head, which this read covers.
            await self._caught_up_to_now()
            head = self.feed.watermark
            assert head is not None
            if scope.user_id is not None:
                parts = {self.keys.partition(scope.user_id): None}
            elif scope.job_ids is not None:
                owners = await self.owners(sorted(scope.job_ids))
                parts = {self.keys.partition(o): None for o in owners.values()}
            else:
                parts = dict.fromkeys(range(self.partitions))
            answers = await asyncio.gather(*(self._states(p, scope, scope.user_id)
                                             for p in parts))
            states = [s for found, _ in answers for s in found if parse_id(s["id"]) <= head]
            events: list[Event] = []
            if after is not None:
                if scope.user_id is not None:
                    events = await self._since(self.keys.user_stream(scope.user_id), after, head)
                else:
                    streams = await asyncio.gather(*(self._since(self.keys.stream(p), after,
                                                                 head) for p in parts))
                    events = list(heapq.merge(*streams, key=lambda e: e.pos))
                    if scope.job_ids is not None:
                        events = [e for e in events if e.job_id in scope.job_ids]
        states.sort(key=lambda s: parse_id(s["id"]))
        return View(states, events, head)

    async def _caught_up_to_now(self) -> None:
        clocks = await asyncio.gather(*(self._tick(keys=[self.keys.clock(p)],
                                                   args=[self.keys.channel(p)])
                                        for p in range(self.partitions)))
        floors = [floor_position(int(ms), int(k) * self.partitions + p)
                  for p, (ms, k) in enumerate(clocks)]
        deadline = time.monotonic() + ADMIN_READY_SECONDS
        while any(known is None or known < floor
                  for known, floor in zip(self.feed.known, floors, strict=True)):
            if time.monotonic() > deadline:
                raise BrokerUnavailable("a shard's events are late; retry")
            await asyncio.sleep(0.001)

    def follow_briefly(self) -> None:
        """Keep the merged feed for a while after a read that needed it (a poll)."""
        self._followers[EVERYONE] += 1
        self.unfollow([EVERYONE])

    async def _states(self, p: int, scope: Scope, user: str | None
                      ) -> tuple[list[dict[str, Any]], Position]:
        """The states in `scope` within partition `p`, and its stream's head, together."""
        k = self.keys
        if scope.job_ids is not None:
            keys, ids = [k.stream(p)], sorted(scope.job_ids)  # one key: its slot
        elif user is not None:
            keys, ids = [k.stream(p), k.user_jobs(user)], []
        else:
            keys, ids = [k.stream(p), k.jobs(p)], []
        raw = await self._view(keys=keys, args=[k.job_prefix(p), *ids])
        return view_states(raw, scope.owner), parse_id(raw[0])

    # --- fan-out --------------------------------------------------------------------------

    def _on_message(self, channel: str, data: str) -> None:
        if channel in self.sub.restoring:
            self._held.setdefault(channel, []).append(data)
            return
        self._handle(channel, data)

    def _handle(self, channel: str, data: str) -> None:
        p = self._partition_of_channel.get(channel)
        if data.startswith("tick "):
            if p is not None:
                _, ms, k = data.split(" ")
                self.feed.tick(p, floor_position(int(ms), int(k) * self.partitions + p))
                self._release()
            return
        lines = data.split("\n")
        self.received += len(lines)
        for line in lines:
            event_id, progress_only, body = line.split(" ", 2)
            event = event_from(event_id, orjson.loads(body), progress_only == "1")
            self._route_member(event)
            if p is not None:
                self.feed.add(p, event)
        if p is not None:
            self._release()

    def _route_member(self, event: Event) -> None:
        """At once, to the sessions of the event's user (each user's events come in order,
        from its own channel and, while admins are served, its partition's too)."""
        last = self._last.get(event.user_id)
        if last is None or event.pos <= last:
            return
        self._last[event.user_id] = event.pos
        self._recent_of[event.user_id].append(event, 0.0)
        self._fan_out(event)

    def _release(self) -> None:
        for event in self.feed.release():
            self._fan_out_admins(event)
        if self.feed.held:
            self._tick_due.set()

    async def _ticker(self) -> None:
        """While events wait in the merged feed, tick the partitions that hold them back
        (each at most every TICK_SECONDS)."""
        loop = asyncio.get_running_loop()
        while True:
            await self._tick_due.wait()
            self._tick_due.clear()
            if self._stopping.is_set():
                return
            now = loop.time()
            due = [p for p in self.feed.lagging() if now - self._ticked_at[p] >= TICK_SECONDS]
            for p in due:
                self._ticked_at[p] = now
            if due:
                await asyncio.gather(*(self._send_tick(p) for p in due))
            if self.feed.held:
                await self._pause(TICK_SECONDS)
                self._tick_due.set()

    async def _pause(self, seconds: float) -> bool:
        """Sleep up to `seconds`; True (at once) when the broker is stopping."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)
        return self._stopping.is_set()

    async def _send_tick(self, p: int) -> None:
        try:
            await self._tick(keys=[self.keys.clock(p)], args=[self.keys.channel(p)])
        except Exception as exc:  # a shard failing over: ticked again while events wait
            clog.debug("tick of partition %d failed: %s", p, exc)

    async def _restored(self, channels: list[str]) -> None:
        """Channels subscribed again after a loss: route what was published meanwhile (from
        the streams), then the live messages held since, then let them flow."""
        for channel in channels:
            p = self._partition_of_channel.get(channel)
            if p is not None:
                known = self.feed.known[p]
                if known is not None:
                    await self._replay(channel, self.keys.stream(p), known)
        for channel in channels:
            user = self._user_of_channel.get(channel)
            last = self._last.get(user) if user is not None else None
            if user is not None and last is not None:
                await self._replay(channel, self.keys.user_stream(user), last)
        # No await from here: held messages go first, then the channel is live again.
        for channel in channels:
            for data in self._held.pop(channel, []):
                self._handle(channel, data)
        self.sub.restoring.difference_update(channels)
        log.info("caught up %d channels after a shard link was lost", len(channels))

    async def _replay(self, channel: str, stream: str, after: Position) -> None:
        while True:
            entries = await self.redis.xrange(stream, min=f"({format_id(after)}",
                                              count=CATCH_UP_PAGE)
            if not entries:
                return
            self._handle(channel, "\n".join(f"{eid} {f.get('p', '0')} {f['e']}"
                                            for eid, f in entries))
            after = parse_id(entries[-1][0])

    async def _sweeper(self) -> None:
        """Stalled jobs and retention by age, partition by partition."""
        while not await self._pause(min(SWEEP_SECONDS, self.stalled_after / 4)):
            if not self._initialized:
                await self._initialize()
            now = time.time()
            minid = f"{int((now - self.retention.ttl_seconds) * 1000)}-0"
            for p in range(self.partitions):
                if self._stopping.is_set():
                    return
                try:
                    silent = await self.redis.zrangebyscore(self.keys.processing(p), "-inf",
                                                            now - self.stalled_after)
                    for job_id in silent:
                        await self._transact(self.keys.job_in(p, job_id), job_id, stall=True)
                    await self.redis.xtrim(self.keys.stream(p), minid=minid, approximate=True)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    clog.debug("sweep of partition %d skipped: %s", p, exc)

