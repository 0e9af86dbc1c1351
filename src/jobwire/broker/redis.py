"""The Redis broker: many `jobwire serve` instances behave as one service.

Job state lives in one hash per job; every event goes into a global stream and its owner's
stream (their ids are the event ids, so the same event has the same id everywhere) and out on
a pub/sub channel. A publish reads the job, runs the same pure state machine as the in-process
broker, and commits with a Lua script that succeeds only if the job has not moved meanwhile.
Each instance subscribes once and routes locally through its hub; after a reconnect it reads
what it missed from the global stream.

Publish-only use (a worker): construct it and call `publish`/`publish_many` without `start()`,
on an event loop that keeps running (a held progress update is sent by a `call_later` timer);
`jobwire.reporter.RedisPublisher` does this."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import orjson
import redis.asyncio as aioredis
from redis.exceptions import RedisError, ResponseError

from ..cursor import START, Position, format_id, parse_id
from ..errors import BrokerUnavailable, CursorExpired, JobwireError
from ..events import Event
from ..history import Log, in_scope
from ..jobs import Ack, Job, JobBook
from ..jobstate import DeferredIds, event_from, is_placeholder, job_from_state
from ..protocol import JobUpdate, now_iso
from .base import Broker, Scope, View
from .groupcommit import GroupCommit
from .redisconn import connect, is_missing_key, unavailable
from .rediskeys import CHANNELS, Keys, Retention, commit_call, script, view_states
from .redissub import Subscriber

__all__ = ["CHANNELS", "RedisBroker", "connect"]

log = logging.getLogger("jobwire.redis")

COMMIT_ATTEMPTS = 50
SWEEP_SECONDS = 1.0
FLUSH_RETRY_SECONDS = 1.0
FLUSH_ATTEMPTS = 10  # then the stall sweep delivers a waiting update whose flush kept failing
REPLICA_WAIT_MS = 1000
KNOWN_JOBS = 10_000  # jobs kept as this instance last saw them in Redis
NOT_SEEN = (None, None, None)  # a job's (version, state, latest event id) when there is none


class RedisBroker(Broker):
    group_commits = True  # concurrent publishes share script calls (see groupcommit.py)

    def __init__(self, url: str, *, prefix: str = "jobwire:", channel_prefix: str = "",
                 history_size: int = 1000, global_history_size: int = 10000,
                 history_ttl_seconds: float = 86400, max_updates_per_second: float = 10.0,
                 stalled_after_seconds: float = 60.0, durable_replicas: int = 0):
        super().__init__()
        self.url = url
        self.prefix = prefix
        self.keys = Keys(prefix)
        self.channels = tuple(channel_prefix + c for c in CHANNELS)
        self.retention = Retention(history_size, global_history_size, history_ttl_seconds)
        self.rate = max_updates_per_second
        self.stalled_after = stalled_after_seconds
        self.published = 0
        self.received = 0  # events that reached this instance over pub/sub (for metrics)
        self.durable_replicas = durable_replicas
        self.redis: aioredis.Redis = connect(url)
        self._commit = self.redis.register_script(script("commit.lua"))
        self._view = self.redis.register_script(script("view.lua"))
        self.subscriber = Subscriber(self.redis, self.channels, on_message=self._route,
                                     on_subscribed=self._resync)
        self._last_seen: Position = START  # newest event routed to the hub
        # The events this instance routed lately, in order: resumes from a recent cursor
        # (long-polls, mostly) are answered from here instead of Redis.
        self._recent = Log(global_history_size)
        # Job key -> (version, state JSON, latest event id) as this instance last saw them in
        # Redis, its own commits included: a publish plans from this instead of reading the
        # job. Only a hint: the commit checks the version (and that the update's eventIds are
        # new), and a refused commit answers with the job as it is. Dropped whenever the link
        # to Redis broke (a failover may have lost writes: a version could come back with
        # another state).
        self._known: OrderedDict[str, tuple[str | None, str, str | None]] = OrderedDict()
        self._tasks: list[asyncio.Task[None]] = []
        self._group = GroupCommit(self._commit_all)

    # --- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        ready = asyncio.get_running_loop().create_future()
        self._tasks = [asyncio.create_task(self.subscriber.run(ready), name="jobwire-redis-sub"),
                       asyncio.create_task(self._sweeper(), name="jobwire-redis-sweep")]
        # Serve even if Redis is down at start: /readyz says so until it is back.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(ready), 5)

    async def stop(self) -> None:
        await self._stop_tasks()
        await self.redis.aclose()

    async def _stop_tasks(self) -> None:
        await self._group.close()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def ready(self) -> bool:
        """Subscribed and caught up, on a link that answered a PING within seconds."""
        return self.subscriber.subscribed

    # --- publishing -----------------------------------------------------------------------

    async def publish(self, update: JobUpdate) -> Ack:
        (result,) = await self.publish_many([update])
        if isinstance(result, JobwireError):
            raise result
        return result

    async def publish_many(self, updates: Sequence[JobUpdate]) -> list[Ack | JobwireError]:
        try:
            with unavailable():
                return await self._publish_batch(list(updates))
        except BrokerUnavailable:
            self._known.clear()
            raise

    async def _publish_batch(self, updates: list[JobUpdate]) -> list[Ack | JobwireError]:
        """A batch in one round trip, as a rule: apply the updates in order with the pure
        state machine to each job as this instance last saw it in Redis (a job it never saw
        is taken to be new), then commit them all in one script call. The commit checks each
        job's version and that an eventId taken to be new is, and a refused commit answers
        with the job as Redis holds it: its updates are recomputed from that (a job that
        moved meanwhile, another instance's, or a retry), a second round trip."""
        results: list[Ack | JobwireError | None] = [None] * len(updates)
        committed: list[Any] = []  # the commit calls that were stored
        todo = list(range(len(updates)))
        known_ids: dict[tuple[str, str], str | None] = {}  # (job, eventId) -> as Redis has it
        reread: set[str] = set()  # jobs to read from Redis, with the eventIds they name
        for _ in range(COMMIT_ATTEMPTS):
            if not todo:
                break
            books = await self._books(updates, todo, reread, known_ids)
            now = time.time()
            planned: list[tuple[int, Ack, Event | None, Any]] = []
            unsure: list[int] = []
            for i in todo:
                update = updates[i]
                if update.jobId in reread:
                    unsure.append(i)  # planned again once the job is read (next round)
                    continue
                version, book, bumps = books[update.jobId]
                prior = book.jobs.get(update.jobId)
                before = set(prior.event_ids) if prior is not None else set()
                waiting = set(prior.pending_event_ids) if prior is not None else set()
                try:
                    ack, event = book.accept(update, now, update.timestamp or now_iso())
                except JobwireError as exc:
                    if update.eventId and (update.jobId, update.eventId) not in known_ids:
                        # Perhaps a retry of an update the state does not list (it keeps no
                        # eventIds): read the job and its eventIds, then answer.
                        reread.add(update.jobId)
                        unsure.append(i)
                        continue
                    results[i] = exc
                    continue
                job = book.jobs[update.jobId]
                remember = [e for e in job.event_ids if e not in before]
                fresh = [update.eventId] if update.eventId and update.eventId not in before \
                    and update.eventId not in waiting else []
                expected = str(int(version) + bumps) if version else ("" if not bumps
                                                                      else str(bumps))
                books[update.jobId] = (version, book, bumps + 1)
                planned.append((i, ack, event,
                                self._commit_call(job, expected, event, remember, fresh)))
            calls = [call for *_, call in planned]
            replies = await self._commit_known(calls) if planned else []
            committed.extend(c for c, r in zip(calls, replies, strict=True) if r[0])
            failed: set[str] = set()
            real: dict[tuple[str, str], str] = {}  # (job, placeholder id) -> the real id
            retry = []
            for (i, ack, event, call), reply in zip(planned, replies, strict=True):
                update = updates[i]
                job_id = update.jobId
                if job_id in failed or not reply[0]:
                    if not reply[0] and call[16]:
                        known_ids[job_id, call[16][0]] = reply[4]
                    failed.add(job_id)
                    retry.append(i)
                    continue
                if event is not None:
                    real[job_id, event.id] = reply[1]
                    self.published += 1
                    results[i] = Ack(job_id, reply[1], event.seq)
                    continue
                if ack.id is not None and is_placeholder(ack.id):
                    ack = Ack(job_id, real[job_id, ack.id], ack.seq)  # an event of this batch
                results[i] = ack
                if ack.flush_at is not None:
                    self._schedule_flush(self._job_key(update), job_id, ack.flush_at - now)
            todo = sorted(retry + unsure)
        for i in todo:
            results[i] = BrokerUnavailable(f"job {updates[i].jobId} is too contended; retry")
        if self.durable_replicas and any(isinstance(r, Ack) for r in results):
            # Every acknowledgement, a deduplicated retry's too: its first attempt may have
            # been stored on the master alone, and answered 503 for that.
            await self._await_replicas(committed)
        return [r for r in results if r is not None]

    async def _books(self, updates: list[JobUpdate], todo: list[int], reread: set[str],
                     known_ids: dict[tuple[str, str], str | None]
                     ) -> dict[str, tuple[str | None, JobBook, int]]:
        """A book per job in `todo`, holding the job as this instance last saw it in Redis
        (none: taken to be new), with the eventIds known to Redis that `known_ids` lists.
        The jobs in `reread` are read first, with the eventIds they name (then cleared)."""
        keys = {updates[i].jobId: self._job_key(updates[i]) for i in reversed(todo)}
        job_ids = list(dict.fromkeys(updates[i].jobId for i in todo))
        if reread:
            named = [(updates[i].jobId, updates[i].eventId) for i in todo
                     if updates[i].eventId and updates[i].jobId in reread]
            async with self.redis.pipeline(transaction=False) as pipe:
                for job_id in reread:
                    pipe.hmget(keys[job_id], "v", "s", "id")
                for job_id, event_id in named:
                    pipe.hget(f"{keys[job_id]}:eids", event_id)
                replies = await pipe.execute()
            for job_id, seen in zip(reread, replies, strict=False):
                self._saw(keys[job_id], seen)
            for pair, value in zip(named, replies[len(reread):], strict=True):
                known_ids[pair] = value
            reread.clear()
        books: dict[str, tuple[str | None, JobBook, int]] = {}
        for job_id in job_ids:
            version, state, latest = self._known.get(keys[job_id], NOT_SEEN)
            book = self._book()
            if state is not None:
                book.jobs[job_id] = job_from_state(job_id, orjson.loads(state), latest)
            books[job_id] = (version, book, 0)
        for (job_id, event_id), value in known_ids.items():
            job = books[job_id][1].jobs.get(job_id) if job_id in books else None
            if value is not None and job is not None:
                eid, seq = value.split(" ")
                job.event_ids[event_id] = (eid, int(seq))
        return books

    def _book(self) -> JobBook:
        return JobBook(max_updates_per_second=self.rate,
                       clock=DeferredIds())  # type: ignore[arg-type]

    def _job_key(self, update: JobUpdate) -> str:
        """Where the job an update names is kept."""
        return self.keys.job(update.jobId)

    def _schedule_flush(self, key: str, job_id: str, delay: float) -> None:
        asyncio.get_running_loop().call_later(
            max(0.0, delay), lambda: asyncio.ensure_future(self._flush(key, job_id)))

    async def _transact(self, key: str, job_id: str, *, stall: bool = False) -> None:
        """Deliver a job's waiting conflated update or, with `stall`, report it stalled:
        read, apply, commit if unchanged, as a publish does. `key` is the job's hash."""
        for _ in range(COMMIT_ATTEMPTS):
            version, state, latest = await self.redis.hmget(key, "v", "s", "id")
            if state is None:
                return
            book = self._book()
            job = book.jobs[job_id] = job_from_state(job_id, orjson.loads(state), latest)
            now = time.time()
            if job.pending is not None:
                # A waiting update; on a stall sweep, one whose instance is gone.
                event = book.flush(job_id, now)
            else:
                stalled = book.stalled(now, self.stalled_after) if stall else []
                event = stalled[0] if stalled else None
            if event is None:
                return
            remember = [e for e, (i, _) in job.event_ids.items() if is_placeholder(i)]
            (reply,) = await self._commit_known(
                [self._commit_call(job, version or "", event, remember)])
            if reply[0]:
                self.published += 1
                return
        log.warning("job %s is too contended to deliver its waiting update", job_id)

    def _commit_call(self, job: Job, expected: str, event: Event | None,
                     remember: list[str], fresh: Sequence[str] = ()) -> list[Any]:
        return commit_call(self.keys, self.channels, self.retention, job, expected, event,
                           remember, fresh)

    async def _commit_known(self, commits: list[list[Any]]) -> list[Any]:
        """Run commits and keep each job as they leave it: stored, or as a refused commit
        found it in Redis."""
        replies = await (self._group.submit(commits) if self.group_commits
                         else self._commit_all(commits))
        for call, reply in zip(commits, replies, strict=True):
            if reply[0]:
                self._saw(call[0], (str(int(call[4] or 0) + 1), call[5], reply[1] or ""))
            else:
                self._saw(call[0], reply[1:4])
        return replies

    def _saw(self, key: str, seen: Sequence[str | None]) -> None:
        """Keep a job's (version, state, latest event id) as just seen in Redis."""
        if seen[1] is None:
            self._known.pop(key, None)  # no such job
            return
        self._known[key] = (seen[0], seen[1], seen[2])
        self._known.move_to_end(key)
        if len(self._known) > KNOWN_JOBS:
            self._known.popitem(last=False)

    async def _commit_all(self, commits: list[list[Any]]) -> list[Any]:
        """Run commits in order, in one script call: a reply per commit."""
        keys = [self.keys.global_stream, self.keys.all_jobs, self.keys.processing]
        return await self._commit(keys=keys, args=[orjson.dumps(commits)])

    async def _await_replicas(self, committed: list[Any]) -> None:
        """Durable mode: answer only once replicas hold everything written so far, so an
        acknowledged update survives a failover. Too few in time: 503, and the publisher
        retries (an eventId makes the retry idempotent).

        WAIT counts the replicas that have the last write *of its own connection*, and the
        commit may have run on another pooled connection (a deduplicated retry wrote
        nothing at all). So a write on the same connection first, a fence: replication is
        in order, and a replica that has the fence has every write before it."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.set(self.keys.fence, time.time(), px=60_000)
            pipe.execute_command("WAIT", self.durable_replicas, REPLICA_WAIT_MS)
            _, acked = await pipe.execute()
        if int(acked) < self.durable_replicas:
            raise BrokerUnavailable(
                f"stored, but {acked} of {self.durable_replicas} replicas confirmed; retry")

    async def _flush(self, key: str, job_id: str, attempt: int = 1) -> None:
        try:
            await self._transact(key, job_id)
        except (RedisError, OSError):
            # Acknowledged and stored as waiting: try again soon rather than leave it to
            # the stall sweep (a minute by default).
            if attempt < FLUSH_ATTEMPTS:
                asyncio.get_running_loop().call_later(
                    FLUSH_RETRY_SECONDS,
                    lambda: asyncio.ensure_future(self._flush(key, job_id, attempt + 1)))
            else:
                log.warning("could not deliver the conflated update of job %s", job_id)

    # --- reading --------------------------------------------------------------------------

    async def owners(self, job_ids: Sequence[str]) -> dict[str, str]:
        if not job_ids:
            return {}
        with unavailable():
            async with self.redis.pipeline(transaction=False) as pipe:
                for job_id in job_ids:
                    pipe.hget(self.keys.job(job_id), "s")
                states = await pipe.execute()
        return {j: orjson.loads(s)["userId"] for j, s in zip(job_ids, states, strict=True) if s}

    async def view(self, scope: Scope, after: Position | None,
                   with_states: bool = True) -> View:
        if not with_states and after is not None and self.subscriber.subscribed \
                and after >= self._recent.floor:
            # A resume from a recent cursor (a long-poll): answered from the events this
            # instance has routed, with no Redis round trip.
            user = scope.owner if scope.owner is not None else scope.user_id
            events = [e for e in self._recent.since(after)
                      if in_scope(e, user, scope.job_ids)]
            return View([], events, self._last_seen)
        if scope.job_ids is not None:
            keys, ids = [self.keys.global_stream, ""], sorted(scope.job_ids)
        elif scope.user_id is not None:
            keys, ids = [self.keys.global_stream, self.keys.user_jobs(scope.user_id)], []
        else:
            keys, ids = [self.keys.global_stream, self.keys.all_jobs], []
        with unavailable():
            raw = await self._view(keys=keys, args=[self.keys.job(""), *ids])
            head = parse_id(raw[0])
            states = view_states(raw, scope.owner)
            events: list[Event] = []
            if after is not None:
                log_user = scope.owner if scope.owner is not None else scope.user_id
                stream = (self.keys.user_stream(log_user) if log_user is not None
                          else self.keys.global_stream)
                events = await self._since(stream, after, head)
                if scope.job_ids is not None:
                    events = [e for e in events if e.job_id in scope.job_ids]
        states.sort(key=lambda s: parse_id(s["id"]))
        return View(states, events, head)

    async def _since(self, stream: str, after: Position, head: Position) -> list[Event]:
        """Events of `stream` in (after, head], or CursorExpired if some were trimmed. Only
        a stream that does not exist means "none"; any failure raises (a replay that could
        not be read is not an empty one)."""
        if after >= head:
            return []
        try:
            info = await self.redis.xinfo_stream(stream)
        except ResponseError as exc:
            if is_missing_key(exc):
                return []  # nothing was ever published there
            raise
        if info.get("entries-added", 0) > info.get("length", 0) and info.get("first-entry"):
            # Trimmed: Redis 7.0 does not record the newest trimmed id, so a cursor before
            # the first retained entry may have missed events. Refusing it is safe: the
            # client gets a fresh snapshot instead (never a silent gap).
            if after < parse_id(info["first-entry"][0]):
                raise CursorExpired("cursor is older than the retained history")
        entries = await self.redis.xrange(stream, min=f"({format_id(after)}",
                                          max=format_id(head))
        return [event_from(eid, orjson.loads(f["e"]), f.get("p") == "1")
                for eid, f in entries]

    async def job(self, job_id: str) -> dict[str, Any] | None:
        with unavailable():
            state, latest = await self.redis.hmget(self.keys.job(job_id), "s", "id")
        if state is None or not latest:
            return None
        event = orjson.loads(state)["event"]
        return {**event, "id": latest} if event is not None else None

    # --- fan-out --------------------------------------------------------------------------

    def _route(self, message: str) -> None:
        """A pub/sub message: one or more events, a line each (JSON escapes newlines)."""
        lines = message.split("\n")
        self.received += len(lines)
        for line in lines:
            self._route_one(line)

    def _route_one(self, line: str) -> None:
        event_id, progress_only, body = line.split(" ", 2)
        pos = parse_id(event_id)
        if pos <= self._last_seen:
            return  # already routed (replayed after a reconnect)
        self._last_seen = pos
        event = event_from(event_id, orjson.loads(body), progress_only == "1")
        self._recent.append(event, 0.0)
        self._fan_out(event)

    async def _resync(self) -> None:
        """Just subscribed: the first time, start from the stream's head; after a
        reconnect, route what was published meanwhile."""
        self._known.clear()  # the link broke: Redis may have lost or changed writes
        if self._last_seen == START:
            head = await self.redis.xrevrange(self.keys.global_stream, count=1)
            self._last_seen = parse_id(head[0][0]) if head else START
            self._recent.floor = self._last_seen  # it holds what comes after
        else:
            await self._catch_up()

    async def _catch_up(self) -> None:
        """Route the events published while this instance was not subscribed."""
        while True:
            entries = await self.redis.xrange(self.keys.global_stream,
                                              min=f"({format_id(self._last_seen)}", count=1000)
            if not entries:
                return
            for eid, fields in entries:
                self._route_one(f"{eid} {fields.get('p', '0')} {fields['e']}")

    async def _sweeper(self) -> None:
        """Stalled jobs (once across all instances: the commit only succeeds for one) and
        retention by age."""
        while True:
            await asyncio.sleep(min(SWEEP_SECONDS, self.stalled_after / 4))
            try:
                now = time.time()
                silent = await self.redis.zrangebyscore(self.keys.processing, "-inf",
                                                        now - self.stalled_after)
                for job_id in silent:
                    await self._transact(self.keys.job(job_id), job_id, stall=True)
                minid = f"{int((now - self.retention.ttl_seconds) * 1000)}-0"
                await self.redis.xtrim(self.keys.global_stream, minid=minid, approximate=True)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.debug("sweep skipped: %s", exc)
