"""Token buckets and concurrency limits, with the time passed in."""

import pytest

from jobwire.errors import RateLimited
from jobwire.ratelimit import Concurrency, KeyedBuckets, TokenBucket


def test_bucket_allows_a_burst_then_the_rate():
    bucket = TokenBucket(rate=2, burst=4)
    assert [bucket.allow(0.0) for _ in range(5)] == [True] * 4 + [False]
    assert bucket.retry_after() == 1
    assert bucket.allow(0.5) and not bucket.allow(0.5)  # 0.5 s at 2/s: one more
    assert all(bucket.allow(10.0) for _ in range(4))  # refilled, but never past the burst
    assert not bucket.allow(10.0)


def test_keyed_buckets_are_per_key_and_cost_counts():
    limits = KeyedBuckets(rate=10, burst=20)
    limits.take("a", 0.0, cost=20)
    with pytest.raises(RateLimited) as exc:
        limits.take("a", 0.0, cost=5, what="updates")
    assert exc.value.retry_after == 1 and "updates" in exc.value.message
    limits.take("b", 0.0, cost=20)  # another key is not affected
    limits.take("a", 1.0, cost=10)  # recovered at the rate


def test_rate_zero_means_no_limit():
    limits = KeyedBuckets(rate=0, burst=0)
    for _ in range(1000):
        limits.take("a", 0.0)


def test_concurrency_enter_and_leave():
    c = Concurrency(2)
    c.enter("u", "polls")
    c.enter("u", "polls")
    with pytest.raises(RateLimited):
        c.enter("u", "polls")
    c.enter("v", "polls")
    c.leave("u")
    c.enter("u", "polls")
    c.leave("u")
    c.leave("u")
    c.leave("u")  # more leaves than enters never go negative
    assert "u" not in c.held
