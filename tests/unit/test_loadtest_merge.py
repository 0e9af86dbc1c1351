"""`jobwire loadtest --processes N`: the reader groups' tallies, CPU and loop lateness merged
into one result, and the split of clients and forced disconnects over the groups. The worker
protocol over a real worker process is in tests/integration/test_loadtest_workers.py."""

from __future__ import annotations

import orjson
import pytest

from jobwire.loadtest.report import (
    SATURATED,
    LoadgenProcess,
    loadgen_bottlenecks,
    loadgen_result,
)
from jobwire.loadtest.runner import spread
from jobwire.loadtest.stats import Tally, merge_parts, tally_fields
from jobwire.loadtest.workers import split

TS = "2026-01-01T00:00:00+00:00"
T0 = 1767225600.0


def event(job: str, seq: int, user: str) -> dict[str, object]:
    return {"jobId": job, "seq": seq, "userId": user, "timestamp": TS, "id": f"1-{seq}"}


def part(**tallies: Tally) -> dict[str, object]:
    """A group's `finish` answer, through JSON as it crosses the process boundary."""
    return orjson.loads(orjson.dumps({"tallies": {t: tally_fields(v)
                                                  for t, v in tallies.items()}}))


def test_tallies_survive_the_trip_between_processes() -> None:
    t, seqs = Tally(), {}
    for seq in (1, 2, 4):
        t.event(seqs, event("j", seq, "u1"), "u1", T0 + 0.25)
    t.note("drops", "u1: reset")
    t.connect_times.append(0.5)
    back = Tally(**orjson.loads(orjson.dumps(tally_fields(t))))
    assert back == t


def test_parts_add_up_per_transport_in_the_given_order() -> None:
    a_ws, a_sse, b_ws = Tally(), Tally(), Tally()
    for tally, user, seqs_seen, latency in ((a_ws, "u0", (1, 2, 3), 0.010),
                                            (a_sse, "u1", (1, 3), 0.020),
                                            (b_ws, "u2", (1, 1), 0.030)):
        seqs: dict[str, int] = {}
        for seq in seqs_seen:
            tally.event(seqs, event(f"{user}-j", seq, user), user, T0 + latency)
        tally.connected, tally.forced, tally.reconnected = 1, 2, 1
        tally.connect_times.append(latency)
        tally.reconnect_times.append(latency)
    merged = merge_parts([part(sse=a_sse, ws=a_ws), part(ws=b_ws)],
                         order=["ws", "sse", "longpoll"])
    assert list(merged) == ["ws", "sse", "longpoll"]
    ws, sse, longpoll = merged["ws"], merged["sse"], merged["longpoll"]
    assert (ws.delivered, ws.duplicates, ws.gaps, ws.connected) == (4, 1, 0, 2)
    assert sorted(ws.latencies) == pytest.approx([0.010] * 3 + [0.030])
    assert (ws.forced, ws.reconnected, len(ws.reconnect_times)) == (4, 2, 2)
    assert sorted(ws.connect_times) == pytest.approx([0.010, 0.030])
    assert (sse.delivered, sse.gaps, len(sse.latencies)) == (2, 1, 2)
    assert longpoll == Tally()  # no group had one: an empty tally, not a missing key


def test_loadgen_cpu_and_lateness_add_up_over_processes() -> None:
    parts = [LoadgenProcess("publisher", 10, 0, 1.0, [0.001, 0.002]),
             LoadgenProcess("readers", 11, 500, 3.0, [0.004]),
             LoadgenProcess("readers", 12, 500, 2.0, [0.080, 0.003])]
    gen = loadgen_result(parts, measured=10.0)
    assert gen["cpuSeconds"] == 6.0 and gen["cpuPercent"] == 60.0
    assert gen["loopLagMs"]["n"] == 5 and gen["loopLagMs"]["max"] == 80.0
    assert [p["cpuPercent"] for p in gen["processes"]] == [10.0, 30.0, 20.0]
    assert [p["clients"] for p in gen["processes"]] == [0, 500, 500]
    assert gen["processes"][2]["loopLagMs"]["p99"] == 80.0
    warnings = loadgen_bottlenecks(gen, len(parts))
    assert len(warnings) == 1 and "process 12" in warnings[0] and "80 ms late" in warnings[0]


def test_a_saturated_process_is_named_even_when_the_total_is_not() -> None:
    busy = 100 * SATURATED + 1  # % of a core over 1 s
    parts = [LoadgenProcess("publisher", 10, 0, 0.1, []),
             LoadgenProcess("readers", 11, 700, busy / 100, []),
             LoadgenProcess("readers", 12, 300, 0.2, [])]
    warnings = loadgen_bottlenecks(loadgen_result(parts, measured=1.0), len(parts))
    assert len(warnings) == 1
    assert "readers process 11 (700 clients)" in warnings[0] and "bottleneck" in warnings[0]
    one = [LoadgenProcess("publisher+readers", 10, 1000, busy / 100, [])]
    assert "one process" in loadgen_bottlenecks(loadgen_result(one, 1.0), 1)[0]


def test_split_gives_contiguous_even_ranges() -> None:
    assert split(10, 3) == [range(0, 3), range(3, 6), range(6, 10)]
    assert [len(r) for r in split(1000, 2)] == [500, 500]
    assert [i for r in split(7, 4) for i in r] == list(range(7))
    assert split(200, 1) == [range(200)]


@pytest.mark.parametrize(("counts", "n"), [([5, 0, 3], 4), ([2, 2], 10), ([0, 0], 3),
                                           ([1, 100], 50)])
def test_forced_disconnects_are_spread_over_the_connected(counts: list[int], n: int) -> None:
    for _ in range(20):
        picks = spread(counts, n)
        assert sum(picks) == min(n, sum(counts))
        assert all(0 <= p <= c for p, c in zip(picks, counts, strict=True))


def test_open_files_are_counted_per_process_that_holds_the_readers():
    from jobwire.loadtest.options import Options
    from jobwire.loadtest.runner import FD_MARGIN, open_files_needed

    assert open_files_needed(Options(connections=20_000, processes=1)) == 20_000 + FD_MARGIN
    assert open_files_needed(Options(connections=20_000, processes=2)) == 10_000 + FD_MARGIN
    assert open_files_needed(Options(connections=20_001, processes=2)) == 10_001 + FD_MARGIN
