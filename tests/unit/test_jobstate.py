"""A job survives a round trip through its JSON state unchanged in behaviour."""

import orjson

from jobwire.jobs import JobBook
from jobwire.jobstate import job_from_state, job_to_state
from jobwire.protocol import parse_update


def upd(**fields):
    return parse_update({"jobId": "j", "userId": "u", **fields})


def roundtrip(book):
    job = book.jobs["j"]
    state = orjson.loads(orjson.dumps(job_to_state(job)))
    assert "id" not in (state["event"] or {})
    copy = JobBook(max_updates_per_second=10)
    copy.jobs["j"] = job_from_state("j", state, job.event.id if job.event else None)
    copy.clock = book.clock
    return copy


def test_state_round_trip_keeps_every_rule():
    book = JobBook(max_updates_per_second=10)
    book.accept(upd(status="processing", progress=10, workerId="w"), 0.0, "t0")
    book.accept(upd(status="processing", progress=20, eventId="e1"), 0.01, "t1")  # pending
    copy = roundtrip(book)
    job = copy.jobs["j"]
    assert job.pending is not None and job.pending_event_ids == ["e1"] and job.flush_scheduled
    assert job.event.payload == book.jobs["j"].event.payload
    flushed = copy.flush("j", 0.2)
    assert (flushed.seq, flushed.payload["progress"], flushed.payload["workerId"]) == (2, 20, "w")
    again = roundtrip(copy)
    _, done = again.accept(upd(status="completed"), 1.0, "t2")
    assert done.seq == 3 and done.payload["type"] == "job_completed"


def test_stalled_and_eta_state_survive():
    book = JobBook()
    book.accept(upd(status="processing", progress=10), 0.0, "t0")
    book.accept(upd(status="processing", progress=30), 2.0, "t1")
    book.stalled(100.0, 60)
    copy = roundtrip(book)
    assert copy.jobs["j"].stalled and copy.jobs["j"].eta.rate == book.jobs["j"].eta.rate
    assert copy.stalled(200.0, 60) == []


def test_every_event_carries_when_the_job_was_created_across_round_trips():
    book = JobBook()
    _, first = book.accept(upd(status="queued"), 0.0, "t0")
    _, running = book.accept(upd(status="processing", progress=10), 1.0, "t1")
    [stalled] = book.stalled(100.0, 60)
    copy = roundtrip(book)
    _, done = copy.accept(upd(status="completed"), 101.0, "t2")
    assert [e.payload["createdAt"] for e in (first, running, stalled, done)] == ["t0"] * 4
    assert [e.payload["timestamp"] for e in (first, running, done)] == ["t0", "t1", "t2"]


def test_a_job_stored_before_creation_times_were_kept_has_none():
    book = JobBook()
    book.accept(upd(status="processing", progress=10), 0.0, "t0")
    state = job_to_state(book.jobs["j"])
    del state["createdAt"]
    job = job_from_state("j", state, book.jobs["j"].event.id)
    copy = JobBook()
    copy.jobs["j"], copy.clock = job, book.clock
    _, done = copy.accept(upd(status="completed"), 1.0, "t1")
    assert done.payload["createdAt"] is None
