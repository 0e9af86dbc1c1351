"""Where the Redis Cluster broker keeps things. Pure: no I/O.

Users are spread over a fixed number of partitions; a partition is one hash tag, so one slot:
its users' jobs, states, streams and channels live together, and a publish is one script call
in one slot. The partition count is part of the data's layout: every instance must use the
same, for the life of the data.

Each partition's tag is chosen so that the partitions' slots are evenly spaced over the 16,384
slots: a cluster whose primaries hold equal slot ranges (what `redis-cli --cluster create`
makes) then holds nearly equal numbers of partitions.

Job ids are global, so a job's owner is claimed by job id alone (`owner:<jobId>`, its own
slot), first writer wins; the job itself lives in its owner's partition.
"""

from __future__ import annotations

import binascii
import zlib
from dataclasses import dataclass, field
from functools import cache

from ..cursor import Position

SLOTS = 16384
MAX_PARTITIONS = 1024
# The largest sequence number a JavaScript Number holds exactly: a position "everything in
# this millisecond" that every client can compare.
MAX_SEQ = 2**53 - 1


def key_slot(key: str) -> int:
    """Redis Cluster's slot of a key: CRC16 (XMODEM) of its hash tag, or of all of it."""
    data = key.encode()
    start = data.find(b"{")
    if start != -1:
        end = data.find(b"}", start + 1)
        if end > start + 1:
            data = data[start + 1:end]
    return binascii.crc_hqx(data, 0) % SLOTS


@cache
def partition_tags(count: int) -> tuple[str, ...]:
    """A tag per partition, partition i's slot in [i, i + 1) * SLOTS / count."""
    if not 1 <= count <= MAX_PARTITIONS:
        raise ValueError(f"partitions must be 1..{MAX_PARTITIONS}, not {count}")
    tags = []
    for i in range(count):
        low, high = i * SLOTS // count, (i + 1) * SLOTS // count
        n = 0
        while not low <= key_slot(f"p{i}.{n}") < high:
            n += 1
        tags.append(f"p{i}.{n}")
    return tuple(tags)


def partition_of(user_id: str, count: int) -> int:
    return zlib.crc32(user_id.encode()) % count


def floor_position(ms: int, n: int) -> Position:
    """A partition clock's reading as a position every id of the partition up to it has
    reached: a negative `n` (nothing issued yet in millisecond `ms`) means all of `ms - 1`."""
    return (ms, n) if n >= 0 else (ms - 1, MAX_SEQ)


@dataclass(frozen=True, slots=True)
class ClusterKeys:
    prefix: str = "jobwire:"
    partitions: int = 16
    _tags: tuple[str, ...] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if "{" in self.prefix or "}" in self.prefix:
            raise ValueError("a Redis Cluster key prefix may not contain '{' or '}'")
        object.__setattr__(self, "_tags", partition_tags(self.partitions))

    def partition(self, user_id: str) -> int:
        return partition_of(user_id, self.partitions)

    def _base(self, partition: int) -> str:
        return f"{self.prefix}{{{self._tags[partition]}}}:"

    # --- per partition ----------------------------------------------------------------------

    def stream(self, partition: int) -> str:
        """Every event of the partition's users, in id order: what admins resume from."""
        return f"{self._base(partition)}stream"

    def jobs(self, partition: int) -> str:
        return f"{self._base(partition)}jobs"

    def processing(self, partition: int) -> str:
        return f"{self._base(partition)}processing"

    def clock(self, partition: int) -> str:
        """The last id issued in the partition: `ms` and `k` (its n-th id of that ms)."""
        return f"{self._base(partition)}clock"

    def channel(self, partition: int) -> str:
        """Every event of the partition, and its clock's ticks: the admins' feed."""
        return f"{self._base(partition)}events"

    def fence(self, partition: int) -> str:
        return f"{self._base(partition)}fence"

    def job_prefix(self, partition: int) -> str:
        return f"{self._base(partition)}job:"

    def job_in(self, partition: int, job_id: str) -> str:
        return f"{self._base(partition)}job:{job_id}"

    # --- per user and job -------------------------------------------------------------------

    def job(self, job_id: str, user_id: str) -> str:
        return self.job_in(self.partition(user_id), job_id)

    def user_stream(self, user_id: str) -> str:
        return f"{self._base(self.partition(user_id))}stream:u:{user_id}"

    def user_jobs(self, user_id: str) -> str:
        return f"{self._base(self.partition(user_id))}jobs:u:{user_id}"

    def user_channel(self, user_id: str) -> str:
        return f"{self._base(self.partition(user_id))}u:{user_id}"

    def owner(self, job_id: str) -> str:
        """Who owns a job: claimed once, by the first publish."""
        return f"{self.prefix}owner:{job_id}"
