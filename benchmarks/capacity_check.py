#!/usr/bin/env python3
"""Does the capacity model predict? Runs real loads on jobwire instances sharing a Redis:
two to calibrate on, then a third (another rate and connection count, and with
--predict-masters another number of Redis Cluster shards) that is predicted first, then
measured. Writes benchmarks/results/capacity_check-<UTC>.json with, for every load, the
instances' CPU, Redis's CPU and the instances' RSS as measured, as predicted from the unit
costs (src/jobwire/capacity_costs.json, or --costs), and as predicted from the unit costs
scaled by what the two calibration loads measured (one factor for instance CPU, one for Redis
CPU; RSS as a line through the two: base + per connection).

    flock /tmp/jobwire-cpu.lock .venv/bin/python benchmarks/capacity_check.py
        [--calibrate 1000@1000,3000@3000] [--predict 2000@5000] [--instances 2]
        [--seconds 10] [--redis-url URL | --cluster-masters N [--predict-masters M]]
        [--costs FILE] [--out PATH]
    .venv/bin/python benchmarks/capacity_check.py --render docs/capacity.md [--check]

A load is CONNECTIONS@UPDATES_PER_SECOND: WebSocket readers, one user each, spread evenly over
the instances (started afresh for each load); updates published over HTTP through every
instance. Without --redis-url a
private redis-server is started (and stopped by PID). `--redis-url redis+cluster://...` or
--cluster-masters N (a private Redis Cluster of N masters; the third load on a new one of
--predict-masters M) measure the sharded broker: the model is then asked about Redis Cluster,
with the cluster's unit costs. Redis's script calls and owner claims (INFO commandstats) are
kept beside the model's, and Redis CPU per command, to show where a miss comes from.

--render FILE rewrites the blocks marked `<!-- capacity:NAME -->` ... `<!-- /capacity:NAME -->`
in FILE from the result files and the shipped costs (--check: write nothing, exit 1 if stale).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "benchmarks"), str(ROOT)]

from unit_costs import Deployment, measure, server_environment  # noqa: E402

from jobwire import capacity, capacity_cli  # noqa: E402
from jobwire.loadtest import results  # noqa: E402
from jobwire.loadtest.readers import run_loop  # noqa: E402

COSTS_FILE = ROOT / "src" / "jobwire" / "capacity_costs.json"
RESULTS = ROOT / "benchmarks" / "results"
BLOCK = re.compile(r"(<!-- capacity:(?P<key>[\w-]+) -->\n)(.*?)(<!-- /capacity:(?P=key) -->)",
                   re.S)
MILLION = ["--connections", "1000000", "--updates-per-second", "500000", "--admins", "0",
           "--batch-size", "20", "--transport-mix", "ws=0.8,sse=0.2", "--replicas", "1",
           "--partitions", "64"]


def parse_load(text: str) -> tuple[int, float]:
    conns, sep, rate = text.partition("@")
    try:
        load = int(conns), float(rate)
    except ValueError:
        load = (0, 0.0)
    if not sep or load[0] < 1 or load[1] <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: use CONNECTIONS@UPDATES_PER_SECOND")
    return load


# --- predicting ---------------------------------------------------------------------------

def model_load(w: dict[str, Any], broker: str) -> capacity.Load:
    """The model's load for what a window measured: its achieved rate and batch size, its
    jobs (each new in the window: claimed once), the events each user got (kept in memory)."""
    events = w["eventsPerSecond"]
    return capacity.Load(connections=w["connections"], updates_per_second=events,
                         broker=broker, batch_size=events / w["batchesPerSecond"],
                         max_connections_per_instance=10**9,
                         updates_per_job=w["events"] / w["jobs"],
                         recent_events_per_user=w["events"] / w["users"])


def figures(w: dict[str, Any]) -> dict[str, float]:
    inst = w["instances"].values()
    return {"instanceCpuCores": sum(x["cpuPerSecond"] for x in inst),
            "redisCpuCores": w["redisCpuPerSecond"],
            "rssMiBPerInstance": sum(x["rssMiB"] for x in inst) / len(inst)}


def predicted(w: dict[str, Any], costs: capacity.Costs, broker: str) -> dict[str, float]:
    u = capacity.usage(model_load(w, broker), costs, len(w["instances"]))
    return {"instanceCpuCores": u.instance_cpu_cores, "redisCpuCores": u.redis_cpu_cores,
            "rssMiBPerInstance": u.rss_mib_per_instance}


def redis_calls(w: dict[str, Any], broker: str) -> dict[str, dict[str, float]]:
    """Script calls and owner claims per second, the model's and Redis's count."""
    load = model_load(w, broker)
    count = w.get("redisCommandsPerSecond", {})
    return {"scriptCalls": {"model": capacity.commit_calls(load),
                            "measured": count.get("evalsha", {}).get("calls", 0.0)},
            "ownerClaims": {"model": capacity.owner_claims(load),
                            "measured": count.get("set", {}).get("calls", 0.0)}}


def calibrate(cal: list[dict[str, Any]]) -> dict[str, Any]:
    """Least-squares factors (measured / predicted) for the CPUs, and RSS per instance as
    the line through the calibration loads (base + per connection of an instance)."""
    out: dict[str, Any] = {}
    for key in ("instanceCpuCores", "redisCpuCores"):
        pm = sum(x["predicted"][key] * x["measured"][key] for x in cal)
        pp = sum(x["predicted"][key] ** 2 for x in cal)
        out[key] = pm / pp if pp else 1.0
    (c0, r0), (c1, r1) = [(x["connections"] / x["instances"], x["measured"]["rssMiBPerInstance"])
                          for x in (cal[0], cal[-1])]
    slope = (r1 - r0) / (c1 - c0) if c1 != c0 else 0.0
    out["rssBaseMiB"], out["rssMiBPerConnection"] = r0 - slope * c0, slope
    return out


def calibrated(x: dict[str, Any], fit: dict[str, Any]) -> dict[str, float]:
    return {"instanceCpuCores": x["predicted"]["instanceCpuCores"] * fit["instanceCpuCores"],
            "redisCpuCores": x["predicted"]["redisCpuCores"] * fit["redisCpuCores"],
            "rssMiBPerInstance": fit["rssBaseMiB"]
            + fit["rssMiBPerConnection"] * x["connections"] / x["instances"]}


def compare(loads: list[dict[str, Any]]) -> dict[str, Any]:
    """Calibrate on every load but the last; predict the last; the errors."""
    fit = calibrate(loads[:-1])
    for x in loads:
        x["calibrated"] = calibrated(x, fit)
        x["errorPercent"] = {
            way: {k: round(100 * (x[way][k] - v) / v, 1) if v else None
                  for k, v in x["measured"].items()} for way in ("predicted", "calibrated")}
    return fit


# --- measuring ----------------------------------------------------------------------------

def run_loads(a: argparse.Namespace, costs: capacity.Costs, broker: str) -> dict[str, Any]:
    names = [chr(ord("A") + i) for i in range(a.instances)]
    loads: list[dict[str, Any]] = []
    plan = [("calibrate", c, a.cluster_masters) for c in a.calibrate] \
        + [("predict", a.predict, a.predict_masters or a.cluster_masters)]
    for role, (conns, rate), masters in plan:
        with contextlib.ExitStack() as stack:
            # A fresh Redis (or cluster) per load, and fresh instances: RSS is a high-water
            # mark that a process keeps.
            d = Deployment(stack, redis_url=a.redis_url or "")
            if masters:
                from cluster_scaling import redis_for

                redis_for(stack, d, masters)
            elif not a.redis_url:
                d.start_redis()
            d.start(*names)
            readers = [(n, "ws", len(range(i, conns, len(names))))
                       for i, n in enumerate(names)]
            w = run_loop(measure(d, readers=readers, publish_to=names, rate=rate,
                                 seconds=a.seconds, label=f"{role}-{conns}at{rate:g}"))
            loads.append({"role": role, "connections": conns, "rate": rate,
                          "instances": len(names), "redisMasters": masters,
                          "measured": figures(w), "predicted": predicted(w, costs, broker),
                          "redisCalls": redis_calls(w, broker), "window": w})
            d.stop(*names)
    fit = compare(loads)
    return {"broker": broker, "costs": costs.source, "fit": fit, "loads": loads}


# --- the document -------------------------------------------------------------------------

def newest_check(directory: Path = RESULTS) -> tuple[str, dict[str, Any]] | None:
    files = sorted(directory.glob("capacity_check-*.json"))
    return (f"benchmarks/results/{files[-1].name}", json.loads(files[-1].read_text())) \
        if files else None


def block_check(directory: Path = RESULTS) -> str:
    found = newest_check(directory)
    if found is None:
        return "No capacity_check result file yet.\n"
    name, rec = found
    r = rec["result"]
    rows = ["| load | role | instance CPU, cores: unit costs / calibrated / measured | "
            "Redis CPU, cores: unit costs / calibrated / measured | RSS per instance, MiB: "
            "unit costs / calibrated / measured |", "|---|---|---|---|---|"]
    for x in r["loads"]:
        cells = [" / ".join(f"{x[w][k]:.3f}" if "Cpu" in k else f"{x[w][k]:.0f}"
                            for w in ("predicted", "calibrated", "measured"))
                 for k in ("instanceCpuCores", "redisCpuCores", "rssMiBPerInstance")]
        shards = f", {x['redisMasters']} Redis master(s)" if x.get("redisMasters") else ""
        rows.append(f"| {x['connections']:,} connections, {x['rate']:,.0f} updates/s on "
                    f"{x['instances']} instances{shards} | {x['role']} | "
                    + " | ".join(cells) + " |")
    last = r["loads"][-1]["errorPercent"]
    return ("\n".join(rows) + f"\n\nFrom [{name}](../{name}) ({rec['startedAt']}, commit "
            f"`{rec['source']['commit'][:7]}`, broker: {r['broker']}). Error of the predicted "
            "load, unit costs: " + ", ".join(f"{k} {v:+.1f} %" for k, v in
                                             last["predicted"].items() if v is not None)
            + "; calibrated: " + ", ".join(f"{k} {v:+.1f} %" for k, v in
                                           last["calibrated"].items() if v is not None) + "."
            + calls_line(r["loads"][-1]) + "\n")


def calls_line(x: dict[str, Any]) -> str:
    """The predicted load's Redis script calls and owner claims, the model's and Redis's."""
    calls = x.get("redisCalls")
    if not calls:
        return ""
    return " Per second, model / Redis's count: " + ", ".join(
        f"{name} {c['model']:,.0f} / {c['measured']:,.0f}" for name, c in calls.items()) + "."


def command_output(argv: list[str], costs_text: str) -> str:
    from jobwire.cli import build_parser

    args = build_parser().parse_args(["capacity", *argv])
    return capacity_cli.report(args, costs_text, "jobwire/capacity_costs.json")


def blocks(root: Path = ROOT) -> dict[str, str]:
    costs_text = (root / "src" / "jobwire" / "capacity_costs.json").read_text()
    million = "```console\n$ jobwire capacity " + " ".join(MILLION) + "\n" \
        + command_output(MILLION, costs_text) + "\n```\n"
    source = capacity.costs_from_json(costs_text).source
    costs = (f"Measured in [{source['resultFile']}](../{source['resultFile']}) "
             f"({source['measuredAt']}, commit `{str(source['commit'])[:7]}`, "
             f"{source['machine']}):\n\n```json\n{costs_text}```\n")
    return {"million": million, "costs": costs, "check": block_check(root / "benchmarks"
                                                                     / "results")}


def render(text: str, root: Path = ROOT) -> str:
    made = blocks(root)
    return BLOCK.sub(lambda m: f"{m[1]}{made[m['key']]}{m[4]}", text)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--calibrate", default="1000@1000,3000@3000",
                   type=lambda t: [parse_load(x) for x in t.split(",")],
                   help="two loads or more, CONNECTIONS@RATE (default 1000@1000,3000@3000)")
    p.add_argument("--predict", default="2000@5000", type=parse_load,
                   help="the load to predict, then measure (default 2000@5000)")
    p.add_argument("--instances", type=int, default=2, help="jobwire instances (default 2)")
    p.add_argument("--seconds", type=float, default=10.0, help="per load (default 10)")
    p.add_argument("--redis-url", help="a Redis (or redis+cluster://) to use")
    p.add_argument("--cluster-masters", type=int, default=0, metavar="N",
                   help="start a private Redis Cluster of N masters (tests/rediscluster.py)")
    p.add_argument("--predict-masters", type=int, default=0, metavar="M",
                   help="the predicted load on a private Redis Cluster of M masters "
                        "(default: --cluster-masters)")
    p.add_argument("--costs", type=Path, default=COSTS_FILE, help="the unit costs")
    p.add_argument("--render", type=Path, metavar="FILE",
                   help="rewrite FILE's capacity blocks; measure nothing")
    p.add_argument("--check", action="store_true", help="with --render: only say if stale")
    results.add_out_option(p)
    a = p.parse_args(argv)
    if not a.render and (len(a.calibrate) < 2 or a.instances < 1 or a.seconds <= 0
                         or (a.redis_url and a.cluster_masters)
                         or (a.predict_masters and not a.cluster_masters)):
        p.error("two calibration loads, one instance or more, positive --seconds, not "
                "both --redis-url and --cluster-masters, --predict-masters only with "
                "--cluster-masters")
    return a


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    if a.render:
        text = a.render.read_text()
        new = render(text)
        if a.check:
            return int(new != text)
        a.render.write_text(new)
        return 0
    broker = "cluster" if a.cluster_masters or (a.redis_url or "").startswith(
        "redis+cluster://") else "redis"
    costs = capacity.costs_from_json(a.costs.read_text(), broker)
    server_environment()
    run = results.Run("capacity_check", {k: (str(v) if isinstance(v, Path) else v)
                                         for k, v in vars(a).items() if k != "out"})
    outcome = run_loads(a, costs, broker)
    run.save(outcome, a.out)
    print(json.dumps(outcome["loads"][-1]["errorPercent"], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
