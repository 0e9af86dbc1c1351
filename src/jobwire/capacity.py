"""`jobwire capacity`: how many instance processes, Redis shards, how much memory and bandwidth a
load needs, from unit costs measured by benchmarks/unit_costs.py. Pure: no I/O (the command
reads the costs file and hands its text here).

Per second, for a load of R updates/s over C connections with N instance processes:

  instance CPU (all instances) = N * base + C * conn + B * ingest_batch + R * ingest
                                 + delivered * deliver + S * (B * recv_batch + R * recv)
                                 [+ K * commit_call + J * claim   with Redis Cluster]
  B = R / batch size: publish requests per second; the ingest terms (and the cluster client's
      K and J terms) are for updates over HTTP, none when workers commit straight into Redis
  K = Redis script calls per second: B with one Redis; with Redis Cluster a batch of b
      updates makes one call per partition it touches, B * P * (1 - (1 - 1/P)^b) of P
  J = new jobs per second, R / updates per job: each is claimed once (SET owner NX GET)
  delivered = R * fanout + R * admins       (an admin's all-jobs subscription gets every event)
  S = instances each event is sent to by pub/sub: N with one Redis (every instance is
      subscribed to everything); spread + admin instances with Redis Cluster (sharded
      pub/sub: only the instances serving the owner, and those serving an admin)
  Redis CPU = K * batch + R * commit + R * S * message [+ J * claim with Redis Cluster]

One Redis and Redis Cluster have unit costs of their own (the costs file holds both): with
Redis Cluster every event is a message of its own on its user's channel, so its receive cost
is all per event.
  instances = the fewest N whose average CPU is <= the core budget, and at least
              ceil(C / max connections per instance); shards = ceil(Redis CPU / core budget).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any

BROKERS = ("cluster", "redis")
BROKER_NAMES = {"cluster": "Redis Cluster", "redis": "one Redis"}
INGEST = ("http", "redis")
MAX_INSTANCES = 10**9  # the search's ceiling: a load that needs more is reported not feasible
RECENT_EVENTS_PER_USER = 64  # jobwire.broker.cluster.RECENT_PER_USER: kept per followed user


# --- inputs -------------------------------------------------------------------------------

@dataclass(frozen=True)
class TransportCosts:
    conn_cpu_us_per_second: float  # an idle connection, per second (heartbeats, timers)
    deliver_cpu_us: float  # one event written to one connection
    rss_kib_per_connection: float
    bytes_per_event: float  # one delivered event on the wire, framing included


@dataclass(frozen=True)
class Costs:
    base_cpu_us_per_second: float  # an idle instance (its Redis pings, its sweeper)
    base_rss_mib: float
    ingest_batch_cpu_us: float  # one publish request over HTTP, its Redis round trips
    ingest_cpu_us: float  # one update in it (a batch item)
    receive_batch_cpu_us: float  # one pub/sub message (a commit call's events) arriving
    receive_cpu_us: float  # one event in it, parsed and routed by the hub
    transports: dict[str, TransportCosts]
    redis_batch_cpu_us: float  # one commit call (a Lua script run)
    redis_commit_cpu_us: float  # one update committed in it (streams, state)
    redis_message_cpu_us: float  # one event sent to one subscribing instance
    redis_ingress_bytes_per_commit: float
    redis_egress_bytes_per_commit: float  # the script's reply
    redis_egress_bytes_per_message: float
    # Redis Cluster only (0 with one Redis): the cluster client's work per script call (one
    # per partition a batch touches) and per new job (its owner claim, its claim's expiry when
    # it ends), Redis's per claim, and RSS per event a followed user's recent log keeps.
    commit_call_cpu_us: float = 0.0
    claim_cpu_us: float = 0.0
    recent_event_kib: float = 0.0
    redis_claim_cpu_us: float = 0.0
    source: dict[str, Any] = field(default_factory=dict)  # the result file they came from


@dataclass(frozen=True)
class Load:
    connections: int
    updates_per_second: float
    admins: int = 0
    fanout: float = 1.0  # connections that receive each event (its owner's tabs, devices)
    transport_mix: dict[str, float] = field(default_factory=lambda: {"ws": 1.0})
    core_budget: float = 0.7  # share of its one core an instance (or a Redis shard) may use
    broker: str = "cluster"
    ingest: str = "http"
    replicas: int = 0
    max_connections_per_instance: int = 50_000
    user_spread: int = 1  # instances a user's connections land on
    batch_size: float = 1.0  # updates per publish request (one Redis: per commit call)
    partitions: int = 16  # Redis Cluster: JOBWIRE_REDIS_PARTITIONS
    updates_per_job: float = 10.0  # Redis Cluster: a job's owner is claimed once
    recent_events_per_user: float = RECENT_EVENTS_PER_USER  # Redis Cluster: kept per user


@dataclass(frozen=True)
class Usage:
    """What a load costs on a given number of instances, per second."""

    instances: int
    instance_cpu_cores: float  # all instances together
    busiest_instance_cpu_cores: float  # one serving an admin (or any, without admins)
    cpu_terms: dict[str, float]  # cores, by term, all instances together
    delivered_per_second: float
    received_per_second: float  # events, summed over the instances they are sent to
    redis_cpu_cores: float
    redis_terms: dict[str, float]
    rss_mib_per_instance: float
    client_egress_bytes: float
    redis_egress_bytes: float
    redis_ingress_bytes: float

    @property
    def cpu_per_instance(self) -> float:
        return self.instance_cpu_cores / self.instances


@dataclass(frozen=True)
class Plan:
    load: Load
    usage: Usage | None  # None: no number of instances fits the budget
    shards: int
    nodes: int
    warnings: list[str]


# --- the model ----------------------------------------------------------------------------

def _mix(load: Load, costs: Costs, attr: str) -> float:
    return sum(share * getattr(costs.transports[t], attr)
               for t, share in load.transport_mix.items())


def partitions_touched(batch_size: float, partitions: int) -> float:
    """Expected distinct partitions among `batch_size` updates of users spread evenly over
    `partitions`: each partition is missed by all of them with (1 - 1/P)^b."""
    return partitions * (1 - (1 - 1 / partitions) ** batch_size)


def commit_calls(load: Load) -> float:
    """Redis script calls per second: one per batch with one Redis, one per partition a batch
    touches with Redis Cluster (broker/cluster.py `_commit_all`)."""
    batches = load.updates_per_second / load.batch_size
    if load.broker == "redis":
        return batches
    return batches * partitions_touched(load.batch_size, load.partitions)


def owner_claims(load: Load) -> float:
    """Owner claims per second (Redis Cluster): one per new job."""
    return 0.0 if load.broker == "redis" else load.updates_per_second / load.updates_per_job


def _subscribed(load: Load, instances: int) -> float:
    """Instances each event is sent to by pub/sub."""
    if load.broker == "redis":
        return instances
    return min(load.user_spread, instances) + min(load.admins, instances)


def usage(load: Load, costs: Costs, instances: int) -> Usage:
    rate = load.updates_per_second
    delivered = rate * (load.fanout + load.admins)
    batches = rate / load.batch_size
    subscribed = _subscribed(load, instances)
    received = rate * subscribed
    http = load.ingest == "http"
    calls, claims = commit_calls(load), owner_claims(load)
    terms = {"base": instances * costs.base_cpu_us_per_second,
             "connections": load.connections * _mix(load, costs, "conn_cpu_us_per_second"),
             "ingest": http * (batches * costs.ingest_batch_cpu_us + rate * costs.ingest_cpu_us),
             "deliver": delivered * _mix(load, costs, "deliver_cpu_us"),
             "receive": subscribed * (batches * costs.receive_batch_cpu_us
                                      + rate * costs.receive_cpu_us)}
    if load.broker == "cluster":
        terms["cluster client"] = http * (calls * costs.commit_call_cpu_us
                                          + claims * costs.claim_cpu_us)
    cores = {k: v / 1e6 for k, v in terms.items()}
    total = sum(cores.values())
    busiest = total / instances
    if load.admins and load.broker == "cluster":
        # An instance serving an admin receives every event, and delivers its admins' share.
        admin_instances = min(load.admins, instances)
        busiest = (cores["base"] + cores["connections"] + cores["ingest"]
                   + cores["cluster client"]) / instances \
            + (batches * costs.receive_batch_cpu_us + rate * costs.receive_cpu_us) / 1e6 \
            + rate * (load.fanout / instances + load.admins / admin_instances) \
            * _mix(load, costs, "deliver_cpu_us") / 1e6
    redis_terms = {"commit": (calls * costs.redis_batch_cpu_us
                              + rate * costs.redis_commit_cpu_us) / 1e6,
                   "message": received * costs.redis_message_cpu_us / 1e6}
    if load.broker == "cluster":
        redis_terms["claims"] = claims * costs.redis_claim_cpu_us / 1e6
    per_instance = load.connections / instances
    # Redis Cluster: each followed user's recent events stay in memory (answering resumes).
    recent_kib = (load.broker == "cluster") * per_instance / load.fanout \
        * min(load.recent_events_per_user, RECENT_EVENTS_PER_USER) * costs.recent_event_kib
    return Usage(
        instances=instances, instance_cpu_cores=total,
        busiest_instance_cpu_cores=max(busiest, total / instances), cpu_terms=cores,
        delivered_per_second=delivered, received_per_second=received,
        redis_cpu_cores=sum(redis_terms.values()), redis_terms=redis_terms,
        rss_mib_per_instance=costs.base_rss_mib
        + (per_instance * _mix(load, costs, "rss_kib_per_connection") + recent_kib) / 1024,
        client_egress_bytes=delivered * _mix(load, costs, "bytes_per_event"),
        redis_egress_bytes=rate * costs.redis_egress_bytes_per_commit
        + received * costs.redis_egress_bytes_per_message,
        redis_ingress_bytes=rate * costs.redis_ingress_bytes_per_commit)


def instances_needed(load: Load, costs: Costs) -> int | None:
    """The fewest instances whose average CPU fits the budget (average CPU never rises with
    more instances, so a binary search finds it), or None if none does."""
    def fits(n: int) -> bool:
        return usage(load, costs, n).cpu_per_instance <= load.core_budget

    low = max(1, math.ceil(load.connections / load.max_connections_per_instance))
    if fits(low):
        return low
    high = MAX_INSTANCES
    if not fits(high):
        return None
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (low, mid) if fits(mid) else (mid, high)
    return high


def plan(load: Load, costs: Costs) -> Plan:
    check_load(load, costs)
    n = instances_needed(load, costs)
    warnings: list[str] = []
    if n is None:
        floor = usage(load, costs, MAX_INSTANCES)
        warnings.append(
            f"no number of instances fits: each instance's share stays at "
            f"{100 * floor.cpu_per_instance:.0f} % of a core"
            + (" (with one Redis every instance receives every event: use Redis Cluster)"
               if load.broker == "redis" else ""))
        return Plan(load, None, 0, 0, warnings)
    u = usage(load, costs, n)
    shards = max(1, math.ceil(u.redis_cpu_cores / load.core_budget))
    if load.broker == "redis" and shards > 1:
        warnings.append(f"one Redis would need {100 * u.redis_cpu_cores:.0f} % of a core, "
                        f"above the {100 * load.core_budget:.0f} % budget: use Redis Cluster "
                        f"(about {shards} shards)")
        shards = 1
    if load.broker == "cluster" and shards > load.partitions:
        warnings.append(
            f"{shards} shards need at least {shards} partitions (a partition is one slot, on one "
            f"shard): set JOBWIRE_REDIS_PARTITIONS (--partitions here) to {shards} or more; with "
            f"{load.partitions}, only {load.partitions} shards would carry the load")
    if u.busiest_instance_cpu_cores > load.core_budget:
        warnings.append(
            f"an instance serving an admin's all-jobs subscription receives every event: it "
            f"needs {100 * u.busiest_instance_cpu_cores:.0f} % of a core, above the budget; "
            "fewer admins, or admins on instances of their own, or a lower rate")
    return Plan(load, u, shards, shards * (1 + load.replicas), warnings)


def check_load(load: Load, costs: Costs) -> None:
    missing = [t for t in load.transport_mix if t not in costs.transports]
    if missing:
        raise ValueError(f"no measured costs for {', '.join(missing)} (the costs file has "
                         f"{', '.join(costs.transports)})")
    if load.broker not in BROKERS or load.ingest not in INGEST:
        raise ValueError(f"broker must be one of {BROKERS}, ingest one of {INGEST}")


# --- the costs file -----------------------------------------------------------------------

def costs_from_json(text: str, broker: str = "redis") -> Costs:
    """The costs for `broker` in the costs file (written by benchmarks/unit_costs.py
    --install): one Redis's at the top, Redis Cluster's under "cluster"."""
    try:
        data = json.loads(text)
        if broker == "cluster":
            if "cluster" not in data:
                raise ValueError("no Redis Cluster costs in it")
            data = data["cluster"]
        inst, redis = data["instance"], data["redis"]
        transports = {name: TransportCosts(**t) for name, t in inst["transports"].items()}
        costs = Costs(transports=transports, source=data.get("source", {}),
                      **{k: v for k, v in inst.items() if k != "transports"},
                      **{f"redis_{k}": v for k, v in redis.items()})
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"not a capacity costs file ({type(exc).__name__}: {exc})") from None
    numbers = [v for k, v in asdict(costs).items() if k not in ("transports", "source")]
    numbers += [v for t in transports.values() for v in asdict(t).values()]
    if not transports or any(not isinstance(v, int | float) or v < 0 or not math.isfinite(v)
                             for v in numbers):
        raise ValueError("a capacity costs file needs non-negative numbers and a transport")
    return costs


def _costs_dict(costs: Costs) -> dict[str, Any]:
    d = asdict(costs)
    redis = {k.removeprefix("redis_"): d.pop(k) for k in list(d) if k.startswith("redis_")}
    source = d.pop("source")
    return {"source": source, "instance": d, "redis": redis}


def costs_to_json(costs: Costs, cluster: Costs | None = None) -> str:
    """A costs file: one Redis's costs, and Redis Cluster's beside them."""
    data = _costs_dict(costs)
    if cluster is not None:
        data["cluster"] = _costs_dict(cluster)
    return json.dumps(data, indent=2) + "\n"


# --- the command --------------------------------------------------------------------------
