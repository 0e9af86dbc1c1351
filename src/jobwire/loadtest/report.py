"""The result as text for people, or as one JSON object."""

from __future__ import annotations

from typing import Any

import orjson

NAMES = {"ws": "WebSocket", "sse": "SSE", "longpoll": "long-polling", "poll": "polling",
         "mixed": "mixed (even split over ws, sse, longpoll, poll)"}


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
                 f"core), event loop late ms {_pcts(gen['loopLagMs'], ('p50', 'p99', 'max'))}")
    lines += [f"  problem     {p}" for p in [*pub["problems"], *r["problems"]]]
    if r.get("serverLogTail"):
        lines.append("  server log  last lines:\n" + r["serverLogTail"])
    lines += [f"BOTTLENECK: {b}" for b in r["bottleneck"]]
    lines += [f"WARNING: {w}" for w in r["warnings"]]
    return "\n".join(lines)
