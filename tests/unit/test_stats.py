"""The latency histogram, Prometheus style."""

from jobwire.stats import Histogram


def test_cumulative_buckets_and_sum():
    h = Histogram((0.01, 0.1, 1.0))
    for v in (0.005, 0.01, 0.05, 0.5, 5.0):
        h.observe(v)
    assert h.cumulative() == [("0.01", 2), ("0.1", 3), ("1.0", 4), ("+Inf", 5)]
    assert abs(h.sum - 5.565) < 1e-9
