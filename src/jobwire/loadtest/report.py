"""The result: built from the tallies and measurements, and shown as text for people or as
one JSON object."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import orjson

from .options import Options
from .publisher import PublishStats
from .stats import Tally, merge, summary

SATURATED = 0.9  # share of a core above which a load generator process is the bottleneck

NAMES = {"ws": "WebSocket", "sse": "SSE", "longpoll": "long-polling", "poll": "polling",
         "mixed": "mixed (even split over ws, sse, longpoll, poll)"}


@dataclass
class Watched:
    """A local process whose CPU and memory are reported."""

    name: str
    pid: int
    role: str  # "server" (jobwire) or "redis"
    cpu0: float = 0.0
    rss0: float = 0.0


@dataclass
class LoadgenProcess:
    """One process of the load generator, over the measured time: the parent (it publishes,
    and reads too with --processes 1) or a reader worker."""

    role: str  # "publisher", "publisher+readers" or "readers"
    pid: int
    clients: int
    cpu_seconds: float
    lags: list[float]  # its event loop's lateness, seconds


def loadgen_result(parts: list[LoadgenProcess], measured: float) -> dict[str, Any]:
    """The load generator's CPU (all its processes) and loop lateness (all samples), and the
    same per process."""
    cpu = sum(p.cpu_seconds for p in parts)
    return {"cpuSeconds": round(cpu, 3), "cpuPercent": round(100 * cpu / measured, 1),
            "loopLagMs": summary([x for p in parts for x in p.lags], 1000, (50, 99)),
            "processes": [{"role": p.role, "pid": p.pid, "clients": p.clients,
                           "cpuSeconds": round(p.cpu_seconds, 3),
                           "cpuPercent": round(100 * p.cpu_seconds / measured, 1),
                           "loopLagMs": summary(p.lags, 1000, (50, 99))} for p in parts]}


def loadgen_bottlenecks(gen: dict[str, Any], n: int) -> list[str]:
    """Each load generator process that used most of a core, or whose loop ran late."""
    out = []
    for p in gen["processes"]:
        who = (f"the load generator's {p['role']} process {p['pid']}"
               + (f" ({p['clients']} clients)" if p["clients"] else "") if n > 1
               else "the load generator (one process)")
        if p["cpuPercent"] > 100 * SATURATED:
            out.append(f"{who} used {p['cpuPercent']:.0f} % of a core: it is the bottleneck, "
                       "and its own queueing is part of the latencies; use fewer connections "
                       "or updates per process, or more --processes")
        lag_p99 = p["loopLagMs"]["p99"] or 0
        if lag_p99 > 50:
            out.append(f"{who}: its event loop ran up to {lag_p99:.0f} ms late (p99): "
                       "latencies include that much of its own queueing")
    return out


def _tally_result(t: Tally, expected: int) -> dict[str, Any]:
    return {
        "connected": t.connected,
        "connectMs": summary(t.connect_times, 1000, (50, 99)),
        "eventsExpected": expected,
        "eventsDelivered": t.delivered,
        "eventsLost": max(0, expected - t.delivered),
        "eventsReceived": t.received,
        "superseded": t.superseded,
        "seqGaps": t.gaps,
        "duplicates": t.duplicates,
        "foreignEvents": t.foreign,
        "errorMessages": t.errors,
        "cursorExpired": t.cursor_expired,
        "missedFoundInSnapshot": t.snapshot_states,
        "unexpectedDrops": t.drops,
        "connectFailures": t.connect_failures,
        "rateLimitedConnects": t.rate_limited,
        "latencyMs": summary(t.latencies, 1000),
        "forcedDisconnects": t.forced,
        "reconnected": t.reconnected,
        "reconnectMs": summary(t.reconnect_times, 1000, (50, 99)),
    }


def build_result(o: Options, *, urls: list[str], run_id: str, prefix: str,
                 tallies: dict[str, Tally], expected_by: dict[str, int], pub: PublishStats,
                 users: int, jobs: int, jobs_per_user: int, lanes: int,
                 publishers: int, ramp_seconds: float, publish_seconds: float,
                 measured: float, loadgen: list[LoadgenProcess], watched: list[Watched],
                 cpu1: list[float], rss1: list[float]) -> dict[str, Any]:
    total = merge(tallies.values())
    expected = sum(expected_by.values())
    result: dict[str, Any] = {"title": o.title, "urls": urls, "runId": run_id,
                              "userPrefix": prefix + "-u", "transport": o.transport,
                              "connections": o.connections, "users": users}
    result.update(_tally_result(total, expected))
    result["rampSeconds"] = round(ramp_seconds, 3)
    result["byTransport"] = {t: _tally_result(tally, expected_by[t])
                             for t, tally in tallies.items()}
    elapsed = max(pub.last_sent - pub.started, 1e-9)
    achieved = pub.sent / elapsed if pub.sent > 1 else 0.0
    result["publish"] = {
        "targetRate": o.rate, "duration": o.duration, "achievedRate": round(achieved, 1),
        "updatesSent": pub.sent, "batches": pub.batches, "seconds": round(elapsed, 3),
        "publishers": publishers, "lanes": lanes, "jobs": jobs, "jobsPerUser": jobs_per_user,
        "perJobRate": round(o.rate / max(jobs, 1), 3), "maxLagMs": round(pub.max_lag * 1000, 1),
        "postMs": summary(pub.post_ms, 1.0, (50, 99)), "accepted": pub.accepted,
        "conflated": pub.conflated, "refused": pub.refused, "httpErrors": pub.http_errors,
        "rateLimited": pub.rate_limited, "problems": pub.samples}
    result["disconnects"] = {"every": o.disconnect_every, "intervalSeconds": o.disconnect_interval,
                             "forced": total.forced, "reconnected": total.reconnected,
                             "failed": total.forced - total.reconnected,
                             "reconnectMs": summary(total.reconnect_times, 1000, (50, 99))}
    measured = max(measured, 1e-9)
    result["measuredSeconds"] = round(measured, 3)
    result["processes"] = [
        {"name": w.name, "pid": w.pid, "role": w.role,
         "cpuSeconds": round(c1 - w.cpu0, 3),
         "cpuPercent": round(100 * (c1 - w.cpu0) / measured, 1),
         "rssMiB": round(r1, 1), "rssStartMiB": round(w.rss0, 1)}
        for w, c1, r1 in zip(watched, cpu1, rss1, strict=True)]
    server_cpu = sum(p["cpuSeconds"] for p in result["processes"] if p["role"] == "server")
    result["serverCpuUsPerEvent"] = (round(server_cpu * 1e6 / total.received, 1)
                                     if result["processes"] and total.received else None)
    result["loadgen"] = gen = loadgen_result(loadgen, measured)
    gen["cpuUsPerEvent"] = (round(gen["cpuSeconds"] * 1e6 / total.received, 1)
                            if total.received else None)
    result["problems"] = total.samples[:10]

    bottleneck, warnings = loadgen_bottlenecks(result["loadgen"], len(loadgen)), []
    publisher_busy = loadgen[0].cpu_seconds > SATURATED * measured
    if pub.sent and (achieved < 0.95 * o.rate or pub.max_lag > 0.5):
        who = ("the load generator (see its CPU)" if publisher_busy
               else "the server, or the network (see POST ms)")
        bottleneck.append(f"publishing fell behind schedule: {achieved:.0f} updates/s of "
                          f"{o.rate:g} wanted, batches up to {pub.max_lag * 1000:.0f} ms late; "
                          f"likely {who}")
    if o.spawn:
        warnings.append("the server was spawned on this machine and shares its CPUs with the "
                        "load generator")
    if total.connected < o.connections:
        warnings.append(f"only {total.connected} of {o.connections} connections were made "
                        f"({total.connect_failures} gave up); only their users were published to")
    if total.rate_limited:
        warnings.append(f"{total.rate_limited} connection attempts were rate-limited by the "
                        "server (429/4429) and retried: see the limits in --help")
    lost = max(0, expected - total.delivered)
    if lost or total.gaps or total.duplicates or total.foreign:
        warnings.append(f"{lost} events lost, seq gaps {total.gaps}, duplicates "
                        f"{total.duplicates}, foreign events {total.foreign}")
    if pub.refused or pub.http_errors:
        warnings.append(f"{pub.refused} updates refused, {pub.http_errors} batch requests "
                        f"failed ({pub.rate_limited} rate-limited)")
    if pub.conflated:
        warnings.append(f"{pub.conflated} updates were conflated (held back) by the server")
    if total.drops:
        warnings.append(f"{total.drops} connections were dropped by the server or the network "
                        "(not forced) and resumed")
    if total.errors:
        warnings.append(f"{total.errors} error messages received "
                        f"({total.cursor_expired} cursor_expired)")
    failed_reconnects = total.forced - total.reconnected
    if failed_reconnects:
        warnings.append(f"{failed_reconnects} of {total.forced} forced disconnects did not "
                        "reconnect in time")
    result["bottleneck"] = bottleneck
    result["warnings"] = warnings
    result["ok"] = not (lost or total.gaps or total.duplicates or total.foreign or pub.refused
                        or pub.http_errors or failed_reconnects or total.connect_failures
                        or total.connected < o.connections)
    return result


def parameters(o: Options) -> dict[str, Any]:
    """The options a result file records: all but the secret and the terminal's."""
    return {k: v for k, v in asdict(o).items()
            if k not in ("secret", "progress", "json", "json_path")}


def as_json(result: dict[str, Any]) -> str:
    return orjson.dumps(result).decode()


def _f(v: float | None, digits: int = 1) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def _pcts(s: dict[str, Any], keys: tuple[str, ...] = ("p50", "p95", "p99", "max")) -> str:
    return "  ".join(f"{k} {_f(s.get(k))}" for k in keys)


def human(r: dict[str, Any]) -> str:
    pub, disc, gen = r["publish"], r["disconnects"], r["loadgen"]
    verdict = "OK" if r["ok"] else "PROBLEMS"
    lines = [
        f"jobwire {r['title']}: {NAMES.get(r['transport'], r['transport'])} against "
        f"{', '.join(r['urls'])}  [{verdict}]",
        f"  connections {r['connected']}/{r['connections']} connected in "
        f"{r['rampSeconds']:.1f} s (users {r['userPrefix']}0..{r['connections'] - 1}, one "
        f"each); connect ms {_pcts(r['connectMs'], ('p50', 'p99', 'max'))}"
        + (f"; {r['rateLimitedConnects']} rate-limited retries"
           if r["rateLimitedConnects"] else ""),
        f"  publish     {pub['updatesSent']} updates in {pub['batches']} batches over "
        f"{pub['seconds']:.1f} s: {pub['achievedRate']:.0f}/s of {pub['targetRate']:g}/s "
        f"wanted ({pub['jobs']} jobs, {pub['jobsPerUser']} per user, {pub['publishers']} "
        f"publisher(s)); POST ms {_pcts(pub['postMs'], ('p50', 'p99', 'max'))}; "
        f"max {pub['maxLagMs']:.0f} ms behind schedule",
        f"  acks        accepted {pub['accepted']}, conflated {pub['conflated']}, refused "
        f"{pub['refused']}, failed batches {pub['httpErrors']}",
        f"  delivery    {r['eventsDelivered']}/{r['eventsExpected']} events delivered, "
        f"{r['eventsLost']} lost; seq gaps {r['seqGaps']}, duplicates {r['duplicates']}, "
        f"foreign {r['foreignEvents']}, error messages {r['errorMessages']}, "
        f"unexpected drops {r['unexpectedDrops']}",
        f"  latency ms  {_pcts(r['latencyMs'])}  (publish to receipt, n={r['latencyMs']['n']})",
    ]
    by = r["byTransport"]
    if len(by) > 1 or "poll" in by:
        for t, b in by.items():
            extra = (f", {b['superseded']} superseded between polls" if b["superseded"]
                     else "")
            lines.append(f"    {t:<9} {b['connected']} conns, {b['eventsDelivered']}/"
                         f"{b['eventsExpected']} delivered{extra}, gaps {b['seqGaps']}; "
                         f"latency ms {_pcts(b['latencyMs'])}")
    if disc["every"]:
        lines.append(f"  disconnects {disc['forced']} forced ({disc['every']} every "
                     f"{disc['intervalSeconds']:g} s), {disc['reconnected']} reconnected and "
                     f"resumed, {disc['failed']} not; reconnect ms "
                     f"{_pcts(disc['reconnectMs'], ('p50', 'p99', 'max'))}")
    for p in r["processes"]:
        lines.append(f"  {p['role']:<11} {p['name']} (pid {p['pid']}): CPU {p['cpuSeconds']:.2f} s "
                     f"over {r['measuredSeconds']:.1f} s ({p['cpuPercent']:.0f} % of a core), "
                     f"RSS {_f(p['rssMiB'])} MiB ({_f(p['rssStartMiB'])} MiB before)")
    if r["serverCpuUsPerEvent"] is not None:
        lines.append(f"  server CPU  {r['serverCpuUsPerEvent']:.0f} µs per received event")
    if not r["processes"]:
        lines.append("  server      CPU and memory not measured (give --server-pid PID when "
                     "the server runs on this machine)")
    lines.append(f"  loadgen     CPU {gen['cpuSeconds']:.2f} s ({gen['cpuPercent']:.0f} % of a "
                 f"core), event loop late ms {_pcts(gen['loopLagMs'], ('p50', 'p99', 'max'))}"
                 + (f"; {gen['cpuUsPerEvent']:.0f} µs per received event"
                    if gen["cpuUsPerEvent"] is not None else ""))
    if len(gen["processes"]) > 1:
        for p in gen["processes"]:
            lines.append(f"    {p['role']:<9} pid {p['pid']}"
                         + (f", {p['clients']} clients" if p["clients"] else "")
                         + f": CPU {p['cpuSeconds']:.2f} s ({p['cpuPercent']:.0f} %), loop "
                         f"late ms {_pcts(p['loopLagMs'], ('p50', 'p99', 'max'))}")
    lines += [f"  problem     {p}" for p in [*pub["problems"], *r["problems"]]]
    if r.get("serverLogTail"):
        lines.append("  server log  last lines:\n" + r["serverLogTail"])
    lines += [f"BOTTLENECK: {b}" for b in r["bottleneck"]]
    lines += [f"WARNING: {w}" for w in r["warnings"]]
    return "\n".join(lines)
