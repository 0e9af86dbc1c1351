"""python-socketio's write-only AsyncRedisManager for benchmarks/compare_peers.py's `direct`
load (runs in benchmarks/peers/.venv): the publisher writes straight into Redis and the
python-socketio servers only fan out. Reads JSON lines from stdin, each one batch
[{room, data}, ...], and emits every item's data to its room as `status_update`. Prints
`ready` once Redis answered and, after stdin ends and every publish went out, `emitted N`.

    .venv/bin/python emitter.py --redis redis://127.0.0.1:6390/0
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

import redis.asyncio as aioredis
import socketio


async def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--redis", required=True)
    args = p.parse_args()
    async with aioredis.from_url(args.redis) as probe:  # up before `ready`
        await probe.ping()
    manager = socketio.AsyncRedisManager(args.redis, write_only=True)
    print("ready", flush=True)
    emitted = 0
    while line := await asyncio.to_thread(sys.stdin.readline):
        for item in json.loads(line):
            await manager.emit("status_update", item["data"], room=item["room"],
                               namespace="/")
            emitted += 1
    print(f"emitted {emitted}", flush=True)


if __name__ == "__main__":
    asyncio.run(main())
