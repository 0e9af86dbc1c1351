"""Where jobwire reaches into redis-py's cluster client, and only here.

One shard's failover must not disturb the others, and two behaviours of redis-py's async
`RedisCluster` (8.1, the version pyproject.toml allows and CI runs) do:

- It reloads its command table (COMMAND) on every slot-map refresh, from the first primary
  CLUSTER SLOTS names. During a failover that can be the dead primary: every refresh fails,
  and with it every command on every shard, until the failover is over. The table is the same
  on every node, so it is loaded once (`CommandTableOnce`).
- After some errors (a pipeline that met a dead node, every few MOVED) it resets the whole
  client, cutting every connection to every node: commands in flight on healthy shards fail
  and are retried after a backoff. A reset here does what redis-py does for one failed node:
  it marks the slot map for refresh, closes idle connections now and busy ones once answered.

`harden(client)` checks first that every internal it relies on is there, with the shape
expected; if one is not (another redis-py), it logs one warning naming it and changes nothing:
the broker works the same, only a failover then slows the other shards for a second or so.
"""

from __future__ import annotations

import inspect
import logging
from typing import Any

log = logging.getLogger("jobwire.cluster")

try:
    from redis._parsers.commands import AsyncCommandsParser
except ImportError:  # another redis-py layout: harden() reports it
    AsyncCommandsParser = None  # type: ignore[assignment,misc]


def missing(client: Any) -> list[str]:
    """The internals `harden` needs that this redis-py lacks."""
    gaps = []
    if AsyncCommandsParser is None or not inspect.iscoroutinefunction(
            getattr(AsyncCommandsParser, "initialize", None)):
        gaps.append("redis._parsers.commands.AsyncCommandsParser.initialize")
    if not hasattr(client, "commands_parser"):
        gaps.append("RedisCluster.commands_parser")
    if not hasattr(client, "_initialize"):
        gaps.append("RedisCluster._initialize")
    nodes = getattr(client, "nodes_manager", None)
    for name in ("nodes_cache", "startup_nodes"):
        if not isinstance(getattr(nodes, name, None), dict):
            gaps.append(f"NodesManager.{name}")
    node_class = type(next(iter(getattr(nodes, "startup_nodes", {}).values()), None))
    for name in ("update_active_connections_for_reconnect", "disconnect_free_connections"):
        if not callable(getattr(node_class, name, None)):
            gaps.append(f"ClusterNode.{name}")
    return gaps


def harden(client: Any) -> bool:
    """Apply both changes to a fresh `RedisCluster`; False (and a warning) if it cannot."""
    gaps = missing(client)
    if gaps:
        log.warning("redis-py's cluster client lacks %s: running it unchanged (a failover "
                    "may briefly slow the other shards)", ", ".join(gaps))
        return False
    client.commands_parser = CommandTableOnce()
    nodes = client.nodes_manager

    async def reset() -> None:
        client._initialize = True  # the slot map is read again before the next command
        for node in [*nodes.nodes_cache.values(), *nodes.startup_nodes.values()]:
            node.update_active_connections_for_reconnect()
            await node.disconnect_free_connections()

    client.aclose = reset
    return True


async def close(client: Any) -> None:
    """Close the client for good (its class's own `aclose`, not the gentler reset)."""
    await type(client).aclose(client)


if AsyncCommandsParser is not None:

    class CommandTableOnce(AsyncCommandsParser):  # type: ignore[no-redef,misc,valid-type]
        """The command table, loaded on the first slot-map refresh only."""

        async def initialize(self, node: Any = None) -> None:
            if node:
                self.node = node
            if not self.commands:
                await super().initialize()
