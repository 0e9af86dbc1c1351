"""`jobwire capacity` on the command line: its options, their checks, and the answer as text or
JSON (the model is jobwire.capacity). Pure: the command reads the costs file and hands its text
here."""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import asdict
from typing import Any

from .capacity import (
    BROKER_NAMES,
    BROKERS,
    INGEST,
    RECENT_EVENTS_PER_USER,
    Costs,
    Load,
    Plan,
    _costs_dict,
    commit_calls,
    costs_from_json,
    owner_claims,
    plan,
)


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
