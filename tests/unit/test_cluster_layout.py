"""The Redis Cluster broker's pure parts: key placement and the admins' merged feed."""

from __future__ import annotations

import pytest

from jobwire.broker.clusterkeys import (
    MAX_SEQ,
    SLOTS,
    ClusterKeys,
    floor_position,
    key_slot,
    partition_tags,
)
from jobwire.broker.mergefeed import MergedFeed
from jobwire.events import Event


def test_slots_are_redis_clusters():
    assert key_slot("123456789") == 0x31C3 % SLOTS  # the CRC16 check value of the spec
    assert key_slot("{user1000}.following") == key_slot("{user1000}.followers")
    # An empty first tag: the whole key is hashed, not a later tag.
    assert key_slot("foo{}{bar}") != key_slot("{bar}")


@pytest.mark.parametrize("count", [1, 3, 16, 64])
def test_partitions_are_evenly_spaced_over_the_slots(count):
    slots = [key_slot("{" + tag + "}") for tag in partition_tags(count)]
    for i, slot in enumerate(slots):
        assert i * SLOTS // count <= slot < (i + 1) * SLOTS // count
    if count == 16:  # three primaries with equal slot ranges hold 5 or 6 partitions each
        ranges = [(0, 5461), (5461, 10923), (10923, SLOTS)]
        held = [sum(lo <= s < hi for s in slots) for lo, hi in ranges]
        assert sorted(held) == [5, 5, 6]


def test_everything_of_a_user_is_in_its_partitions_slot():
    keys = ClusterKeys("jobwire:", 16)
    p = keys.partition("alice")
    slot = key_slot(keys.stream(p))
    for key in (keys.job("j1", "alice"), keys.user_stream("alice"), keys.user_jobs("alice"),
                keys.user_channel("alice"), keys.jobs(p), keys.processing(p), keys.clock(p),
                keys.channel(p), keys.fence(p), keys.job("j1", "alice") + ":eids"):
        assert key_slot(key) == slot, key
    assert key_slot(keys.owner("j1")) == key_slot("jobwire:owner:j1")  # by job id alone


def test_bad_layouts_are_refused():
    with pytest.raises(ValueError, match="may not contain"):
        ClusterKeys("job{wire}:", 16)
    with pytest.raises(ValueError, match="partitions must be"):
        ClusterKeys("jobwire:", 0)


def test_a_clock_reading_before_any_id_of_its_millisecond_covers_the_one_before():
    assert floor_position(1000, 5) == (1000, 5)
    assert floor_position(1000, -3) == (999, MAX_SEQ)
    assert (999, 7) < floor_position(1000, -3) < (1000, 0)


def ev(ms: int, n: int, job: str = "j") -> Event:
    return Event((ms, n), job, "u", 1, None, False, "{}")


def test_the_merged_feed_releases_in_id_order_once_every_partition_is_past():
    feed = MergedFeed(2)
    assert feed.add(1, ev(10, 1))
    assert feed.release() == []  # partition 0 not heard from yet
    feed.tick(0, (9, MAX_SEQ))
    assert feed.release() == []  # partition 0 may still send something in ms 10
    assert feed.lagging() == [0]
    assert feed.add(0, ev(10, 0))
    assert [e.pos for e in feed.release()] == [(10, 0)]
    feed.tick(0, (11, 0))
    assert [e.pos for e in feed.release()] == [(10, 1)]
    assert not feed.add(1, ev(10, 1))  # a repeat (a catch-up reading what came live)
    assert feed.held == 0 and feed.lagging() == []
    assert feed.watermark == (10, 1)


def test_the_cluster_client_is_hardened_only_when_redis_py_has_what_it_needs():
    from redis.asyncio.cluster import ClusterNode, RedisCluster

    from jobwire.broker.clusterclient import harden, missing

    client = RedisCluster(startup_nodes=[ClusterNode("127.0.0.1", 7000)])
    assert missing(client) == []
    assert harden(client)
    assert type(client.commands_parser).__name__ == "CommandTableOnce"

    class Elsewhere:  # another client, or a redis-py without these internals
        aclose = None

    other = Elsewhere()
    assert "RedisCluster.commands_parser" in missing(other)
    assert not harden(other)
    assert other.aclose is None  # left unchanged


def test_cluster_settings_that_cannot_work_are_refused():
    from jobwire.config import Settings
    from jobwire.errors import ConfigError

    url = "redis+cluster://127.0.0.1:7000,127.0.0.1:7001"
    with pytest.raises(ConfigError, match="no '\\{'"):
        Settings(secret="s" * 32, redis_url=url, redis_prefix="job{wire}:")
    with pytest.raises(ConfigError, match="at most 1024"):
        Settings(secret="s" * 32, redis_url=url, redis_partitions=2000)
    with pytest.raises(ConfigError, match="redis\\+cluster://"):
        Settings(secret="s" * 32, redis_url="redis+shards://127.0.0.1:7000")
    with pytest.raises(ValueError, match="one database"):
        from jobwire.broker.redisconn import connect
        connect(url + "/1")
