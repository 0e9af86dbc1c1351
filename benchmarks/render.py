#!/usr/bin/env python3
"""Regenerate the figures of BENCHMARKS.md and README.md from the committed result files.

Every figure in those documents sits between `<!-- results:KEY -->` and `<!-- /results:KEY -->`
markers and is rendered here from benchmarks/results/*.json (written by the scripts in
benchmarks/ and by `jobwire loadtest --json PATH`); the text around the markers is left alone
and carries no figures. Each table row names the result file it comes from; the targets'
thresholds are below, and whether each is met is computed from the files.

    .venv/bin/python benchmarks/render.py           # rewrite the blocks in both documents
    .venv/bin/python benchmarks/render.py --check   # exit 1 if a document is not up to date

Where several files measure the same thing, the newest wins in the targets and README tables;
the sections list every file. To replace a measurement, run its command again, delete the file
it replaces, and render.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from types import ModuleType
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = ROOT / "benchmarks" / "results"
DOCUMENTS = ("BENCHMARKS.md", "README.md")
BLOCK = re.compile(r"(<!-- results:(?P<key>[\w-]+) -->\n)(?P<body>.*?)(<!-- /results:(?P=key) -->)",
                   re.S)

# The targets of the performance work.
TARGET_CONNECTIONS = 10_000  # concurrent WebSockets on one server process
TARGET_KIB_PER_IDLE = 20.0  # server RSS per idle WebSocket, below
TARGET_CONNECT_P99_MS = 50.0  # connect p99 while ramping up...
TARGET_RAMP = 1_000  # ... this many connections
TARGET_RATE, TARGET_RATE_CLIENTS, TARGET_RATE_P99_MS = 10_000, 1_000, 50.0
TARGET_HTTP_CLIENTS, TARGET_HTTP_P99_MS = 1_000, 100.0  # SSE and long-polling
KEPT = 0.95  # share of a saturation rate that must be published for the rate to count
# jobwire's server CPU per message, at most this many times the peer's:
PEER_TARGETS = {"Node socket.io": 1.0, "python-socketio": 1 / 3}

Record = dict[str, Any]
NONE = "-"  # a figure the file does not have


# --- reading ------------------------------------------------------------------------------

def load(directory: Path = RESULTS) -> list[Record]:
    """Every result file, oldest first, each with its `file` (relative to the repository)."""
    records = []
    for path in sorted(directory.glob("*.json")):
        rec = json.loads(path.read_text())
        rec["file"] = f"benchmarks/results/{path.name}"
        records.append(rec)
    return sorted(records, key=lambda r: (r["startedAt"], r["file"]))


def named(records: Iterable[Record], *names: str) -> list[Record]:
    return [r for r in records if r["name"] in names]


def loadtests(records: Iterable[Record], **want: Any) -> list[Record]:
    """`jobwire loadtest` runs (also through ws_latency.py) whose options match `want`
    (values, or predicates on the value)."""
    def match(rec: Record) -> bool:
        p = rec["parameters"]
        return all(v(p[k]) if callable(v) else p[k] == v for k, v in want.items())

    return [r for r in named(records, "loadtest", "ws_latency") if match(r)]


def newest(records: list[Record]) -> Record | None:
    return records[-1] if records else None


# --- formatting ---------------------------------------------------------------------------

def n(v: float | None) -> str:
    """A count or rate: thousands separated, no decimals."""
    return NONE if v is None else f"{v:,.0f}"


def f(v: float | None) -> str:
    """A measured value: one decimal below 100, none above (the rest is noise here)."""
    if v is None:
        return NONE
    return f"{v:.1f}" if abs(v) < 100 else f"{v:,.0f}"


def limit(v: float) -> str:
    """A threshold, as written above."""
    return f"{v:,g}"


def ratio(v: float) -> str:
    return f"{v:.2f}"


def link(rec: Record) -> str:
    return f"[{Path(rec['file']).stem}]({rec['file']})"


def when(rec: Record) -> str:
    """`2026-12-05 23:50-23:51 UTC` from the file's own start and end times."""
    start, end = rec["startedAt"], rec["endedAt"]
    return f"{start[:10]} {start[11:16]}-{end[11:16]} UTC"


def commit(rec: Record) -> str:
    src = rec["source"]
    if not src.get("commit"):
        return "not a git checkout"
    changed = src.get("srcChanged") or []
    return f"`{src['commit'][:7]}`" + (f" + uncommitted changes to {len(changed)} files "
                                       "under src/" if changed else "")


def checkout_of(rec: Record) -> str | None:
    """Where the run's checkout was: recorded, or (in older files) the folder holding the
    interpreter's `.venv`. Not this checkout: a clone renders the same text."""
    recorded = (rec.get("source") or {}).get("checkout")
    if recorded:
        return recorded
    interpreter = rec["command"][0] if rec["command"] else ""
    return interpreter.split("/.venv/")[0] if "/.venv/" in interpreter else None


def command(rec: Record) -> str:
    """The command as typed: paths shortened to the repository's."""
    root = checkout_of(rec)
    argv = [a.replace(root + "/", "") if root else a for a in rec["command"]]
    if len(argv) > 1 and argv[1].endswith("bin/jobwire"):  # a console script: its shebang
        argv = argv[1:]
    env = " ".join(f"{k}={v}" for k, v in rec.get("environment", {}).items()
                   if k != "JOBWIRE_LOG_LEVEL")
    return f"`{(env + ' ') if env else ''}{' '.join(argv)}`"


def table(head: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def nothing(what: str) -> str:
    return f"(No result file for {what} yet.)"


# --- jobwire loadtest ---------------------------------------------------------------------

TRANSPORT = {"ws": "WebSocket", "sse": "SSE", "longpoll": "long-polling", "poll": "polling",
             "mixed": "mixed"}


def servers(r: Record) -> list[dict[str, Any]]:
    return [p for p in r["processes"] if p["role"] == "server"]


def redis_cpu(r: Record) -> float:
    return sum(p["cpuPercent"] for p in r["processes"] if p["role"] == "redis")


def delivered(r: Record) -> str:
    text = f"{n(r['eventsDelivered'])} / {n(r['eventsExpected'])}"
    flaws = [f"{n(r[k])} {label}" for k, label in
             (("eventsLost", "lost"), ("seqGaps", "gaps"), ("duplicates", "duplicates")) if r[k]]
    return text + (f" ({', '.join(flaws)})" if flaws else "")


def complete(r: Record) -> bool:
    """Every expected event arrived once, nothing refused."""
    return bool(r["ok"]) and not r["eventsLost"]


def latency(r: Record, points: tuple[str, ...] = ("p50", "p95", "p99", "max")) -> str:
    return " / ".join(f(r["latencyMs"][p]) for p in points)


def server_cpu(r: Record) -> str:
    text = " + ".join(f"{p['cpuPercent']:.0f} %" for p in servers(r))
    if redis_cpu(r):
        text += f", Redis {redis_cpu(r):.0f} %"
    return text


def busiest(gen: dict[str, Any]) -> str:
    top = max(gen["processes"], key=lambda p: p["cpuPercent"])
    return f"{top['role']} {top['cpuPercent']:.0f} %"


def loadtest_rows(records: list[Record]) -> str:
    head = ["transport", "clients", "instances", "updates/s wanted → achieved",
            "delivered / expected", "latency p50 / p95 / p99 / max ms", "connect p50 / p99 ms",
            "server CPU (% of a core)", "server µs / event", "server RSS MiB, start → end",
            "load generator CPU (busiest process)", "result file"]
    rows = []
    for rec in records:
        r, p = rec["result"], rec["parameters"]
        rss = " + ".join(f"{f(s['rssStartMiB'])} → {f(s['rssMiB'])}" for s in servers(r))
        rows.append([
            TRANSPORT.get(r["transport"], r["transport"]), f"{n(r['connected'])} / "
            f"{n(r['connections'])}", str(p["instances"]),
            f"{n(p['rate'])} → {n(r['publish']['achievedRate'])}", delivered(r), latency(r),
            f"{f(r['connectMs']['p50'])} / {f(r['connectMs']['p99'])}", server_cpu(r),
            f(r["serverCpuUsPerEvent"]), rss,
            f"{r['loadgen']['cpuPercent']:.0f} % ({busiest(r['loadgen'])})", link(rec)])
    return table(head, rows)


def block_loadtest(want: dict[str, Any], what: str) -> Callable[[list[Record]], str]:
    def render(records: list[Record]) -> str:
        found = loadtests(records, **want)
        return loadtest_rows(found) if found else nothing(what)

    return render


def block_ws_clients(records: list[Record]) -> str:
    found = loadtests(records, ws_client=lambda c: c != "")
    if not found:
        return nothing("the WebSocket client comparison")
    rows = []
    for rec in found:
        r = rec["result"]
        readers = [p for p in r["loadgen"]["processes"] if p["role"] != "publisher"]
        cpu = sum(p["cpuSeconds"] for p in readers)
        rows.append([rec["parameters"]["ws_client"], n(rec["parameters"]["rate"]),
                     delivered(r), f"{cpu:.2f} s over {len(readers)} processes",
                     f(cpu * 1e6 / r["eventsReceived"]) if r["eventsReceived"] else NONE,
                     latency(r, ("p50", "p99")),
                     f"{f(r['connectMs']['p50'])} / {f(r['connectMs']['p99'])}", link(rec)])
    return table(["WebSocket client", "updates/s", "delivered / expected", "readers' CPU",
                  "readers' µs per received event", "latency p50 / p99 ms",
                  "connect p50 / p99 ms", "result file"], rows)


# --- connections.py -----------------------------------------------------------------------

def block_connections(records: list[Record]) -> str:
    found = named(records, "connections")
    if not found:
        return nothing("benchmarks/connections.py")
    rows = []
    for rec in sorted(found, key=lambda r: (r["parameters"]["connections"],
                                            r["parameters"]["concurrent"], r["startedAt"])):
        r = rec["result"]
        c, rss = r["connectMs"], r["serverRssMiB"]
        rows.append([n(r["connections"]), n(r["concurrent"]), f"{r['rampSeconds']:.2f} s",
                     f"{f(c['p50'])} / **{f(c['p99'])}** / {f(c['max'])}",
                     f"{f(rss['before'])} → {f(rss['after'])}",
                     f"**{r['rssPerConnectionKiB']:.1f}**", link(rec)])
    return table(["connections", "in flight", "ramp", "connect p50 / p99 / max ms",
                  "server RSS MiB", "KiB per idle connection", "result file"], rows)


# --- saturation.py ------------------------------------------------------------------------

Point = tuple[dict[str, Any], Record]  # one rate's row, and the file it is in


def sweep(records: list[Record]) -> list[Point]:
    """Every rate of the saturation files with the newest one's clients, transport and p99
    limit (several sweeps may cover different rates), by rate, then time."""
    runs = named(records, "saturation")
    if not runs:
        return []
    key = [(r["parameters"]["clients"], r["parameters"]["transport"],
            r["parameters"]["instances"], r["result"]["p99LimitMs"]) for r in runs]
    same = [r for r, k in zip(runs, key, strict=True) if k == key[-1]]
    return sorted(((x, r) for r in same for x in r["result"]["rows"]),
                  key=lambda point: (point[0]["rate"], point[1]["startedAt"]))


def kept(x: dict[str, Any]) -> bool:
    """A rate met its limit (p99, nothing lost) and was kept: published on schedule."""
    return bool(x["meets"]) and x["achieved"] >= KEPT * x["rate"]


def edge(points: list[Point]) -> tuple[Point | None, Point | None]:
    """The highest rate kept within the limit, and the lowest rate above it that was not."""
    met = [pt for pt in points if kept(pt[0])]
    best = max(met, key=lambda pt: pt[0]["rate"]) if met else None
    floor = best[0]["rate"] if best else 0
    missed = [pt for pt in points if not kept(pt[0]) and pt[0]["rate"] > floor]
    return best, (missed[0] if missed else None)


def edge_text(points: list[Point]) -> str:
    best, miss = edge(points)
    text = (f"{n(best[0]['rate'])} updates/s ({link(best[1])})" if best
            else "none of the rates tried")
    if miss:
        return text + f"; {n(miss[0]['rate'])} updates/s missed ({link(miss[1])})"
    return text + (": every rate tried met it, so the edge lies above" if best else "")


def refusals(x: dict[str, Any]) -> str:
    """Updates refused and batch requests that failed (their events may still arrive: then
    more are delivered than the acknowledged updates expected)."""
    parts = [f"{n(x[k])} {label}" for k, label in (("refused", "updates refused"),
                                                   ("failedBatches", "batch requests failed"))
             if x[k]]
    return f" ({', '.join(parts)})" if parts else ""


def block_saturation(records: list[Record]) -> str:
    points = sweep(records)
    if not points:
        return nothing("benchmarks/saturation.py")
    p, p99 = points[-1][1]["parameters"], points[-1][1]["result"]["p99LimitMs"]
    rows = [[f"{n(x['rate'])} → {n(x['achieved'])}", f"{n(x['delivered'])} / "
             f"{n(x['expected'])}" + refusals(x), f"{f(x['p50'])} / {f(x['p99'])} / {f(x['max'])}",
             f"{x['serverCpuPercent']:.0f} %", f(x["serverUsPerEvent"]),
             f"{x['loadgenCpuPercent']:.0f} % ({x['busiestLoadgen']})",
             f(x["loadgenUsPerEvent"]), "**yes**" if kept(x) else "no", link(rec)]
            for x, rec in points]
    return (table(["updates/s wanted → achieved", "delivered / expected",
                   "latency p50 / p99 / max ms", "server CPU", "server µs / event",
                   "load generator CPU (busiest process)", "load generator µs / event",
                   f"p99 < {limit(p99)} ms, nothing lost, rate kept", "result file"], rows)
            + f"\n\n{n(p['clients'])} {TRANSPORT.get(p['transport'], p['transport'])} clients, "
            f"{f(p['duration'])} s per rate; a rate is kept when at least {KEPT:.0%} of it was "
            f"published. **Highest rate kept with p99 < {limit(p99)} ms and nothing lost: "
            f"{edge_text(points)}.**")



# --- single_updates.py and whole_machine.py -----------------------------------------------

def single_update_rows(rec: Record, broker: str) -> list[list[str]]:
    rows = []
    for x in rec["result"]["brokers"][broker]["rows"]:
        lat, late = x["latencyMs"], x["intendedLatencyMs"]
        rows.append([broker, f"{n(x['rate'])} → {n(x['achieved'])}",
                     f"{f(lat['p50'])} / {f(lat['p99'])} / {f(lat['max'])}", f(late["p99"]),
                     f"{x['serverCpuPercent']:.0f} %", f(x["serverUsPerRequest"]),
                     f(x["redisUsPerRequest"]), f"{x['loadgenCpuPercent']:.0f} %",
                     n(x["errors"]), "**yes**" if x["meets"] else "no", link(rec)])
    return rows


def block_single_updates(records: list[Record]) -> str:
    runs = named(records, "single_updates")
    sweeps = [r for r in runs if r["result"]["mode"] == "sweep"]
    if not sweeps:
        return nothing("benchmarks/single_updates.py")
    limit_ms = sweeps[-1]["result"]["p99LimitMs"]
    rows = [row for rec in sweeps for broker in rec["result"]["brokers"]
            for row in single_update_rows(rec, broker)]
    lines = [table(["broker", "requests/s wanted → answered",
                    "publish latency p50 / p99 / max ms", "p99 from schedule ms",
                    "server CPU (one core)", "server µs / request", "Redis µs / request",
                    "load generator CPU", "errors", f"p99 < {limit(limit_ms)} ms, no errors, "
                    f"{KEPT:.0%} answered", "result file"], rows), ""]
    for rec in sweeps:
        best = ", ".join(f"{broker} {n(b['highestRateMeetingLimit'])} requests/s"
                         + (" (every rate tried met it: the edge lies above)"
                            if all(x["meets"] for x in b["rows"]) else "")
                         for broker, b in rec["result"]["brokers"].items())
        lines.append(f"- {link(rec)} ({when(rec)}, code {commit(rec)}): highest rate with "
                     f"p99 < {limit(limit_ms)} ms: **{best}**.")
    for rec in (r for r in runs if r["result"]["mode"] == "profile"):
        for broker, b in rec["result"]["brokers"].items():
            top = ", ".join(f"`{x['module']}` {x['percent']:.0f} %"
                            for x in b["selfByModule"][:6])
            lines.append(f"- py-spy, {broker} broker at {n(b['row']['rate'])} requests/s "
                         f"({f(b['row']['serverUsPerRequest'])} µs per request, "
                         f"{n(b['samples'])} samples; {link(rec)}, code {commit(rec)}): "
                         f"self by module {top}.")
    return "\n".join(lines)


def block_whole_machine(records: list[Record]) -> str:
    runs = named(records, "whole_machine")
    if not runs:
        return nothing("benchmarks/whole_machine.py")
    rows, lines = [], []
    for rec in runs:
        res = rec["result"]
        for x in res["rows"]:
            rows.append([n(res["clients"]), f"{n(x['rate'])} → {n(x['achieved'])}",
                         f"{n(x['delivered'])} / {n(x['expected'])}" + refusals(x),
                         f"{f(x['p50'])} / {f(x['p99'])} / {f(x['max'])}",
                         f"{x['serverCpuPercent']:.0f} %", f(x["serverUsPerEvent"]),
                         f"{x['redisCpuPercent']:.0f} %",
                         f"{x['loadgenCpuPercent']:.0f} % ({x['busiestLoadgen']})",
                         "**yes**" if x["meets"] else "no", link(rec)])
        lines.append(f"- {n(res['clients'])} clients ({link(rec)}, {when(rec)}): highest rate "
                     f"with p99 < {limit(res['p99LimitMs'])} ms, nothing lost, rate kept: "
                     f"**{n(res['highestRateMeetingLimit'])} updates/s**.")
    return (table(["WebSocket clients", "updates/s wanted → achieved", "delivered / expected",
                   "latency p50 / p99 / max ms", "both workers' CPU (% of a core)",
                   "workers' µs / event", "Redis CPU", "load generator CPU (busiest process)",
                   f"p99 < {limit(runs[-1]['result']['p99LimitMs'])} ms, nothing lost, rate kept",
                   "result file"], rows)
            + "\n\n" + "\n".join(lines))

# --- cluster_scaling.py -------------------------------------------------------------------

RATIO_NAMES = {"redisEgressBytesPerUpdate": "Redis egress", "redisCpuUsPerUpdate": "Redis CPU",
               "instanceCpuUsPerUpdate": "instance CPU",
               "servingCpuUsPerUpdate": "serving instances' CPU",
               "eventsReceivedPerUpdatePerInstance": "events received per instance"}


SATURATED_MACHINE = 0.9  # busy share of all cores at which the machine itself is the cap


def cluster_scaling(records: list[Record], measurement: str) -> Record | None:
    return newest([r for r in named(records, "cluster_scaling")
                   if r["result"]["measurement"] == measurement])


def cluster_routing(rec: Record) -> str:
    p, runs = rec["parameters"], rec["result"]["runs"]
    rows = []
    for label, x in (("one Redis", runs["oneRedis"]),
                     (f"Redis Cluster, {n(runs['cluster']['masters'])} masters",
                      runs["cluster"])):
        d, only = x["delivery"], x.get("deliveryOnly") or {}
        got = [v for v in x["eventsReceivedPerInstance"].values() if v is not None]
        rows.append([label, f"{n(d['eventsDelivered'])} / {n(d['eventsExpected'])}, "
                     f"{n(d['seqGaps'])} gaps, {n(d['duplicates'])} duplicates",
                     f(d["latencyMs"]["p99"]), f(x["redisEgressBytesPerUpdate"]),
                     f(x["redisCpuUsPerUpdate"]), f(x["instanceCpuUsPerUpdate"]),
                     " / ".join(n(v) for v in got) + f" of {n(x['updates'])}" if got else NONE,
                     *(f(only.get(k)) for k in ("redisEgressBytesPerUpdate",
                                                "servingCpuUsPerUpdate",
                                                "ingestCpuUsPerUpdate"))])
    ratios = {RATIO_NAMES[k]: v for k, v in rec["result"]["ratios"].items()} | {
        RATIO_NAMES[k] + " (delivery only)": v
        for k, v in rec["result"].get("deliveryOnlyRatios", {}).items()}
    return (table(["broker", "delivered / expected (loadtest)", "p99 ms",
                   "Redis egress bytes / update", "Redis CPU µs / update",
                   "instance CPU µs / update (all instances)",
                   "events received over pub/sub, per instance",
                   "delivery only: Redis egress bytes / update",
                   "delivery only: serving instances' CPU µs / update",
                   "delivery only: ingest instance's CPU µs / update"], rows)
            + f"\n\n{n(p['instances'])} instances, {n(p['connections'])} WebSocket users "
            f"(one instance each), {n(p['rate'])} updates/s for {f(p['seconds'])} s, from "
            f"{link(rec)} ({when(rec)}, {commit(rec)}, {rec['machine']['cores']} cores). "
            "One Redis's figure over the cluster's, per update: " + ", ".join(
                f"{k} {ratio(v)}x" for k, v in ratios.items()) + ".")


def cluster_capacity(rec: Record) -> str:
    r, p = rec["result"], rec["parameters"]
    cores, rows = r["cores"], []
    for shard in r["shards"].values():
        for x in shard["steps"]:
            rows.append([n(shard["masters"]), f"{n(x['rate'])} → {n(x['achieved'])}",
                         f"{n(x['delivered'])} / {n(x['expected'])}" + refusals(x),
                         f"{f(x['p50'])} / {f(x['p99'])}",
                         f"{ratio(x['instanceCpuCores'])} + Redis {ratio(x['redisCpuCores'])} "
                         f"+ load generator {ratio(x['loadgenCpuCores'])} of {cores}",
                         f"{x['machineBusyShare']:.0%}", f(x["redisCpuUsPerUpdate"]),
                         "**yes**" if x["passed"] else "no", link(rec)])
    lines = []
    for shard in r["shards"].values():
        top = shard["atHighest"]
        best = shard["highestPassingRate"]
        lines.append(
            f"{n(shard['masters'])} master(s): " + (
                f"**{n(best)} updates/s**" if best else "none of the rates tried")
            + (f" ({n(shard['firstFailingRate'])} updates/s did not pass)"
               if shard["firstFailingRate"] else ", the highest rate tried")
            + (f"; at it the instances used {ratio(top['instanceCpuCores'])} of the "
               f"{cores} cores, Redis {ratio(top['redisCpuCores'])} "
               f"({f(top['redisCpuUsPerUpdate'])} µs per update), the machine was "
               f"{top['machineBusyShare']:.0%} busy" + (
                   ": the machine's cores, not Redis, are the cap"
                   if top["machineBusyShare"] >= SATURATED_MACHINE else "") if top else ""))
    return (table(["masters", "updates/s wanted → achieved", "delivered / expected",
                   "latency p50 / p99 ms", "CPU, cores: instances + Redis + load generator",
                   "machine busy", "Redis CPU µs / update",
                   f"p99 < {limit(r['p99LimitMs'])} ms, nothing lost, rate kept",
                   "result file"], rows)
            + f"\n\n{n(p['instances'])} instances, {n(p['connections'])} WebSocket users, "
            f"{f(p['seconds'])} s per rate ({when(rec)}, {commit(rec)}). Highest rate passing: "
            + "; ".join(lines) + ".")


def block_cluster_scaling(records: list[Record]) -> str:
    parts = [(cluster_scaling(records, m), show) for m, show in
             (("routing", cluster_routing), ("capacity", cluster_capacity))]
    return "\n\n".join(show(rec) if rec else nothing(f"cluster_scaling.py {m}")
                        for (rec, show), m in zip(parts, ("routing", "capacity"), strict=True))


# --- compare_peers.py: benchmarks/render_peers.py -----------------------------------------

def peers() -> ModuleType:
    """benchmarks/render_peers.py. It imports this module's helpers, so it is imported when
    first used, not at the top."""
    if str(HERE) not in sys.path:
        sys.path.insert(0, str(HERE))
    import render_peers

    return render_peers


def block_peers(records: list[Record]) -> str:
    return str(peers().block_peers(records))


# --- cpu_profile.py, browser_latency.py, report_overhead.py -------------------------------

NOTES = {"asyncio/runners.py": "the event loop: uvloop's C code under asyncio.run, i.e. "
                               "epoll, callbacks, reading sockets"}
TOP_MODULES = 12


def block_profile(records: list[Record]) -> str:
    rec = newest(named(records, "cpu_profile"))
    if rec is None:
        return nothing("benchmarks/cpu_profile.py")
    res, p = rec["result"], rec["parameters"]
    spy, load = res["pySpy"], res["loadtest"]["result"]
    own = res["selfByModule"]
    rest = sum(x["percent"] for x in own[TOP_MODULES:])
    own_rows = [[f"`{x['module']}`" + (f" ({NOTES[x['module']]})" if x["module"] in NOTES
                                       else ""), f"{x['percent']:.1f} %"]
                for x in own[:TOP_MODULES]]
    if rest:
        own_rows.append([f"{len(own) - TOP_MODULES} other modules", f"{rest:.1f} %"])
    inclusive = [[f"`{x['function']}`", f"{x['percent']:.1f} %"]
                 for x in res["inclusiveByJobwireFunction"]]
    return (f"{n(p['clients'])} WebSocket clients, {n(p['rate'])} updates/s wanted, "
            f"{n(load['publish']['achievedRate'])}/s achieved, {delivered(load)} delivered, "
            f"p99 {f(load['latencyMs']['p99'])} ms; py-spy {spy['version']} at "
            f"{spy['sampleRate']} samples/s for {spy['seconds']} s of the publishing: "
            f"{n(res['samples'])} samples of a busy server thread, while the server used "
            f"{spy['serverCpuSecondsWhileSampling']:.2f} s of CPU. {when(rec)}, {link(rec)}.\n\n"
            + table(["innermost frame's module (self)", "share of samples"], own_rows)
            + "\n\n" + table(["jobwire function on the stack (inclusive)", "share of samples"],
                             inclusive)
            + f"\n\nJWT verification (HS256, a new token each time, as for each connecting "
            f"user): **{f(res['jwtVerifyUs'])} µs** per token ({link(rec)}).")


def block_browser(records: list[Record]) -> str:
    found = named(records, "browser_latency")
    if not found:
        return nothing("benchmarks/browser_latency.py")
    return table(["updates", "transport", "publish → painted p50 / p95 / max ms", "Chromium",
                  "run", "result file"],
                 [[n(r["updates"]), r["transport"],
                   f"**{f(r['p50_ms'])}** / {f(r['p95_ms'])} / {f(r['max_ms'])}",
                   r.get("chromium", NONE), when(rec), link(rec)]
                  for rec in found for r in [rec["result"]]])


def block_report_overhead(records: list[Record]) -> str:
    found = named(records, "report_overhead")
    if not found:
        return nothing("benchmarks/report_overhead.py")
    return table(["publisher", "reports", "mean µs", "p50 µs", "p99 µs", "reports/s",
                  "result file"],
                 [[x["publisher"], n(x["reports"]), f(x["mean_us"]), f(x["p50_us"]),
                   f(x["p99_us"]), n(x["reports_per_second"]), link(rec)]
                  for rec in found for x in rec["result"]["results"]])


# --- celery_progress/run.py ---------------------------------------------------------------

WATCHING = {"celery-progress": "celery-progress, polling", "jobwire-ws": "jobwire, WebSocket",
            "jobwire-sse": "jobwire, SSE"}


def trio(ms: dict[str, Any]) -> str:
    return f"{f(ms['p50'])} / {f(ms['p95'])} / {f(ms['max'])}"


def times(a: float | None, b: float | None) -> str:
    """How many times `a` is `b`, for "x fewer" / "x less" lines."""
    return f"{a / b:,.0f}" if a and b and a / b >= 10 else f"{a / b:.1f}" if a and b else NONE


def block_celery_progress(records: list[Record]) -> str:
    rec = newest(named(records, "celery_progress"))
    if rec is None:
        return nothing("benchmarks/celery_progress/run.py")
    p, res = rec["parameters"], rec["result"]
    runs = res["runs"]
    rows = [[WATCHING.get(r["system"], r["system"]), n(r["users"]),
             f"**{f(r['requestsPerUserMinute'])}**",
             f"**{f(r['serverCpuMsPerUserMinute'])}** ({r['serverCpuPercent']:.0f} % of a core)",
             f(r["redisCpuMsPerUserMinute"]),
             f(r["workerCpuSeconds"] * 1000 / r["watchMinutes"]) if r["watchMinutes"] else NONE,
             f"**{f(r['delayMs']['p50'])}** / "
             f"{f(r['delayMs']['p95'])} / {f(r['delayMs']['max'])}",
             trio(r["completionDelayMs"]),
             f"{n(r['reportsSeen'])} / {n(r['reportsSent'])}"
             + (f" ({n(r['usersWithEveryReport'])} of {n(r['users'])} users saw all)"
                if r["usersWithEveryReport"] < r["users"] else "")
             + (f" ({n(r['errorCount'])} errors)" if r["errorCount"] else ""),
             f"{r['loadCpuPercent']:.0f} %", link(rec)] for r in runs]
    main = table(["watchers", "users", "HTTP requests per user per minute",
                  "server CPU ms per user per minute", "Redis CPU ms per user per minute",
                  "Celery worker CPU ms per user per minute",
                  "progress call → seen p50 / p95 / max ms", "task end → seen complete "
                  "p50 / p95 / max ms", "reports seen / sent", "load process CPU",
                  "result file"], rows)
    by = {(r["system"], r["users"]): r for r in runs}
    lines = []
    for users in p["users"]:
        poll = by.get(("celery-progress", users))
        if poll and poll["requestsPerUserMinute"]:
            # A watcher's cycle is the answer's time plus the pause: what the answer took, on
            # average, follows from how many cycles a minute held.
            cycle = 60_000 / poll["requestsPerUserMinute"]
            lines.append(f"- {n(users)} users, celery-progress: a poll every {f(cycle)} ms on "
                         f"average: the pause of {f(1000 * p['pollInterval'])} ms plus "
                         f"{f(cycle - 1000 * p['pollInterval'])} ms waiting for the answer.")
        for system in ("jobwire-ws", "jobwire-sse"):
            push = by.get((system, users))
            if poll and push:
                lines.append(
                    f"- {n(users)} users, {WATCHING[system]} against celery-progress: "
                    f"{times(poll['requestsPerUserMinute'], push['requestsPerUserMinute'])} "
                    f"x fewer requests, "
                    f"{times(poll['serverCpuMsPerUserMinute'], push['serverCpuMsPerUserMinute'])}"
                    f" x less server CPU, median delay {f(poll['delayMs']['p50'])} → "
                    f"{f(push['delayMs']['p50'])} ms.")
    v = res["versions"]
    return (f"{when(rec)}, jobwire at {commit(rec)}; celery-progress {v['celery-progress']}, "
            f"Django {v['django']}, Celery {v['celery']}, uvicorn {v['uvicorn']}, "
            f"redis-server {v.get('redis-server') or NONE}. Each user watches its own crawl of "
            f"{n(p['steps'])} progress reports, one every {f(p['interval'])} s, all crawls at "
            f"once; celery-progress's watchers poll every {f(p['pollInterval'])} s "
            f"(`{p['pollIntervalSource']}`); servers "
            + ("pinned to one core, the rest on the other" if p["pinned"] else "not pinned")
            + f".\n\n{main}\n\n" + "\n".join(lines))


# --- soak.py ------------------------------------------------------------------------------

SOAK_FLAT = 0.05  # flat memory: the server's RSS grows by less than this share of it per hour


def soak_flat(rss: dict[str, Any]) -> bool:
    """The server's RSS is flat: over the second half of the run (past the warm-up), it grew
    at less than SOAK_FLAT of its start per hour."""
    growth = rss["secondHalfGrowthMiBPerHour"]
    return growth is not None and growth < SOAK_FLAT * rss["startMiB"]


def soak_row(rec: Record) -> list[str]:
    r, p = rec["result"], rec["parameters"]
    d, rss, red = r["delivery"], r["serverRss"], r["redisRss"]
    once = "yes" if d["deliveredOnce"] and d["ok"] else "**no**"
    return [f"{n(d['connected'])} / {n(p['connections'])} "
            f"{TRANSPORT.get(p['transport'], p['transport'])}, {n(p['rate'])} → "
            f"{n(d['achievedRate'])} updates/s, {p['duration'] / 60:g} min",
            f"{n(p['disconnect_every'])} every {limit(p['disconnect_interval'])} s: "
            f"{n(d['reconnected'])} / {n(d['forcedDisconnects'])} resumed",
            f"**{f(rss['startMiB'])} → {f(rss['middleMiB'])} → {f(rss['endMiB'])}**",
            f"{f(rss['growthMiBPerHour'])} / {f(rss['secondHalfGrowthMiBPerHour'])}",
            "**yes**" if soak_flat(rss) else "no",
            f"{f(red['startMiB'])} → {f(red['endMiB'])}",
            f"{n(d['eventsDelivered'])} / {n(d['eventsExpected'])}",
            f"{n(d['duplicates'])} / {n(d['seqGaps'])}", once,
            f"{f(d['latencyMs']['p50'])} / {f(d['latencyMs']['p99'])}",
            f"{r['loadAverage1m']['mean']:.1f} / {r['loadAverage1m']['max']:.1f}", link(rec)]


def block_soak(records: list[Record]) -> str:
    runs = named(records, "soak")
    if not runs:
        return nothing("benchmarks/soak.py")
    text = table(["load", "forced disconnects: resumed", "server RSS MiB, start → middle → end",
                  "server RSS growth MiB/h, whole run / second half",
                  f"flat (second half < {SOAK_FLAT:.0%} of the start per hour)",
                  "Redis RSS MiB, start → end", "delivered / expected",
                  "duplicates / seq gaps", "every event once", "latency p50 / p99 ms",
                  "load average, mean / max", "result file"], [soak_row(r) for r in runs])
    rec = runs[-1]
    r, stem = rec["result"], Path(rec["file"]).stem
    after = r["afterLoadtest"]
    settings = " ".join(f"{k}={v}" for k, v in r["serverSettings"].items())
    return (f"{text}\n\nNewest run: {when(rec)}, code {commit(rec)}, {command(rec)}; the server "
            f"ran with `{settings}`. Once the load test ended, the server had "
            f"{n(after['sessions'])} sessions open after {f(after['secondsAfterLoadtest'])} s "
            f"and an RSS of {f(after['serverRssMiB'])} MiB; its log had "
            f"{n(r['serverLogErrors'])} error lines.\n\n"
            f"![The server's RSS over the run, MiB against minutes, the start, middle and end "
            f"samples marked]"
            f"(benchmarks/results/{stem}.png)")


# --- targets ------------------------------------------------------------------------------

def verdict(checks: list[tuple[str, bool]]) -> str:
    """**yes** / no, or which of the cases met the target."""
    if not checks:
        return "not measured"
    if all(ok for _, ok in checks):
        return "**yes**"
    if not any(ok for _, ok in checks):
        return "no"
    return "; ".join(f"{'yes' if ok else 'no'} {label}" for label, ok in checks)


def connections_by_size(records: list[Record]) -> list[Record]:
    """The newest connections.py run of each (connections, in flight) pair."""
    newest_of: dict[tuple[int, int], Record] = {}
    for rec in named(records, "connections"):
        p = rec["parameters"]
        newest_of[(p["connections"], p["concurrent"])] = rec
    return [newest_of[k] for k in sorted(newest_of)]


def idle_memory(records: list[Record]) -> list[Record]:
    """Per connection count, largest first, the newest connections.py run (with the most in
    flight, if several): the memory figure for that many idle connections."""
    by_count: dict[int, Record] = {}
    for rec in connections_by_size(records):
        by_count[rec["parameters"]["connections"]] = rec
    return [by_count[k] for k in sorted(by_count, reverse=True)]


def target_rows(records: list[Record]) -> list[list[str]]:
    rows = []

    rec = newest(loadtests(records, connections=lambda c: c >= TARGET_CONNECTIONS,
                           transport="ws", instances=1))
    if rec:
        r = rec["result"]
        rows.append([f"{n(TARGET_CONNECTIONS)} concurrent WebSockets on one server process",
                     f"{n(r['connected'])} / {n(r['connections'])} connected in "
                     f"{r['rampSeconds']:.1f} s; {delivered(r)} events at "
                     f"{n(r['publish']['achievedRate'])}/s, p99 {f(r['latencyMs']['p99'])} ms",
                     link(rec), verdict([("", r["connected"] >= TARGET_CONNECTIONS
                                          and complete(r))])])

    runs = idle_memory(records)
    if runs:
        rows.append([f"server RSS per idle WebSocket < {limit(TARGET_KIB_PER_IDLE)} KiB",
                     "; ".join(f"{r['result']['rssPerConnectionKiB']:.1f} KiB at "
                               f"{n(r['parameters']['connections'])}" for r in runs),
                     ", ".join(link(r) for r in runs),
                     verdict([(f"at {n(r['parameters']['connections'])}",
                               r["result"]["rssPerConnectionKiB"] < TARGET_KIB_PER_IDLE)
                              for r in runs])])

    ramps = [r for r in connections_by_size(records)
             if r["parameters"]["connections"] == TARGET_RAMP]
    if ramps:
        rows.append([f"connect p99 < {limit(TARGET_CONNECT_P99_MS)} ms while ramping "
                     f"{n(TARGET_RAMP)} connections",
                     "; ".join(f"{f(r['result']['connectMs']['p99'])} ms with "
                               f"{n(r['parameters']['concurrent'])} in flight" for r in ramps),
                     ", ".join(link(r) for r in ramps),
                     verdict([(f"with {n(r['parameters']['concurrent'])} in flight",
                               r["result"]["connectMs"]["p99"] < TARGET_CONNECT_P99_MS)
                              for r in ramps])])

    rec = newest(loadtests(records, connections=TARGET_RATE_CLIENTS, rate=TARGET_RATE,
                           transport="ws", instances=1, ws_client=""))
    if rec:
        r = rec["result"]
        rows.append([f"{n(TARGET_RATE)} updates/s into {n(TARGET_RATE_CLIENTS)} WebSocket "
                     f"clients: nothing lost, p99 < {limit(TARGET_RATE_P99_MS)} ms",
                     f"{delivered(r)}, p99 {f(r['latencyMs']['p99'])} ms, server "
                     f"{f(r['serverCpuUsPerEvent'])} µs per event", link(rec),
                     verdict([("", complete(r) and r["latencyMs"]["p99"] < TARGET_RATE_P99_MS)])])

    http = [rec for t in ("sse", "longpoll")
            for rec in [newest(loadtests(records, connections=TARGET_HTTP_CLIENTS,
                                         transport=t, instances=1))] if rec]
    if http:
        rows.append([f"SSE and long-polling at {n(TARGET_HTTP_CLIENTS)} clients: p99 < "
                     f"{limit(TARGET_HTTP_P99_MS)} ms",
                     "; ".join(f"{TRANSPORT[r['result']['transport']]} p99 "
                               f"{f(r['result']['latencyMs']['p99'])} ms at "
                               f"{n(r['parameters']['rate'])} updates/s, {delivered(r['result'])}"
                               for r in http),
                     ", ".join(link(r) for r in http),
                     verdict([(TRANSPORT[r["result"]["transport"]],
                               complete(r["result"])
                               and r["result"]["latencyMs"]["p99"] < TARGET_HTTP_P99_MS)
                              for r in http])])

    rec = peers().newest_peers(records)
    if rec:
        rows += peers().target_rows(rec)
    rows += peers().commit_cost_rows(records)

    points = sweep(records)
    if points:
        rec = points[-1][1]
        rows.append([f"saturation: the highest rate kept into "
                     f"{n(rec['parameters']['clients'])} WebSocket clients with p99 < "
                     f"{limit(rec['result']['p99LimitMs'])} ms, nothing lost", edge_text(points),
                     ", ".join(link(r) for r in {r["file"]: r for _, r in points}.values()),
                     "measured"])

    for rec in loadtests(records, instances=lambda i: i > 1):
        r = rec["result"]
        rows.append([f"Redis, {rec['parameters']['instances']} instances, "
                     f"{n(r['connections'])} {TRANSPORT[r['transport']]} clients",
                     f"{n(rec['parameters']['rate'])} updates/s wanted, "
                     f"{n(r['publish']['achievedRate'])} achieved; {delivered(r)}, p99 "
                     f"{f(r['latencyMs']['p99'])} ms", link(rec), "measured"])
    return rows


def block_targets(records: list[Record]) -> str:
    return table(["target", "measured", "result file", "met?"], target_rows(records))


# --- README ------------------------------------------------------------------------------

def block_readme(records: list[Record]) -> str:
    rows = []

    def add(label: str, rec: Record | None) -> None:
        if rec is None:
            return
        r = rec["result"]
        rows.append([label, n(r["connections"]), n(r["publish"]["achievedRate"]),
                     f"{f(r['latencyMs']['p50'])} / {f(r['latencyMs']['p99'])} ms",
                     f(r["serverCpuUsPerEvent"]), link(rec)])

    add("one process, WebSocket", newest(loadtests(
        records, connections=TARGET_RATE_CLIENTS, rate=TARGET_RATE, transport="ws",
        instances=1, ws_client="")))
    best, _ = edge(sweep(records))
    if best:
        x, sat = best
        rows.append([f"one process, WebSocket: the highest rate kept with p99 < "
                     f"{limit(sat['result']['p99LimitMs'])} ms", n(sat["parameters"]["clients"]),
                     n(x["achieved"]), f"{f(x['p50'])} / {f(x['p99'])} ms",
                     f(x["serverUsPerEvent"]), link(sat)])
    add("one process, WebSocket", newest(loadtests(
        records, connections=lambda c: c >= TARGET_CONNECTIONS, transport="ws", instances=1)))
    for t in ("sse", "longpoll"):
        add(f"one process, {TRANSPORT[t]}", newest(loadtests(
            records, connections=TARGET_HTTP_CLIENTS, transport=t, instances=1)))
    for rec in loadtests(records, instances=lambda i: i > 1):
        add(f"{rec['parameters']['instances']} instances on Redis, WebSocket", rec)
    browser = newest(named(records, "browser_latency"))
    if browser:
        b = browser["result"]
        rows.append(["dashboard in Chromium, publish → painted row", "1", NONE,
                     f"{f(b['p50_ms'])} ms p50", NONE, link(browser)])
    text = table(["setup", "clients", "updates/s", "latency p50 / p99 (publisher send → "
                  "client parsed)", "server µs per event", "result file"], rows)

    runs = idle_memory(records)
    if runs:
        text += ("\n\nServer memory per idle WebSocket connection: "
                 + "; ".join(f"{r['result']['rssPerConnectionKiB']:.1f} KiB with "
                             f"{n(r['parameters']['connections'])} open ({link(r)})"
                             for r in runs) + ".")
    rec = peers().newest_peers(records)
    if rec:
        text += peers().readme_line(rec)
    return text


# --- the commands users run (tests/websocket/, tests/performance/) -----------------------

SEED_SCRIPTS = ("test_connection", "websocket_load_test", "status_update_throughput",
                "realtime_load_test")


def seed_value(c: dict[str, Any]) -> str:
    """A criterion's measured value as the script printed it: shares of 99 % and above with
    three decimals (99.9 % is a threshold), counts whole."""
    v, unit = c["value"], c["unit"]
    if v is None:
        return "not measured"
    if unit == "%":
        return f"{v:.3f} %" if 99 <= v < 100 else f"{v:.1f} %"
    return f"{n(v)} {unit}" if unit == "connections" else f"{f(v)} {unit}"


def block_seed_commands(records: list[Record]) -> str:
    """The newest run of each command, with its PASS/FAIL lines and exit status (the verdicts
    are the scripts' own, judged by tests/performance/lib/criteria.js)."""
    parts = []
    for script in SEED_SCRIPTS:
        rec = newest(named(records, f"seed-{script}"))
        if rec is None:
            parts.append(nothing(f"`{script}`"))
            continue
        r = rec["result"]
        rows = [[c["label"], seed_value(c), c["detail"],
                 "**PASS**" if c["verdict"] == "PASS" else "FAIL"] for c in r["criteria"]]
        parts.append(f"`{' '.join(rec['parameters']['command'])}`: exit status "
                     f"{r['exitStatus']}, {when(rec)} ({link(rec)})\n\n"
                     + table(["criterion", "measured", "how", "verdict"], rows))
    return "\n\n".join(parts)


# --- the result files ---------------------------------------------------------------------

def block_machine(records: list[Record]) -> str:
    """The machines the files were measured on (normally one), with the library versions."""
    if not records:
        return nothing("any benchmark")
    seen: dict[str, list[Record]] = {}
    for rec in records:
        m = rec["machine"]
        key = json.dumps([m["cores"], m["cpuModel"], m["memoryGiB"], m["kernel"], m["python"],
                          m["libraries"]])
        seen.setdefault(key, []).append(rec)
    rows = []
    for group in seen.values():
        m = group[0]["machine"]
        libs = ", ".join(f"{k} {v}" for k, v in m["libraries"].items() if v)
        rows.append([f"{m['cores']} cores ({m['cpuModel']}), {f(m['memoryGiB'])} GiB, "
                     f"Linux {m['kernel']}, Python {m['python']}", libs, str(len(group))])
    return table(["machine", "libraries", "result files"], rows)


def block_files(records: list[Record]) -> str:
    if not records:
        return nothing("any benchmark")
    rows = [[link(rec), when(rec),
             f"{rec['machine']['loadAverage1m']:.2f} → {rec['loadAverage1mAtEnd']:.2f}",
             commit(rec), command(rec)] for rec in records]
    return table(["result file", "run", "load average (1 min), start → end", "code",
                  "command"], rows)


BLOCKS: dict[str, Callable[[list[Record]], str]] = {
    "targets": block_targets,
    "machine": block_machine,
    "connections": block_connections,
    "loadtest-ws": block_loadtest({"transport": "ws", "instances": 1, "ws_client": ""},
                                  "jobwire loadtest over WebSocket"),
    "loadtest-http": block_loadtest({"transport": lambda t: t in ("sse", "longpoll"),
                                     "instances": 1}, "jobwire loadtest over SSE or long-polling"),
    "loadtest-redis": block_loadtest({"instances": lambda i: i > 1},
                                     "jobwire loadtest --instances"),
    "ws-clients": block_ws_clients,
    "saturation": block_saturation,
    "single_updates": block_single_updates,
    "whole_machine": block_whole_machine,
    "cluster_scaling": block_cluster_scaling,
    "peers": block_peers,
    "profile": block_profile,
    "browser": block_browser,
    "report-overhead": block_report_overhead,
    "celery_progress": block_celery_progress,
    "soak": block_soak,
    "seed_commands": block_seed_commands,
    "files": block_files,
    "readme": block_readme,
}


def render_text(text: str, records: list[Record]) -> str:
    """`text` with each results block rendered anew from `records`."""
    def replace(m: re.Match[str]) -> str:
        key = m["key"]
        if key not in BLOCKS:
            raise KeyError(f"unknown results block {key!r}; known: {', '.join(BLOCKS)}")
        return f"{m[1]}{BLOCKS[key](records)}\n{m[4]}"

    return BLOCK.sub(replace, text)


def rendered(root: Path = ROOT) -> dict[Path, str]:
    """Each document as it should be, from the result files (nothing is written)."""
    records = load(root / "benchmarks" / "results")
    return {root / doc: render_text((root / doc).read_text(), records) for doc in DOCUMENTS}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--check", action="store_true",
                   help="write nothing; exit 1 if a document differs from its rendering")
    args = p.parse_args()
    stale = []
    for path, text in rendered().items():
        if path.read_text() != text:
            stale.append(path.name)
            if not args.check:
                path.write_text(text)
    if args.check and stale:
        print(f"not up to date with benchmarks/results: {', '.join(stale)} "
              "(run benchmarks/render.py)", file=sys.stderr)
        return 1
    print(("rendered: " + ", ".join(stale)) if stale else "up to date", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
