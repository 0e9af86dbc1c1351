"""The latency histogram, Prometheus style."""

from jobwire.stats import Histogram


def test_cumulative_buckets_and_sum():
    h = Histogram((0.01, 0.1, 1.0))
    for v in (0.005, 0.01, 0.05, 0.5, 5.0):
        h.observe(v)
    assert h.cumulative() == [("0.01", 2), ("0.1", 3), ("1.0", 4), ("+Inf", 5)]
    assert abs(h.sum - 5.565) < 1e-9


def test_tokens_are_redacted_from_log_lines():
    import logging

    from jobwire.logs import RedactTokens

    record = logging.LogRecord("x", logging.INFO, "f", 1, "GET %s HTTP/1.1 %s", (
        "/ws/jobs?token=abc.def.ghi&jobIds=a", "Authorization: Bearer abc.def"), None)
    RedactTokens().filter(record)
    message = record.getMessage()
    assert "abc" not in message and "jobIds=a" in message
    assert message.count("[redacted]") == 2
