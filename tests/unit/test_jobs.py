"""The job state machine: seq, ownership, lifecycle, dedupe, eventId, conflation, stalls."""

import pytest

from jobwire.cursor import parse_id
from jobwire.errors import JobFinished, LifecycleViolation, OwnerMismatch, ProgressRegression
from jobwire.jobs import JobBook
from jobwire.protocol import parse_update

TS = "2026-01-01T00:00:00Z"


def upd(status="processing", progress=None, job="j1", user="u1", **extra):
    body = {"jobId": job, "userId": user, "status": status, **extra}
    if progress is not None:
        body["progress"] = progress
    return parse_update(body)


def accept(book, update, now=0.0):
    return book.accept(update, now, TS)


@pytest.fixture
def book():
    return JobBook(max_updates_per_second=10)


def test_first_event_has_seq_1_and_an_opaque_id(book):
    ack, event = accept(book, upd("queued"))
    assert (ack.seq, event.seq) == (1, 1)
    assert ack.id == event.id and not ack.id.isdigit()
    assert event.payload["type"] == "status_update"
    assert event.payload["status"] == "queued" and event.payload["progress"] == 0


def test_seq_counts_delivered_events_without_gaps(book):
    seqs = []
    for i, status in enumerate(["queued", "processing", "processing", "completed"]):
        _, event = accept(book, upd(status, progress=i * 10), now=float(i))
        seqs.append(event.seq)
    assert seqs == [1, 2, 3, 4]


def test_ids_strictly_increase(book):
    ids = [accept(book, upd(progress=p, job=f"j{p}"), now=1.0)[1].id for p in range(50)]
    positions = [parse_id(i) for i in ids]
    assert positions == sorted(positions) and len(set(positions)) == 50


def test_terminal_event_is_job_completed_with_result(book):
    accept(book, upd("processing", 50))
    _, event = accept(book, upd("completed", result={"pages": 3}), now=1)
    assert event.payload["type"] == "job_completed"
    assert event.payload["progress"] == 100
    assert event.payload["result"] == {"pages": 3} and event.payload["error"] is None


def test_owner_is_fixed_by_first_update(book):
    accept(book, upd("queued", user="alice"))
    with pytest.raises(OwnerMismatch) as exc:
        accept(book, upd("processing", 10, user="mallory"), now=1)
    assert exc.value.http_status == 409 and exc.value.field == "userId"
    assert book.jobs["j1"].user_id == "alice" and book.jobs["j1"].seq == 1


@pytest.mark.parametrize("terminal", ["completed", "failed", "cancelled"])
@pytest.mark.parametrize("after", ["queued", "processing", "completed", "failed"])
def test_nothing_after_a_terminal_update(book, terminal, after):
    accept(book, upd(terminal, 100))
    if after == terminal:
        # An identical repeat is a duplicate, acknowledged with the same event.
        ack, event = accept(book, upd(after, 100), now=1)
        assert event is None and ack.seq == 1
        return
    with pytest.raises(JobFinished):
        accept(book, upd(after, 100), now=1)
    assert book.jobs["j1"].seq == 1


def test_lifecycle_never_moves_backwards(book):
    accept(book, upd("processing", 20))
    with pytest.raises(LifecycleViolation) as exc:
        accept(book, upd("queued", 20), now=1)
    assert exc.value.field == "status"
    assert book.jobs["j1"].fields["status"] == "processing"


def test_progress_goes_down_only_with_a_status_change(book):
    accept(book, upd("queued", 50))
    with pytest.raises(ProgressRegression):
        accept(book, upd("queued", 40), now=1)
    _, event = accept(book, upd("processing", 0), now=2)
    assert event.payload["progress"] == 0


def test_duplicate_is_acknowledged_not_delivered(book):
    ack1, _ = accept(book, upd("processing", 10, currentOperation="x"))
    ack2, event = book.accept(upd("processing", 10, currentOperation="x"), 5.0, "later")
    assert event is None and (ack2.id, ack2.seq) == (ack1.id, ack1.seq)
    assert book.jobs["j1"].seq == 1


def test_event_id_makes_retries_idempotent_even_after_terminal(book):
    ack1, _ = accept(book, upd("processing", 10, eventId="e1"))
    accept(book, upd("completed", 100, eventId="e2"), now=1)
    retry, event = accept(book, upd("processing", 10, eventId="e1"), now=2)
    assert event is None and (retry.id, retry.seq) == (ack1.id, 1)


def test_omitted_fields_keep_their_value(book):
    accept(book, upd("processing", 30, currentOperation="page 3", workerId="w1"))
    _, event = accept(book, upd("processing", 40), now=1)
    assert event.payload["currentOperation"] == "page 3" and event.payload["workerId"] == "w1"


class TestConflation:
    def test_progress_within_interval_waits_and_latest_wins(self, book):
        accept(book, upd("processing", 1), now=0.0)
        ack_a, ev_a = accept(book, upd("processing", 2), now=0.01)
        ack_b, ev_b = accept(book, upd("processing", 3), now=0.02)
        assert ev_a is None and ev_b is None
        assert (ack_a.id, ack_a.seq) == (None, None)
        assert ack_a.flush_at == pytest.approx(0.1)
        assert ack_b.flush_at is None  # one flush is already scheduled
        flushed = book.flush("j1", 0.1)
        assert flushed.payload["progress"] == 3 and flushed.seq == 2
        assert book.flush("j1", 0.2) is None

    def test_progress_after_interval_goes_out_at_once(self, book):
        accept(book, upd("processing", 1), now=0.0)
        _, event = accept(book, upd("processing", 2), now=0.15)
        assert event is not None and event.seq == 2

    def test_status_change_is_never_held_and_supersedes_waiting_progress(self, book):
        accept(book, upd("processing", 1), now=0.0)
        accept(book, upd("processing", 50), now=0.01)
        _, done = accept(book, upd("completed", 100), now=0.02)
        assert done is not None and done.payload["status"] == "completed" and done.seq == 2
        assert book.flush("j1", 0.1) is None

    def test_conflated_event_id_resolves_after_flush(self, book):
        accept(book, upd("processing", 1), now=0.0)
        accept(book, upd("processing", 2, eventId="late"), now=0.01)
        retry, _ = accept(book, upd("processing", 2, eventId="late"), now=0.02)
        assert retry.id is None
        flushed = book.flush("j1", 0.1)
        retry, _ = accept(book, upd("processing", 2, eventId="late"), now=0.2)
        assert (retry.id, retry.seq) == (flushed.id, flushed.seq)

    def test_rate_zero_disables_conflation(self):
        book = JobBook(max_updates_per_second=0)
        events = [accept(book, upd("processing", p), now=0.0)[1] for p in range(10)]
        assert all(e is not None for e in events)


class TestStalled:
    def test_one_stalled_event_then_cleared_by_next_update(self, book):
        accept(book, upd("processing", 10), now=0.0)
        assert book.stalled(59.0, 60) == []
        (stall,) = book.stalled(60.0, 60)
        assert stall.payload["type"] == "job_stalled" and stall.seq == 2
        assert stall.payload["lastUpdate"] == TS
        assert book.stalled(200.0, 60) == []  # once, not again
        # The same state again is not a duplicate now: it clears the stall.
        _, event = accept(book, upd("processing", 10), now=201)
        assert event is not None and event.seq == 3 and book.jobs["j1"].stalled is False

    def test_only_processing_jobs_stall(self, book):
        accept(book, upd("queued", job="q"))
        accept(book, upd("completed", job="c"))
        assert book.stalled(1000.0, 60) == []


def test_forget_finished_drops_old_terminal_jobs_only(book):
    accept(book, upd("completed", job="old"), now=0)
    accept(book, upd("processing", 5, job="running"), now=0)
    assert book.forget_finished(100.0, 50) == 1
    assert set(book.jobs) == {"running"}


def test_only_an_ending_carries_result_or_error(book):
    _, event = accept(book, upd("processing", 10, result={"early": True}, error="nope"))
    assert "result" not in event.payload
    ack, dup = accept(book, upd("processing", 10, result={"other": 1}), now=1)
    assert dup is None and ack.seq == 1  # nothing visible changed: a duplicate
