"""`jobwire loadtest` pure parts: percentiles, durations, option checks, seq accounting."""

from __future__ import annotations

import pytest

from jobwire.loadtest.options import Options, parse_duration, transport_of, validate
from jobwire.loadtest.publisher import job_slots, make_lanes
from jobwire.loadtest.stats import Tally, merge, percentile, summary

TS = "2026-01-01T00:00:00+00:00"
T0 = 1767225600.0  # TS in Unix seconds


def test_percentile_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50
    assert percentile(values, 95) == 95
    assert percentile(values, 99) == 99
    assert percentile(values, 100) == 100
    assert percentile(values, 0) == 1
    assert percentile([7.0], 99) == 7
    assert percentile([], 50) is None


def test_summary_scales_sorts_and_counts() -> None:
    s = summary([0.003, 0.001, 0.002, 0.010], scale=1000)
    assert s == {"p50": 2.0, "p95": 10.0, "p99": 10.0, "max": 10.0, "n": 4}
    assert summary([]) == {"p50": None, "p95": None, "p99": None, "max": None, "n": 0}
    assert set(summary([1.0], points=(50, 99))) == {"p50", "p99", "max", "n"}


@pytest.mark.parametrize(("text", "seconds"), [
    ("30", 30), ("30s", 30), ("2m", 120), ("1m30s", 90), ("500ms", 0.5), ("1.5s", 1.5),
    ("1h", 3600), (" 2M ", 120), ("0.25", 0.25)])
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "s", "30x", "abc", "1m30", "-5s", "30 s", "inf"])
def test_parse_duration_refuses(text: str) -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration(text)


def ok_options(**changes: object) -> Options:
    o = Options(urls=["http://127.0.0.1:3000"], secret="x" * 32)
    for k, v in changes.items():
        setattr(o, k, v)
    return o


def test_valid_options_pass() -> None:
    assert validate(ok_options()) == []
    assert validate(Options(spawn=True)) == []  # spawn: no url, no secret needed
    assert validate(ok_options(transport="mixed", disconnect_every=10)) == []
    assert validate(ok_options(processes=4, ws_client="websockets")) == []
    assert validate(Options(spawn=True, instances=2, processes=2)) == []


@pytest.mark.parametrize(("changes", "fragment"), [
    ({"urls": []}, "--url is required"),
    ({"spawn": True}, "exclude each other"),
    ({"urls": ["127.0.0.1:3000"]}, "must be http://"),
    ({"urls": ["ftp://host"]}, "must be http://"),
    ({"secret": None}, "--secret or JOBWIRE_SECRET"),
    ({"connections": 0}, "--connections"),
    ({"duration": 0}, "--duration"),
    ({"rate": -1}, "--updates-per-second"),
    ({"rate": float("nan")}, "--updates-per-second"),
    ({"concurrent": 0}, "--concurrent"),
    ({"transport": "carrier-pigeon"}, "--transport"),
    ({"disconnect_every": -1}, "--disconnect-every"),
    ({"disconnect_every": 1000}, "below --connections"),
    ({"poll_interval": 0}, "--poll-interval"),
    ({"server_pids": [2**22 + 12345]}, "no such process"),
    ({"processes": 0}, "--processes must be at least 1"),
    ({"processes": 1001}, "--processes must not be above --connections"),
    ({"ws_client": "aiohttp"}, "--ws-client"),
    ({"instances": 2}, "--instances is for --spawn"),
])
def test_invalid_options_are_named(changes: dict[str, object], fragment: str) -> None:
    problems = validate(ok_options(**changes))
    assert len(problems) == 1, problems
    assert fragment in problems[0]


def test_mixed_is_an_even_split() -> None:
    picked = [transport_of(i, "mixed") for i in range(8)]
    assert sorted(picked) == sorted(["ws", "sse", "longpoll", "poll"] * 2)
    assert {transport_of(i, "sse") for i in range(5)} == {"sse"}


def event(job: str, seq: int, user: str = "u1") -> dict[str, object]:
    return {"jobId": job, "seq": seq, "userId": user, "timestamp": TS, "id": f"1-{seq}"}


def test_tally_counts_gaps_duplicates_and_foreign_events() -> None:
    t, seqs = Tally(), {}
    for seq in (1, 2, 2, 5, 4):  # a duplicate 2, 3 and 4 missing, then a late 4
        t.event(seqs, event("j", seq), "u1", T0 + 0.010)
    t.event(seqs, event("k", 1, user="u2"), "u1", None)
    assert (t.delivered, t.gaps, t.duplicates, t.foreign) == (4, 2, 2, 1)
    assert t.latencies == [pytest.approx(0.010)] * 3  # none for the snapshot state


def test_tally_states_cover_superseded_events() -> None:
    t, seqs = Tally(), {}
    t.state(seqs, event("j", 3), "u1", T0 + 1)  # states 1 and 2 were never seen
    t.state(seqs, event("j", 3), "u1", T0 + 2)  # unchanged: nothing
    t.state(seqs, event("j", 2), "u1", T0 + 2)  # older than known: counted
    t.state(seqs, event("j", 4), "u1", T0 + 2)
    assert (t.delivered, t.received, t.superseded, t.duplicates, t.gaps) == (4, 2, 2, 1, 0)
    merged = merge([t, t])
    assert (merged.delivered, len(merged.latencies)) == (8, 4)


def test_note_keeps_a_few_samples() -> None:
    t = Tally()
    for i in range(30):
        t.note("drops", f"drop {i}")
    assert t.drops == 30 and len(t.samples) == 10


def test_lanes_split_the_jobs_and_the_updates_exactly() -> None:
    users = [f"u{i}" for i in range(7)]
    slots = job_slots(users, 5)
    lanes = make_lanes([("a", "t1"), ("a", "t2"), ("b", "t1")], len(users), slots, 1001, 100.0)
    assert sum(lane.total for lane in lanes) == 1001
    assert sorted(s for lane in lanes for s in lane.slots) == sorted(slots)
    assert sum(lane.rate for lane in lanes) == pytest.approx(100.0)
    for lane in lanes:  # every user has jobs on every lane
        assert {u for _, u in lane.slots} == set(users)
