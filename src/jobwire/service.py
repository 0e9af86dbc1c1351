"""The running service: settings, auth, broker and hub wired together, shared by every
transport. Also the subscribe flow that all streaming transports use."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from .auth import AuthenticateHook, AuthHook, JwtAuth, Principal, load_hook
from .broker import Broker, Scope
from .broker.base import EVERYONE
from .broker.memory import MemoryBroker
from .config import Settings
from .cursor import Position, format_id, parse_id
from .errors import (
    ConfigError,
    CursorExpired,
    Forbidden,
    JobwireError,
    RateLimited,
    TooManySubscriptions,
    Unauthorized,
)
from .events import Event
from .heartbeats import HeartbeatTurns
from .hub import Hub
from .protocol import dumps, heartbeat_message, principal_fields
from .ratelimit import Concurrency, KeyedBuckets
from .session import CloseReason, Session
from .sessions import RedisSessions
from .stats import Histogram


class Service:
    def __init__(self, settings: Settings, broker: Broker | None = None,
                 authenticate: AuthenticateHook | None = None):
        self.settings = settings
        self.auth = JwtAuth(secret=settings.secret, algorithm=settings.jwt_algorithm,
                            public_key=settings.jwt_public_key,
                            private_key=settings.jwt_private_key)
        # The application's own sign-in, for requests without a jobwire token.
        self.authenticate_hook: AuthHook | None = (
            AuthHook(authenticate) if authenticate is not None
            else load_hook(settings.authenticate) if settings.authenticate else None)
        self.broker = broker or make_broker(settings)
        self.sessions_store: RedisSessions | None = None
        if settings.session_prefix:
            url = settings.session_redis_url or settings.redis_url
            if url is None:
                raise ConfigError("JOBWIRE_SESSION_PREFIX needs JOBWIRE_SESSION_REDIS_URL "
                                  "or JOBWIRE_REDIS_URL")
            self.sessions_store = RedisSessions(url, settings.session_prefix)
        self.limits = Limits(settings)
        self.hub = Hub()
        if self.broker.split_audience:
            self.broker.add_listener(self.hub.route_members)
            self.broker.add_admin_listener(self.hub.route_admins)
        else:
            self.broker.add_listener(self.hub.route)
        self.followed: dict[Session, str] = {}  # what each session had the broker follow
        self.sessions: dict[Session, str] = {}  # live sessions → transport name
        self.latency = Histogram()  # acceptance → write to a client, seconds
        self.shed_closed = 0  # events shed by sessions that have ended
        self.slow_disconnects = 0  # clients cut off for not keeping up
        self.shutting_down = False

    async def authenticate(self, token: str | None, session_id: str | None = None
                           ) -> Principal:
        """A JWT, or an app session id looked up in Redis (when configured)."""
        store = self.sessions_store
        if token is not None and (store is None or token.count(".") == 2):
            return self.auth.verify(token)
        if store is not None and (token or session_id):
            return await store.lookup(token or session_id or "")
        raise Unauthorized("a token is required")

    def open_session(self, principal: Principal, transport: str, wake: Callable[[], None],
                     max_outbox: int | None = None) -> Session:
        session = Session(principal, max_outbox=max_outbox or self.settings.max_outbox,
                          wake=wake)
        self.sessions[session] = transport
        if self.shutting_down:
            session.close(CloseReason.SHUTDOWN)
        return session

    def close_session(self, session: Session) -> None:
        self.hub.remove(session)
        followed = self.followed.pop(session, None)
        if followed is not None:
            self.broker.unfollow([followed])
        if self.sessions.pop(session, None) is not None:
            self.shed_closed += session.shed
            self.slow_disconnects += session.closed is CloseReason.SLOW

    @property
    def shed_total(self) -> int:
        return self.shed_closed + sum(s.shed for s in self.sessions)

    async def send_heartbeats(self) -> None:
        """One loop for every WebSocket: a heartbeat each interval (SSE streams time their
        own, between their writes), the sockets taking turns over it (heartbeats.py)."""
        turns = HeartbeatTurns(self.settings.heartbeat_seconds)
        loop = asyncio.get_running_loop()
        start, tick = loop.time(), 0
        while True:
            tick += 1
            # From the start, not from the last tick: a late tick does not delay the rest.
            await asyncio.sleep(max(0.0, start + tick * turns.tick_seconds - loop.time()))
            beat = heartbeat_message()
            for session in turns.due(self.sessions, tick):
                session.heartbeat(beat)

    def shutdown_sessions(self) -> None:
        self.shutting_down = True
        for session in list(self.sessions):
            session.close(CloseReason.SHUTDOWN)

    async def subscribe(self, session: Session, *, job_ids: list[str] | None, all_jobs: bool,
                        user_id: str | None, after: Position | None,
                        announce: bool = True) -> Subscribed:
        """Add subscriptions to `session` and queue, in order: an `error` per refused job id
        (and `cursor_expired`), the `subscribed` snapshot, the events missed since `after`,
        then the live stream. Nothing is missed or repeated between them. With `announce`
        false the errors and snapshot are only returned (long-polling answers them itself)."""
        p = session.principal
        if not p.can_read:
            raise Forbidden("publishers cannot subscribe")
        if user_id is not None and user_id != p.user_id and not p.is_admin:
            raise Forbidden("userId must be your own", field="userId")
        errors: list[JobwireError] = []
        answer: dict[str, Any] = {"type": "subscribed"}
        if all_jobs:
            target = user_id if p.is_admin else p.user_id
            scope = Scope(user_id=target)
            added = 0 if (target in session.all_of if target else session.watch_all) else 1
            answer["all"] = True
            if target is not None and p.is_admin:
                answer["userId"] = target
        else:
            wanted = list(dict.fromkeys(job_ids or ()))
            owners = await self.broker.owners(wanted)
            allowed = []
            for job_id in wanted:
                owner = owners.get(job_id)
                if owner is not None and not p.may_see(owner):
                    errors.append(Forbidden("not your job", job_id=job_id))
                else:
                    allowed.append(job_id)
            scope = Scope(job_ids=frozenset(allowed), owner=None if p.is_admin else p.user_id)
            added = len(set(allowed) - session.job_ids)
            answer["jobIds"] = allowed
        if session.subscription_count + added > self.settings.max_subscriptions:
            raise TooManySubscriptions(
                f"at most {self.settings.max_subscriptions} subscriptions per connection")

        if session not in self.followed:
            # The broker delivers this principal's events from now on (first, so that what
            # the read below does not cover arrives live).
            key = EVERYONE if p.is_admin else p.user_id
            await self.broker.follow([key])
            if session in self.sessions:
                self.followed[session] = key
            else:
                self.broker.unfollow([key])  # it closed meanwhile
        scope = replace(scope, admin=p.is_admin)
        before = _subscriptions(session)
        already = _frozen_matcher(before)
        session.begin_sync()
        if all_jobs:
            if scope.user_id is None:
                self.hub.subscribe_everything(session)
            else:
                self.hub.subscribe_user(session, scope.user_id)
        else:
            self.hub.subscribe_jobs(session, scope.job_ids or ())
        try:
            try:
                view = await self.broker.view(scope, after, with_states=announce)
            except CursorExpired as exc:
                errors.append(exc)
                view = await self.broker.view(scope, None)
        except BaseException:
            # Refused (the broker failed): take back what this subscribe added, or live
            # events of the new scope would reach the session without their snapshot, and
            # a retry from the same cursor would skip the replay older than them.
            self._restore(session, before)
            session.end_sync(session.floor, [], [])
            raise
        states = view.states
        if after is not None and not any(isinstance(e, CursorExpired) for e in errors):
            # Resuming: a job that moved since `after` is told by its replayed events (the
            # last of which is its current state), so only unchanged jobs are listed here.
            states = [s for s in states if parse_id(s["id"]) <= after]
        answer["jobs"] = states
        answer["cursor"] = format_id(view.head)
        # Streams beat at this interval: clients take two missed beats for a dead link.
        answer["heartbeatSeconds"] = self.settings.heartbeat_seconds
        answer["principal"] = principal_fields(p)
        prefix = [*(dumps(e.to_message()) for e in errors), dumps(answer)] if announce else []
        session.end_sync(view.head, prefix, view.events, already)
        return Subscribed(errors, answer)

    def _restore(self, session: Session, before: tuple[set[str], set[str], bool]) -> None:
        job_ids, all_of, watch_all = before
        self.hub.unsubscribe_jobs(session, list(session.job_ids - job_ids))
        if session.all_of != all_of or session.watch_all != watch_all:
            self.hub.unsubscribe_all(session)
            for user_id in all_of:
                self.hub.subscribe_user(session, user_id)
            if watch_all:
                self.hub.subscribe_everything(session)

    def unsubscribe(self, session: Session, *, job_ids: list[str] | None,
                    all_jobs: bool) -> None:
        if all_jobs:
            self.hub.unsubscribe_all(session)
        if job_ids:
            self.hub.unsubscribe_jobs(session, job_ids)


class Limits:
    """Every abuse limit of the service, keyed by user, IP or publisher."""

    def __init__(self, settings: Settings):
        s = settings
        self.user_connects = KeyedBuckets(s.max_connections_per_second_per_user,
                                          10 * s.max_connections_per_second_per_user)
        self.ip_connects = KeyedBuckets(s.max_connections_per_second_per_ip,
                                        10 * s.max_connections_per_second_per_ip)
        self.open_connections = Concurrency(s.max_connections_per_user)
        self.longpolls = Concurrency(s.max_longpolls_per_user)
        self.publishes = KeyedBuckets(s.max_publishes_per_second, 2 * s.max_publishes_per_second)
        self.hits = 0  # refusals, for metrics

    def connect(self, principal: Principal, ip: str | None, now: float) -> None:
        """A new streaming connection (WebSocket or SSE); pair with `disconnect`."""
        try:
            self.ip_connects.take(ip or "?", now, what="new connections from this address")
            self.user_connects.take(principal.user_id, now, what="new connections")
            self.open_connections.enter(principal.user_id, "open connections")
        except RateLimited:
            self.hits += 1
            raise

    def disconnect(self, principal: Principal) -> None:
        self.open_connections.leave(principal.user_id)

    def publish(self, principal: Principal, count: int, now: float) -> None:
        try:
            self.publishes.take(principal.user_id, now, cost=count, what="updates")
        except RateLimited:
            self.hits += 1
            raise

    def enter_longpoll(self, principal: Principal) -> None:
        try:
            self.longpolls.enter(principal.user_id, "waiting long-polls")
        except RateLimited:
            self.hits += 1
            raise


def make_broker(settings: Settings) -> Broker:
    """The in-process broker, or Redis when a URL is configured."""
    common: dict[str, Any] = dict(
        history_size=settings.history_size, global_history_size=settings.global_history_size,
        history_ttl_seconds=settings.history_ttl_seconds,
        max_updates_per_second=settings.max_updates_per_job_per_second,
        stalled_after_seconds=settings.stalled_after_seconds)
    if settings.redis_url is None:
        return MemoryBroker(**common)
    if settings.redis_url.startswith("redis+cluster://"):
        from .broker.cluster import ClusterBroker

        return ClusterBroker(settings.redis_url, prefix=settings.redis_prefix,
                             partitions=settings.redis_partitions,
                             durable_replicas=settings.redis_durable_replicas, **common)
    from .broker.redis import RedisBroker

    return RedisBroker(settings.redis_url, prefix=settings.redis_prefix,
                       channel_prefix=settings.redis_channel_prefix,
                       durable_replicas=settings.redis_durable_replicas, **common)


@dataclass(slots=True)
class Subscribed:
    errors: list[JobwireError]  # refused job ids, cursor_expired
    answer: dict[str, Any]  # the `subscribed` message: jobs (the snapshot) and cursor

    @property
    def cursor_expired(self) -> bool:
        return any(isinstance(e, CursorExpired) for e in self.errors)


def _subscriptions(session: Session) -> tuple[set[str], set[str], bool]:
    return set(session.job_ids), set(session.all_of), session.watch_all


def _frozen_matcher(before: tuple[set[str], set[str], bool]) -> Callable[[Event], bool]:
    """What the session matched before this subscribe (its `_subscriptions`), to skip replays
    it already has."""
    job_ids, all_of, watch_all = before
    return lambda e: watch_all or e.user_id in all_of or e.job_id in job_ids
