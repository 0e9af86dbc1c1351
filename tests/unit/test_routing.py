"""Hub routing and isolation, sessions (sync, floor, shedding), history and cursors."""

import gc

import pytest

from jobwire.auth import Principal, Role
from jobwire.cursor import format_id
from jobwire.errors import CursorExpired
from jobwire.events import Event
from jobwire.history import History
from jobwire.hub import Hub
from jobwire.session import CloseReason, Session

ALICE = Principal("alice", Role.USER)
BOB = Principal("bob", Role.USER)
ADMIN = Principal("root", Role.ADMIN)
PUBLISHER = Principal("worker", Role.PUBLISHER)

_clock = iter(range(1, 10**9))


def ev(job="j1", user="alice", progress_only=False, ms=None):
    pos = (ms if ms is not None else next(_clock), 0)
    payload = {"type": "status_update", "id": format_id(pos), "jobId": job, "userId": user}
    return Event(pos, job, user, 1, payload, progress_only)


def wire(events):
    """What a client gets of each event: comparable whether kept or revived from history."""
    return [(e.pos, e.job_id, e.user_id, e.seq, e.id, e.text, e.progress_only) for e in events]


def received(session):
    return [item for item in session.drain() if isinstance(item, Event)]


class TestHub:
    def test_job_subscription_gets_only_that_job(self):
        hub, s = Hub(), Session(ALICE)
        hub.subscribe_jobs(s, ["j1"])
        e1, e2 = ev("j1"), ev("j2")
        hub.route(e1)
        hub.route(e2)
        assert received(s) == [e1]

    def test_all_of_user_gets_every_job_of_that_user_only(self):
        hub, a, b = Hub(), Session(ALICE), Session(BOB)
        hub.subscribe_user(a, "alice")
        hub.subscribe_user(b, "bob")
        ea, eb = ev("ja", "alice"), ev("jb", "bob")
        hub.route(ea)
        hub.route(eb)
        assert received(a) == [ea] and received(b) == [eb]

    def test_job_subscription_to_another_users_job_delivers_nothing(self):
        hub, s = Hub(), Session(ALICE)
        hub.subscribe_jobs(s, ["bobs-job"])
        assert hub.route(ev("bobs-job", "bob")) == 0
        assert received(s) == []

    def test_admin_everything_and_publisher_nothing(self):
        hub, admin, pub = Hub(), Session(ADMIN), Session(PUBLISHER)
        hub.subscribe_everything(admin)
        hub.subscribe_jobs(pub, ["j1"])
        events = [ev("j1", "alice"), ev("j2", "bob")]
        for e in events:
            hub.route(e)
        assert received(admin) == events and received(pub) == []

    def test_overlapping_subscriptions_deliver_once(self):
        hub, s = Hub(), Session(ALICE)
        hub.subscribe_jobs(s, ["j1"])
        hub.subscribe_user(s, "alice")
        e = ev("j1")
        assert hub.route(e) == 1
        assert received(s) == [e]

    def test_unsubscribe_and_remove_clean_the_indexes(self):
        hub, s = Hub(), Session(ADMIN)
        hub.subscribe_jobs(s, ["j1", "j2"])
        hub.subscribe_user(s, "alice")
        hub.subscribe_everything(s)
        hub.unsubscribe_jobs(s, ["j1"])
        assert "j1" not in hub.by_job and s.job_ids == {"j2"}
        hub.remove(s)
        assert hub.by_job == {} and hub.by_user == {} and hub.everything == set()
        assert s.subscription_count == 0

    def test_one_event_fans_out_to_many_with_one_encoding(self):
        hub = Hub()
        sessions = [Session(ALICE) for _ in range(100)]
        for s in sessions:
            hub.subscribe_user(s, "alice")
        e = ev("j1")
        assert hub.route(e) == 100
        raws = {id(s.drain()[0].text) for s in sessions}
        assert len(raws) == 1


class TestSession:
    def test_floor_drops_events_already_covered(self):
        s = Session(ALICE)
        e1, e2 = ev(ms=10), ev(ms=20)
        s.deliver(e2)
        s.deliver(e1)
        s.deliver(e2)
        assert received(s) == [e2]

    def test_sync_holds_live_events_and_releases_only_newer_than_head(self):
        s = Session(ALICE)
        s.begin_sync()
        old, new = ev(ms=100), ev(ms=300)
        s.deliver(old)
        s.deliver(new)
        assert s.outbox == type(s.outbox)()  # nothing out while syncing
        replayed = ev(ms=50)
        s.end_sync((200, 0), [b'{"type":"subscribed"}'], [replayed])
        items = s.drain()
        assert items[0] == b'{"type":"subscribed"}'
        assert items[1:] == [replayed, new]

    def test_resubscribe_skips_replay_of_what_was_already_delivered(self):
        s = Session(ALICE)
        seen = ev("j1", ms=1000)
        s.deliver(seen)
        s.drain()
        s.begin_sync()
        fresh = ev("j2", ms=900)
        s.end_sync((1000, 0), [], [seen, fresh], already_matched=lambda e: e.job_id == "j1")
        assert received(s) == [fresh]

    def test_shedding_keeps_latest_progress_per_job_and_all_status_changes(self):
        s = Session(ALICE, max_outbox=8)
        status_change = ev("j1")
        s.deliver(status_change)
        progress = [ev("j1", progress_only=True) for _ in range(6)]
        other = [ev("j2", progress_only=True) for _ in range(2)]
        for e in progress + other:
            s.deliver(e)
        assert s.closed is None
        assert received(s) == [status_change, progress[-1], *other[-1:]]

    def test_cut_off_when_shedding_is_not_enough(self):
        woken = []
        s = Session(ALICE, max_outbox=8, wake=lambda: woken.append(1))
        for i in range(9):
            s.deliver(ev(f"job{i}"))  # nine different jobs: nothing to shed
        assert s.closed is CloseReason.SLOW and s.outbox == type(s.outbox)()
        s.deliver(ev("late"))
        assert s.drain() == []

    def test_a_replay_longer_than_the_outbox_is_kept_whole_once(self):
        s = Session(ALICE, max_outbox=8)
        s.begin_sync()
        replay = [ev(f"job{i}") for i in range(20)]  # distinct jobs: nothing to shed
        s.end_sync(replay[-1].pos, [b'{"type":"subscribed"}'], replay)
        assert s.closed is None
        assert received(s) == replay
        for i in range(9):  # drained: the usual limit holds again for live events
            s.deliver(ev(f"live{i}"))
        assert s.closed is CloseReason.SLOW

    def test_control_messages_are_never_shed(self):
        s = Session(ALICE, max_outbox=8)
        for _ in range(3):
            s.send(b"{}")
        progress = [ev("j1", progress_only=True) for _ in range(20)]
        for e in progress:
            s.deliver(e)
        items = s.drain()
        assert s.closed is None and len(items) <= 8
        assert items[:3] == [b"{}"] * 3 and items[-1] is progress[-1]


class TestHistory:
    def test_retained_events_are_invisible_to_the_garbage_collector(self):
        # Full collections scan every tracked object: a large history must not add to them.
        h = History(per_user=10)
        for i in range(1, 6):
            h.append(ev("j1", ms=i), now=0)
        gc.collect()  # untracks the positions (inner tuples) first,
        gc.collect()  # then the entries holding them
        assert not any(gc.is_tracked(entry) for entry in h.everything.events)
        assert wire(h.since((0, 0), None))[0][0] == (1, 0)

    def test_since_returns_events_after_cursor_in_order(self):
        h = History(per_user=10)
        events = [ev("j1", ms=i) for i in range(1, 6)]
        for e in events:
            h.append(e, now=0)
        assert wire(h.since((2, 0), "alice")) == wire(events[2:])
        assert wire(h.since((5, 0), "alice")) == wire([])
        assert wire(h.since((0, 0), None)) == wire(events)

    def test_since_filters_by_job(self):
        h = History()
        a, b = ev("a", ms=1), ev("b", ms=2)
        h.append(a, 0)
        h.append(b, 0)
        assert wire(h.since((0, 0), "alice", {"b"})) == wire([b])

    def test_users_logs_are_separate(self):
        h = History()
        mine, theirs = ev("a", "alice", ms=1), ev("b", "bob", ms=2)
        h.append(mine, 0)
        h.append(theirs, 0)
        assert wire(h.since((0, 0), "alice")) == wire([mine])
        assert wire(h.since((0, 0), "nobody")) == wire([])

    def test_cursor_older_than_count_window_expires(self):
        h = History(per_user=3)
        events = [ev("j", ms=i) for i in range(1, 6)]
        for e in events:
            h.append(e, 0)
        # 2 was dropped last: nothing lost after it
        assert wire(h.since((2, 0), "alice")) == wire(events[2:])
        with pytest.raises(CursorExpired):
            h.since((1, 0), "alice")

    def test_cursor_older_than_time_window_expires(self):
        h = History(ttl_seconds=10)
        old, new = ev("j", ms=1), ev("j", ms=2)
        h.append(old, now=0)
        h.append(new, now=20)
        h.trim(now=25)
        assert wire(h.since((1, 0), "alice")) == wire([new])
        with pytest.raises(CursorExpired):
            h.since((0, 0), "alice")
