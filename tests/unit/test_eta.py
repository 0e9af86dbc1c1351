"""ETA from synthetic progress curves: steady, bursty, stalled, restarted."""

import pytest

from jobwire.eta import EtaEstimator


def feed(points):
    eta = EtaEstimator()
    for t, p in points:
        eta.observe(p, t)
    return eta


def test_null_until_meaningful():
    assert feed([]).eta(0) is None
    assert feed([(0, 10)]).eta(0) is None
    assert feed([(0, 10), (0.5, 15)]).eta(0.5) is None  # under a second of history


def test_steady_progress():
    eta = feed([(t, 2 * t) for t in range(0, 11)])  # 2 %/s, at 20 % after 10 s
    assert eta.eta(10) == pytest.approx(40, abs=0.5)


def test_bursty_progress_is_smoothed():
    points = [(0, 0), (1, 0), (2, 30), (3, 30), (4, 30), (5, 50)]  # 10 %/s on average
    value = feed(points).eta(5)
    assert value is not None and 2 < value < 30


def test_stalled_progress_counts_down_to_zero_never_negative():
    eta = feed([(0, 0), (10, 50)])  # 5 %/s: 10 s left at t=10
    assert eta.eta(10) == pytest.approx(10)
    assert eta.eta(15) == pytest.approx(5)  # no news: time passing still counts
    assert eta.eta(100) == 0


def test_no_progress_or_restart_gives_no_estimate():
    assert feed([(0, 20), (5, 20)]).eta(5) is None  # rate 0
    restarted = feed([(0, 10), (5, 60), (6, 5)])  # progress went down: start over
    assert restarted.eta(6) is None
