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

import argparse
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

def _number(kind: type, low: float, strict: bool, high: float = math.inf) -> Any:
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not math.isfinite(value) or value < low or (strict and value == low):
            raise argparse.ArgumentTypeError(
                f"{text!r} must be {'above' if strict else 'at least'} {low:g}")
        if value > high:
            raise argparse.ArgumentTypeError(f"{text!r} must be at most {high:g}")
        return value
    return parse


def transport_mix(text: str) -> dict[str, float]:
    """`ws=0.8,sse=0.2`: shares that add up to 1."""
    mix: dict[str, float] = {}
    for part in text.split(","):
        name, sep, share = part.strip().partition("=")
        try:
            value = float(share)
        except ValueError:
            value = -1.0
        if not sep or not name or not (0 <= value <= 1) or name in mix:
            raise argparse.ArgumentTypeError(f"{text!r}: use e.g. ws=0.8,sse=0.2")
        mix[name] = value
    if abs(sum(mix.values()) - 1) > 1e-6:
        raise argparse.ArgumentTypeError(f"{text!r}: the shares must add up to 1")
    return mix


def add_arguments(p: argparse.ArgumentParser) -> None:
    count, positive = _number(int, 0, False), _number(float, 0, True)
    p.add_argument("--connections", type=count, required=True, help="open connections")
    p.add_argument("--updates-per-second", type=_number(float, 0, False), required=True,
                   help="job updates published per second")
    p.add_argument("--admins", type=count, default=0,
                   help="admin connections following all jobs (default 0)")
    p.add_argument("--fanout", type=positive, default=1.0,
                   help="connections that receive each event (default 1)")
    p.add_argument("--transport-mix", type=transport_mix, default={"ws": 1.0},
                   help="shares of the connections per transport (default ws=1)")
    p.add_argument("--core-budget", type=_number(float, 0, True, 1), default=0.7,
                   help="share of a core an instance or shard may use (default 0.7)")
    p.add_argument("--broker", choices=BROKERS, default="cluster",
                   help="cluster: Redis Cluster, sharded pub/sub, its own unit costs "
                        "(default); redis: one Redis")
    p.add_argument("--partitions", type=_number(int, 1, False), default=16,
                   help="Redis Cluster: JOBWIRE_REDIS_PARTITIONS (default 16)")
    p.add_argument("--updates-per-job", type=_number(float, 1, False), default=10.0,
                   help="Redis Cluster: updates per job; each new job's owner is claimed "
                        "once (default 10)")
    p.add_argument("--ingest", choices=INGEST, default="http",
                   help="updates arrive over HTTP at the instances, or workers commit them "
                        "straight into Redis (default http)")
    p.add_argument("--replicas", type=count, default=0, help="replicas per shard (default 0)")
    p.add_argument("--max-connections-per-instance", type=_number(int, 1, False),
                   default=50_000, help="(default 50000)")
    p.add_argument("--user-spread", type=_number(int, 1, False), default=1,
                   help="instances one user's connections land on (default 1)")
    p.add_argument("--batch-size", type=_number(float, 1, False), default=1.0,
                   help="updates per publish request or Redis commit call (default 1)")
    p.add_argument("--costs", metavar="FILE",
                   help="unit costs (default: the ones shipped, jobwire/capacity_costs.json)")
    p.add_argument("--json", action="store_true", help="one JSON object")


def load_from(args: argparse.Namespace) -> Load:
    return Load(args.connections, args.updates_per_second, args.admins, args.fanout,
                args.transport_mix, args.core_budget, args.broker, args.ingest, args.replicas,
                args.max_connections_per_instance, args.user_spread, args.batch_size,
                args.partitions, args.updates_per_job)


# --- the output ---------------------------------------------------------------------------

def assumptions(load: Load) -> list[str]:
    cluster = load.broker == "cluster"
    return [
        f"each instance process uses one core, at most {100 * load.core_budget:.0f} % of it "
        "(the core budget), and so does each Redis shard (Redis runs commands on one thread)",
        "instances are sized on their average CPU: connections and published updates are "
        "spread evenly over them",
        f"at most {load.max_connections_per_instance:,} connections per instance",
        f"a user's connections land on {load.user_spread} instance(s); each event goes to "
        f"{load.fanout:g} connection(s), and to each of the {load.admins} admin connection(s) "
        "(their all-jobs subscription)",
        ("Redis Cluster with sharded pub/sub: an event is sent only to the instances serving "
         "its owner, and to every instance serving an admin (admins on separate instances); "
         f"users are spread evenly over {load.partitions} partitions and a batch makes one "
         "script call per partition it touches; every new job's owner is claimed once "
         f"({load.updates_per_job:g} updates per job); each followed user's last "
         f"{RECENT_EVENTS_PER_USER} events stay in its instance's memory; the shards share "
         "the work evenly"
         if cluster else
         "one Redis: every instance is subscribed to every event, and Redis cannot be split"),
        "updates arrive over HTTP at the instances (ingest cost)" if load.ingest == "http"
        else "workers commit updates straight into Redis (no instance ingest cost)",
        "every update makes one event (updates stay under the per-job conflation rate), "
        f"committed to Redis once, in publish requests of {load.batch_size:g} update(s); "
        + ("one pub/sub message per event" if cluster
           else "one commit call and pub/sub message per request"),
        "Redis CPU = commits (+ owner claims) + pub/sub messages sent to subscribing "
        "instances; its memory "
        "(history retention) and replication traffic are not modelled",
        "costs are those of the machine they were measured on; another CPU scales them",
    ]


def as_dict(result: Plan, costs: Costs, origin: str) -> dict[str, Any]:
    u = result.usage
    return {"load": asdict(result.load), "feasible": u is not None,
            "instances": u.instances if u else None,
            "redisShards": result.shards, "redisNodes": result.nodes,
            "usage": asdict(u) if u else None, "warnings": result.warnings,
            "costs": {**_costs_dict(costs), "broker": result.load.broker, "file": origin},
            "assumptions": assumptions(result.load)}


def _rate(b: float) -> str:
    return f"{b / 1e6:,.1f} MB/s ({8 * b / 1e9:,.2f} Gbit/s)"


def as_text(result: Plan, costs: Costs, origin: str) -> str:
    load, u = result.load, result.usage
    mix = ", ".join(f"{t} {100 * s:g} %" for t, s in load.transport_mix.items())
    lines = [f"load: {load.connections:,} connections ({mix}), "
             f"{load.updates_per_second:,.0f} updates/s, {load.admins} admins, fanout "
             f"{load.fanout:g}; broker {BROKER_NAMES[load.broker]}", ""]
    if u is None:
        lines.append("not feasible")
    else:
        t = u.cpu_terms
        lines += [
            f"instance processes  {u.instances:,} (one per core; {100 * u.cpu_per_instance:.0f} "
            f"% of a core each on average, busiest {100 * u.busiest_instance_cpu_cores:.0f} %)",
            f"Redis shards        {result.shards:,} primaries"
            + (f", {result.nodes:,} nodes with {load.replicas} replica(s) each"
               if load.replicas else "")
            + f" ({100 * u.redis_cpu_cores / result.shards:.0f} % of a core each)",
            f"memory (RSS)        {u.rss_mib_per_instance:,.0f} MiB per instance, "
            f"{u.rss_mib_per_instance * u.instances / 1024:,.1f} GiB in total",
            f"client egress       {_rate(u.client_egress_bytes)}",
            f"Redis egress        {_rate(u.redis_egress_bytes)}",
            f"Redis ingress       {_rate(u.redis_ingress_bytes)}", "",
            "instance CPU, cores over all instances: "
            + ", ".join(f"{k} {v:,.2f}" for k, v in t.items()),
            "Redis CPU, cores over all shards: "
            + ", ".join(f"{k} {v:,.2f}" for k, v in u.redis_terms.items()),
            f"per second: {u.delivered_per_second:,.0f} events delivered, "
            f"{u.received_per_second:,.0f} received by instances over pub/sub, "
            f"{commit_calls(load):,.0f} Redis script calls, {owner_claims(load):,.0f} owner "
            "claims"]
    lines += [f"warning: {w}" for w in result.warnings]
    src = costs.source
    lines += ["", f"unit costs for {BROKER_NAMES[load.broker]} ({origin}; measured in "
              f"{src.get('resultFile', 'an unknown run')}"
              f", commit {str(src.get('commit'))[:7]}, {src.get('machine', '?')}, "
              f"{src.get('measuredAt', '?')}):",
              f"  instance: base {costs.base_cpu_us_per_second:g} µs/s and "
              f"{costs.base_rss_mib:g} MiB; ingest {costs.ingest_batch_cpu_us:g} µs/request "
              f"+ {costs.ingest_cpu_us:g} µs/update; receive "
              f"{costs.receive_batch_cpu_us:g} µs/message + {costs.receive_cpu_us:g} µs/event"]
    for name, tc in costs.transports.items():
        lines.append(f"  {name}: {tc.conn_cpu_us_per_second:g} µs per connection-second, "
                     f"deliver {tc.deliver_cpu_us:g} µs/event, "
                     f"{tc.rss_kib_per_connection:g} KiB/connection, "
                     f"{tc.bytes_per_event:g} bytes/event")
    lines += [f"  Redis: commit {costs.redis_batch_cpu_us:g} µs/call + "
              f"{costs.redis_commit_cpu_us:g} µs/update, message "
              f"{costs.redis_message_cpu_us:g} µs per subscribing instance; bytes in "
              f"{costs.redis_ingress_bytes_per_commit:g}/commit, out "
              f"{costs.redis_egress_bytes_per_commit:g}/commit + "
              f"{costs.redis_egress_bytes_per_message:g}/message"]
    if load.broker == "cluster":
        lines.append(f"  Redis Cluster: per script call {costs.commit_call_cpu_us:g} µs on the "
                     f"instance; per owner claim {costs.claim_cpu_us:g} µs on the instance, "
                     f"{costs.redis_claim_cpu_us:g} µs in Redis; "
                     f"{costs.recent_event_kib:g} KiB per recent event kept")
    lines += ["", "assumptions:"]
    lines += [f"  - {a}" for a in assumptions(load)]
    return "\n".join(lines)


def report(args: argparse.Namespace, costs_text: str, costs_origin: str) -> str:
    """The command's output: the plan as text, or as JSON with --json."""
    costs = costs_from_json(costs_text, args.broker)
    result = plan(load_from(args), costs)
    if args.json:
        return json.dumps(as_dict(result, costs, costs_origin), indent=2)
    return as_text(result, costs, costs_origin)
