"""Rate and concurrency limits. Pure: the time is passed in, callers act on the answers."""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass

from .errors import RateLimited

MAX_KEYS = 100_000  # buckets remembered; the least recently used go first


@dataclass(slots=True)
class TokenBucket:
    """`rate` tokens a second, at most `burst` saved up."""

    rate: float
    burst: float
    tokens: float = -1.0
    updated: float = 0.0

    def allow(self, now: float, cost: float = 1.0) -> bool:
        if self.tokens < 0:
            self.tokens, self.updated = self.burst, now
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= cost:
            self.tokens -= cost
            return True
        return False

    def retry_after(self, cost: float = 1.0) -> int:
        """Whole seconds until `cost` tokens will be there."""
        if self.rate <= 0:
            return 60
        return max(1, math.ceil((min(cost, self.burst) - self.tokens) / self.rate))


class KeyedBuckets:
    """One bucket per key (a user, an IP, a publisher), bounded in number."""

    def __init__(self, rate: float, burst: float):
        self.rate, self.burst = rate, burst
        self.buckets: OrderedDict[str, TokenBucket] = OrderedDict()

    def take(self, key: str, now: float, cost: float = 1.0, what: str = "requests") -> None:
        """Spend `cost` from `key`'s bucket, or raise RateLimited with a Retry-After."""
        if self.rate <= 0:
            return  # 0 turns the limit off
        bucket = self.buckets.get(key)
        if bucket is None:
            bucket = self.buckets[key] = TokenBucket(self.rate, self.burst)
            if len(self.buckets) > MAX_KEYS:
                self.buckets.popitem(last=False)
        else:
            self.buckets.move_to_end(key)
        if not bucket.allow(now, cost):
            raise RateLimited(f"too many {what}; retry later",
                              retry_after=bucket.retry_after(cost))


class Concurrency:
    """How many of something each key holds at once."""

    def __init__(self, limit: int):
        self.limit = limit
        self.held: dict[str, int] = {}

    def enter(self, key: str, what: str) -> None:
        count = self.held.get(key, 0)
        if self.limit > 0 and count >= self.limit:
            raise RateLimited(f"at most {self.limit} {what} at once", retry_after=5)
        self.held[key] = count + 1

    def leave(self, key: str) -> None:
        count = self.held.get(key, 0) - 1
        if count > 0:
            self.held[key] = count
        else:
            self.held.pop(key, None)
