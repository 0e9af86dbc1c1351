"""A run's record in the result file, the table printed at the end, and the verdicts: jobwire
against Node socket.io (and python-socketio on the 10-ms batch load) in the same mode, from
the same invocation."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from jobwire.loadtest.stats import summary

if TYPE_CHECKING:  # benchmarks/render_peers.py imports this module: it stays light
    from .runs import Measured
    from .servers import Server

SATURATED = 0.9  # share of its core above which the generator is the bottleneck
JOBWIRE, NODE, PYTHON = "jobwire", "Node socket.io", "python-socketio"
# jobwire's CPU per message, at most this many times the peer's (None: the ratio, no target).
TARGETS: dict[str, dict[str, dict[float | None, float | None]]] = {
    "batch10": {NODE: {None: 1.0}, PYTHON: {None: 1 / 3}},
    "batch1": {NODE: {10_000: 1.5, 2_000: 2.0, None: None}},
    "single": {NODE: {None: None}},
    "direct": {NODE: {None: 1.0}},
    "idle": {NODE: {None: None}},
}
IDLE_TARGET = 1.0  # idle CPU per connection-second, jobwire / Node, at most
# Seconds between the heartbeats an idle connection costs: jobwire's default
# JOBWIRE_HEARTBEAT_SECONDS, and Engine.IO's default pingInterval (both peers). An idle window
# shorter than one of them can miss that server's heartbeats altogether.
HEARTBEAT_SECONDS = {"jobwire": 15.0, "node": 25.0, "python": 25.0}


def per_message(seconds: float | None, delivered: int) -> float | None:
    return None if seconds is None or not delivered else round(seconds * 1e6 / delivered, 1)


def notes(server: Server, m: Measured, args: argparse.Namespace) -> list[str]:
    out = []
    beat = HEARTBEAT_SECONDS[server.name]
    if m.idle_seconds is not None and m.idle_seconds < beat:
        out.append(f"idle window {m.idle_seconds:g} s is shorter than this server's "
                   f"heartbeat interval ({beat:g} s): its heartbeats may fall outside it")
    window = m.window
    if m.own > SATURATED * window:
        out.append(f"generator saturated ({100 * m.own / window:.0f} % of its core)")
    lag99 = summary(m.lags, 1000)["p99"] or 0.0
    if lag99 > 50:
        out.append(f"generator loop late by {lag99:.0f} ms (p99)")
    total = round(m.rate * args.duration)
    if m.pub.sent < total:
        out.append(f"publishing stopped: {m.pub.sent} of {total} sent")
    if m.pub.seconds > 1.1 * args.duration:
        out.append(f"publishing took {m.pub.seconds:.1f} s, not {args.duration:g} s")
    if m.cpu > 0.95 * window:
        out.append(f"server saturated ({100 * m.cpu / window:.0f} % of its core)")
    lost = max(0, m.pub.accepted - m.tally.delivered)
    if lost:
        out.append(f"{lost} not delivered within {args.drain:g} s of the last publish")
    if m.redis_cpu is not None:
        out.append(f"Redis {100 * m.redis_cpu / window:.0f} % of a core, "
                   f"+{m.redis_cpu * 1e6 / max(m.tally.delivered, 1):.0f} µs/message")
    if m.tally.drops:
        out.append(f"{m.tally.drops} connections dropped")
    if m.tally.connect_failures:
        out.append(f"{len(m.tally.connect_failures)} failed to connect, e.g. "
                   f"{m.tally.connect_failures[0]}")
    if m.pub.errors:
        out.append(f"{len(m.pub.errors)} publish errors, e.g. {m.pub.errors[0]}")
    return out


def record(server: Server, mode: str, m: Measured, args: argparse.Namespace) -> dict[str, Any]:
    tally, pub, window = m.tally, m.pub, m.window
    rss = m.rss
    out = {
        "load": m.load, "server": server.label, "mode": mode,
        "clients": m.clients, "connected": m.connected,
        "targetRate": m.rate, "achievedRate": round(pub.sent / max(pub.seconds, 1e-9), 1),
        "jobsPerUser": m.jobs_per_user, "sent": pub.sent, "expected": pub.accepted,
        "delivered": tally.delivered, "gaps": tally.gaps, "duplicates": tally.duplicates,
        "conflated": pub.conflated, "refused": pub.refused, "publishMaxLagMs":
            round(pub.max_lag * 1000, 1), "publishPostMs": summary(pub.post_times, 1000, (50, 99)),
        "latencyMs": summary(tally.latencies, 1000),
        "avgMessageBytes": round(tally.bytes / max(tally.delivered, 1)),
        "windowSeconds": round(window, 2), "serverCpuSeconds": round(m.cpu, 3),
        "serverCpuPercent": round(100 * m.cpu / window, 1),
        "serverCpuUsPerMessage": per_message(m.cpu, tally.delivered),
        "redisCpuSeconds": None if m.redis_cpu is None else round(m.redis_cpu, 3),
        "redisCpuUsPerMessage": per_message(m.redis_cpu, tally.delivered),
        "redisCommandsPerMessage": {
            name: {"calls": round(v["calls"] / tally.delivered, 3),
                   "us": round(v["usec"] / tally.delivered, 2)}
            for name, v in sorted(m.redis_commands.items(), key=lambda kv: -kv[1]["usec"])
            if tally.delivered and name != "config|resetstat"},
        "rssIdleMiB": round(rss["idle"], 1), "rssConnectedMiB": round(rss["connected"], 1),
        "rssEndMiB": round(rss["end"], 1),
        "rssPerConnectionKiB": round((rss["connected"] - rss["idle"]) * 1024
                                     / max(m.connected, 1), 1),
        "connectMs": summary(tally.connect_times, 1000, (50, 99)),
        "rampSeconds": round(m.ramp, 2), "concurrent": args.concurrent,
        "generatorCpuPercent": round(100 * m.own / window, 1),
        "generatorLoopLagMsP99": round(summary(m.lags, 1000)["p99"] or 0.0, 1),
        "notes": notes(server, m, args)}
    if m.profile is not None:
        out["profile"] = m.profile
    if m.load == "single":
        out["workers"] = args.workers
    if m.idle_seconds is not None and m.idle_cpu is not None:
        out.update({"idleSeconds": m.idle_seconds,
                    "idleCpuPercent": round(100 * m.idle_cpu / m.idle_seconds, 2),
                    "idleCpuUsPerConnectionSecond": round(
                        m.idle_cpu * 1e6 / (max(m.connected, 1) * m.idle_seconds), 3)})
    return out


# --- output -------------------------------------------------------------------------------

def load_of(run: dict[str, Any]) -> str:
    """Result files from before --loads measured the 10-ms batch load only."""
    return str(run.get("load", "batch10"))


def fmt_ms(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f}" if v < 100 else f"{v:.0f}"


def fmt_us(v: float | None) -> str:
    return "-" if v is None else f"{v:.0f}" if v >= 10 else f"{v:.2f}"


def table(runs: list[dict[str, Any]]) -> str:
    head = ("| load | server | mode | updates/s target → achieved | delivered / expected | "
            "p50 ms | p99 ms | max ms | server CPU | **CPU µs / message** | Redis µs / message "
            "| idle µs / connection-s | RSS idle MiB | RSS / connection KiB | "
            "connect p50 / p99 ms | generator CPU | notes |")
    rows = [head, "|" + "---|" * 17]
    for r in runs:
        lat, con = r["latencyMs"], r["connectMs"]
        rows.append(
            f"| {load_of(r)} | {r['server']} | {r['mode']} | {r['targetRate']:,.0f} → "
            f"{r['achievedRate']:,.0f} | {r['delivered']:,} / {r['expected']:,} | "
            f"{fmt_ms(lat['p50'])} | {fmt_ms(lat['p99'])} | {fmt_ms(lat['max'])} | "
            f"{r['serverCpuPercent']:.0f} % ({r['serverCpuSeconds']:.1f} s) | "
            f"**{fmt_us(r['serverCpuUsPerMessage'])}** | "
            f"{fmt_us(r.get('redisCpuUsPerMessage'))} | "
            f"{fmt_us(r.get('idleCpuUsPerConnectionSecond'))} | {r['rssIdleMiB']:.0f} | "
            f"{r['rssPerConnectionKiB']:.1f} | {fmt_ms(con['p50'])} / {fmt_ms(con['p99'])} | "
            f"{r['generatorCpuPercent']:.0f} % | {'; '.join(r['notes']) or ''} |")
    return "\n".join(rows)


def target_for(load: str, peer: str, rate: float) -> float | None:
    by_rate = TARGETS.get(load, {}).get(peer, {})
    return by_rate.get(rate, by_rate.get(None))


def compared(us: float, other: float, what: str, most: float | None) -> str:
    """`what = us / other µs = ratio (verdict)`; nothing measured on both sides (an idle
    server below the clock tick) counts as equal."""
    ratio = us / other if other else 1.0 if not us else float("inf")
    verdict = ("no target" if most is None
               else f"target ≤ {most:.2f}: {'met' if ratio <= most else 'NOT met'}")
    return f"{what} = {fmt_us(us)} / {fmt_us(other)} µs = {ratio:.2f} ({verdict})"


def verdicts(runs: list[dict[str, Any]]) -> list[str]:
    """jobwire against each peer measured at the same load, mode and rate: CPU per message
    (and per idle connection-second), and side by side the Redis CPU per message."""
    keyed = {(load_of(r), r["server"], r["mode"], r["targetRate"]): r for r in runs}
    out = []
    for (load, name, mode, rate), r in keyed.items():
        if name != JOBWIRE:
            continue
        where = f"{load}, {mode}, {rate:,.0f}/s"
        for peer in TARGETS.get(load, {}):
            other = keyed.get((load, peer, mode, rate))
            if not other:
                continue
            us, them = r["serverCpuUsPerMessage"], other["serverCpuUsPerMessage"]
            if us is not None and them is not None:
                out.append(f"{where}: " + compared(
                    us, them, f"jobwire / {peer} CPU per message",
                    target_for(load, peer, rate)))
            idle, idle_them = (r.get("idleCpuUsPerConnectionSecond"),
                               other.get("idleCpuUsPerConnectionSecond"))
            if idle is not None and idle_them is not None:
                out.append(f"{where}: " + compared(
                    idle, idle_them, f"jobwire / {peer} idle CPU per connection-second",
                    IDLE_TARGET))
            redis, redis_them = r.get("redisCpuUsPerMessage"), other.get("redisCpuUsPerMessage")
            if peer == NODE and redis is not None and redis_them is not None:
                out.append(f"{where}: Redis CPU per message, jobwire {fmt_us(redis)} µs, "
                           f"{peer} {fmt_us(redis_them)} µs")
    return out
