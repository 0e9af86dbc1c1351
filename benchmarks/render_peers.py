"""The compare_peers.py parts of BENCHMARKS.md and README.md, for benchmarks/render.py: the
section (a table per load with jobwire and Node socket.io side by side, then every run), the
rows of the targets table, and the README's line.

Result files from before `--loads` hold the 10-ms batch load only (their runs have no "load");
they render as they always did, so the committed documents stay what they were."""

from __future__ import annotations

from typing import Any

from compare.report import IDLE_TARGET, JOBWIRE, NODE, TARGETS, load_of, target_for
from render import (
    NONE,
    PEER_TARGETS,
    commit,
    f,
    link,
    n,
    named,
    newest,
    nothing,
    ratio,
    table,
    verdict,
    when,
)

Record = dict[str, Any]
Run = dict[str, Any]

LOAD_TEXT = {
    "batch10": "an HTTP batch every 10 ms, one request in flight",
    "batch1": "an HTTP batch every 1 ms, up to 8 requests in flight (so a batch holds 1 ms "
              "of updates whatever the server's answer time)",
    "single": "one update per HTTP request, from {workers} keep-alive connections",
    "direct": "the publisher writes straight into Redis (jobwire's Redis broker, Socket.IO's "
              "Redis emitter): the server only fans out",
    "idle": "{idle_clients} connections: nothing published for {idle_seconds:g} s, then "
            "{idle_rate:,.0f} updates/s in 10-ms batches",
}


def newest_peers(records: list[Record]) -> Record | None:
    """The newest measured comparison (a --profile run's CPU figures include the sampling)."""
    return newest([r for r in named(records, "compare_peers") if not profiled(r)])


def profiled(rec: Record) -> bool:
    return any("profile" in r for r in rec["result"]["runs"])


def under_test(rec: Record) -> str | None:
    """The commit of the jobwire that ran: the checkout it was imported from (PYTHONPATH may
    point at another tree's src/, for a before/after comparison)."""
    return rec["source"].get("commit") or None


def runs(rec: Record, load: str | None = None) -> list[Run]:
    return [r for r in rec["result"]["runs"] if load is None or load_of(r) == load]


def has_loads(rec: Record) -> bool:
    return any("load" in r for r in runs(rec))


def peer_ratios(rec: Record, load: str = "batch10"
                ) -> list[tuple[str, float, str, float, float, float]]:
    """(mode, rate, peer, jobwire µs, peer µs, jobwire / peer) for every pair of the load."""
    keyed = {(r["server"], r["mode"], r["targetRate"]): r["serverCpuUsPerMessage"]
             for r in runs(rec, load)}
    out = []
    for (server, mode, rate), us in keyed.items():
        if server != JOBWIRE or not us:
            continue
        for peer in (NODE, "python-socketio"):
            other = keyed.get((peer, mode, rate))
            if other:
                out.append((mode, rate, peer, us, other, us / other))
    return out


# --- the section --------------------------------------------------------------------------

def block_peers(records: list[Record]) -> str:
    rec = newest_peers(records)
    if rec is None:
        return nothing("benchmarks/compare_peers.py")
    versions = ", ".join(f"{k.split(':', 1)[-1]} {v}" for k, v in
                         rec["machine"].get("peers", {}).items())
    head = f"{when(rec)}, jobwire at {commit(rec)}; {versions}."
    if not has_loads(rec):
        return f"{head}\n\n{every_run(rec)}\n\n{legacy_ratios(rec)}"
    loads = list(dict.fromkeys(load_of(r) for r in runs(rec)))
    parts = [head] + [side_by_side(rec, load) for load in loads]
    skipped = rec["result"].get("skipped") or []
    if skipped:
        parts.append("Not measured: " + "; ".join(skipped) + ".")
    parts.append("Every run:\n\n" + every_run(rec))
    parts.append(before_after(records, rec))
    parts.append(commit_cost(records))
    parts.append(profiles(records, rec))
    return "\n\n".join(p for p in parts if p)


def earlier_jobwire(records: list[Record], rec: Record, with_profile: bool) -> Record | None:
    """The newest comparison of an earlier jobwire (another commit under test) on this
    harness, measured or profiled."""
    now = under_test(rec)
    return newest([r for r in named(records, "compare_peers")
                   if has_loads(r) and profiled(r) == with_profile
                   and under_test(r) not in (None, now)])


def before_after(records: list[Record], rec: Record) -> str:
    """jobwire's own figures, the same loads on the same harness, before and now."""
    before = earlier_jobwire(records, rec, with_profile=False)
    if before is None:
        return ""
    now = {(load_of(r), r["mode"], r["targetRate"]): r for r in runs(rec)
           if r["server"] == JOBWIRE}
    rows = []
    for r in runs(before):
        after = now.get((load_of(r), r["mode"], r["targetRate"]))
        if r["server"] != JOBWIRE or after is None:
            continue
        rows.append([load_of(r), r["mode"], n(r["targetRate"]),
                     f"{n(r['achievedRate'])} → {n(after['achievedRate'])}",
                     f"{f(r['serverCpuUsPerMessage'])} → **{f(after['serverCpuUsPerMessage'])}**",
                     f"{f(r.get('redisCpuUsPerMessage'))} → "
                     f"**{f(after.get('redisCpuUsPerMessage'))}**",
                     f"{script_calls(r)} → {script_calls(after)}",
                     f"{link(before)} → {link(rec)}"])
    if not rows:
        return ""
    return (f"jobwire before and after, the same loads on this harness: jobwire at "
            f"`{(under_test(before) or '')[:7]}` then `{(under_test(rec) or '')[:7]}`.\n\n"
            + table(["load", "mode", "updates/s", "achieved/s", "server CPU µs / message",
                     "Redis CPU µs / message", "Redis script calls / message",
                     "result files"], rows))


def commit_pair(records: list[Record]) -> tuple[Record, Record] | None:
    """The newest benchmarks/redis_commit_cost.py result, and the newest one before it of
    another commit (the version it improves on)."""
    costs = named(records, "redis_commit_cost")
    now = newest(costs)
    if now is None:
        return None
    before = newest([r for r in costs if r["source"].get("commit") != now["source"].get("commit")
                     and r["startedAt"] < now["startedAt"]])
    return (before, now) if before else None


def commit_cost(records: list[Record]) -> str:
    """Redis's CPU per update of the commit alone (no HTTP, no fan-out), before and now."""
    pair = commit_pair(records)
    if pair is None:
        return ""
    before, now = pair
    old = {r["batch"]: r for r in before["result"]["rows"]}
    rows = []
    for r in now["result"]["rows"]:
        b = old.get(r["batch"])
        if b is None:
            continue
        calls = [sum(v["calls"] for k, v in x["redisCommandsPerUpdate"].items()
                     if k in ("evalsha", "hmget", "hget")) for x in (b, r)]
        rows.append([n(r["batch"]),
                     f"{f(b['redisCpuUsPerUpdate'])} → **{f(r['redisCpuUsPerUpdate'])}**",
                     judged(quotient(r["redisCpuUsPerUpdate"], b["redisCpuUsPerUpdate"]), None),
                     f"{f(b['publisherCpuUsPerUpdate'])} → {f(r['publisherCpuUsPerUpdate'])}",
                     f"{calls[0]:.2f} → {calls[1]:.2f}", f"{link(before)} → {link(now)}"])
    return ("The commit alone (benchmarks/redis_commit_cost.py: the Redis broker's "
            "`publish_many` into a private Redis with one subscriber, batches of each size, no "
            f"HTTP and no fan-out), jobwire at {commit(before)} then {commit(now)}:\n\n"
            + table(["updates per batch", "Redis CPU µs / update", "after / before",
                     "publisher CPU µs / update", "Redis reads and script calls / update "
                     "(EVALSHA, HMGET, HGET outside and inside scripts)", "result files"], rows))


def commit_cost_rows(records: list[Record]) -> list[list[str]]:
    """The target "Redis CPU per update halved", judged on the commit alone."""
    pair = commit_pair(records)
    if pair is None:
        return []
    before, now = pair
    old = {r["batch"]: r["redisCpuUsPerUpdate"] for r in before["result"]["rows"]}
    points = [(r["batch"], old[r["batch"]], r["redisCpuUsPerUpdate"])
              for r in now["result"]["rows"] if r["batch"] in old]
    return [["Redis CPU per update of jobwire's commit halved",
             "; ".join(f"batches of {n(batch)}: {f(a)} → {f(b)} µs ({ratio(b / a)})"
                       for batch, a, b in points),
             f"{link(before)}, {link(now)}",
             verdict([(f"batches of {n(batch)}", b <= a / 2) for batch, a, b in points])]]


def script_calls(r: Run) -> str:
    calls = (r.get("redisCommandsPerMessage") or {}).get("evalsha", {}).get("calls")
    return NONE if calls is None else f"{calls:.2f}"


def profiles(records: list[Record], rec: Record) -> str:
    """Where jobwire's server CPU goes (py-spy, --profile runs), before and now."""
    after = newest([r for r in named(records, "compare_peers") if profiled(r)
                    and under_test(r) == under_test(rec)])
    before = earlier_jobwire(records, rec, with_profile=True)
    rows = []
    for label, prof in (("before", before), ("now", after)):
        for r in runs(prof) if prof else []:
            if "profile" not in r:
                continue
            top = r["profile"]["selfByModule"][:6]
            mine = r["profile"]["inclusiveByJobwireFunction"][:4]
            rows.append([label, load_of(r), n(r["targetRate"]),
                         f"{f(r['serverCpuUsPerMessage'])}",
                         "; ".join(f"{m['module']} {m['percent']:.0f} %" for m in top),
                         "; ".join(f"{m['function']} {m['percent']:.0f} %" for m in mine),
                         link(prof)])
    if not rows:
        return ""
    return ("Where jobwire's server CPU goes (py-spy over 5 s of publishing; with the sampling "
            "running, so CPU per message is a little higher than in the runs above):\n\n"
            + table(["jobwire", "load", "updates/s", "CPU µs / message",
                     "own time by module (top 6)", "inclusive, jobwire functions (top 4)",
                     "result file"], rows))


def every_run(rec: Record) -> str:
    loads = has_loads(rec)
    rows = []
    for r in runs(rec):
        lat, con = r["latencyMs"], r["connectMs"]
        rows.append(([load_of(r)] if loads else [])
                    + [r["mode"], n(r["targetRate"]), r["server"], n(r["achievedRate"]),
                       f"{n(r['delivered'])} / {n(r['expected'])}",
                       f"{f(lat['p50'])} / {f(lat['p99'])}", f"{r['serverCpuPercent']:.0f} %",
                       f"**{f(r['serverCpuUsPerMessage'])}**"]
                    + ([f(r.get("redisCpuUsPerMessage"))] if loads else [])
                    + [f"{r['rssPerConnectionKiB']:.1f}", f"{f(con['p50'])} / {f(con['p99'])}",
                       "; ".join(r["notes"]) or "", link(rec)])
    return table((["load"] if loads else [])
                 + ["mode", "updates/s", "server", "achieved/s", "delivered / expected",
                    "p50 / p99 ms", "server CPU", "**CPU µs / message**"]
                 + (["Redis CPU µs / message"] if loads else [])
                 + ["RSS / idle connection KiB", "connect p50 / p99 ms", "notes", "result file"],
                 rows)


def legacy_ratios(rec: Record) -> str:
    return table(["mode, updates/s", "peer", "jobwire / peer CPU per message", "target",
                  "met?"],
                 [[f"{mode}, {n(rate)}", peer, f"{f(us)} / {f(other)} µs = **{ratio(x)}**",
                   f"≤ {ratio(most)}", "yes" if x <= most else "no"]
                  for mode, rate, peer, us, other, x in peer_ratios(rec)
                  for most in [PEER_TARGETS[peer]]])


def quotient(us: float | None, other: float | None) -> float | None:
    return us / other if us is not None and other else None


def judged(x: float | None, most: float | None) -> str:
    if x is None:
        return NONE
    return f"**{ratio(x)}**" + ("" if most is None else
                                f" (≤ {ratio(most)}: {'yes' if x <= most else 'no'})")


def side_by_side(rec: Record, load: str) -> str:
    """jobwire and Node socket.io at each mode and rate of one load."""
    keyed = {(r["server"], r["mode"], r["targetRate"]): r for r in runs(rec, load)}
    idle = load == "idle"
    rows = []
    for (server, mode, rate), jw in keyed.items():
        if server != JOBWIRE:
            continue
        node: Run = keyed.get((NODE, mode, rate)) or {}
        us, them = jw["serverCpuUsPerMessage"], node.get("serverCpuUsPerMessage")
        row = [mode, n(rate), f"{n(jw['delivered'])} / {n(jw['expected'])}",
               f"{n(node['delivered'])} / {n(node['expected'])}" if node else NONE,
               f"{f(jw['latencyMs']['p99'])} / {f(node['latencyMs']['p99'])}" if node
               else f(jw["latencyMs"]["p99"]), f(us), f(them),
               judged(quotient(us, them), target_for(load, NODE, rate)),
               f(jw.get("redisCpuUsPerMessage")), f(node.get("redisCpuUsPerMessage"))]
        if idle:
            a, b = (jw.get("idleCpuUsPerConnectionSecond"),
                    node.get("idleCpuUsPerConnectionSecond"))
            row[2:2] = [fine(a), fine(b), judged(quotient(a, b), IDLE_TARGET)]
        rows.append([*row, link(rec)])
    head = ["mode", "updates/s", "delivered / expected: jobwire", "Node",
            "p99 ms: jobwire / Node", "CPU µs / message: jobwire", "Node",
            "jobwire / Node", "Redis CPU µs / message: jobwire", "Node", "result file"]
    if idle:
        head[2:2] = ["idle CPU µs / connection-second: jobwire", "Node", "jobwire / Node"]
    text = LOAD_TEXT[load].format(**rec["parameters"]) if load in LOAD_TEXT else load
    return f"**{load}**: {text}.\n\n" + table(head, rows)


def fine(v: float | None) -> str:
    """A small figure (idle CPU per connection-second) with the decimals it needs."""
    return NONE if v is None else f"{v:.3f}" if v < 1 else f(v)


# --- the targets table and the README -----------------------------------------------------

def target_rows(rec: Record) -> list[list[str]]:
    """jobwire's CPU per message against each peer's, load by load (10-ms batches first, as
    in result files from before --loads), and per idle connection-second."""
    rows = []
    for load in dict.fromkeys(["batch10", *(load_of(r) for r in runs(rec))]):
        for peer in TARGETS.get(load, {}):
            pairs = [x for x in peer_ratios(rec, load) if x[2] == peer]
            goals = {target_for(load, peer, rate) for _, rate, *_ in pairs}
            if not pairs or goals == {None}:
                continue
            what = (f"server CPU per WebSocket message ≤ {ratio(PEER_TARGETS[peer])} x "
                    f"{peer}'s" if load == "batch10" else
                    f"{load}: server CPU per WebSocket message ≤ "
                    + " / ".join(f"{ratio(g)}" for g in sorted(g for g in goals if g))
                    + f" x {peer}'s")
            rows.append([what, "; ".join(f"{mode} {n(rate)}/s: {f(us)} / {f(other)} µs = "
                                         f"{ratio(x)}" for mode, rate, _, us, other, x in pairs),
                         link(rec), verdict_text(load, peer, pairs)])
    idle = [(r, o) for r in runs(rec, "idle") if r["server"] == JOBWIRE
            for o in runs(rec, "idle") if o["server"] == NODE and o["mode"] == r["mode"]
            and "idleCpuUsPerConnectionSecond" in r]
    if idle:
        ratios = [(r["mode"], quotient(r["idleCpuUsPerConnectionSecond"],
                                       o["idleCpuUsPerConnectionSecond"])) for r, o in idle]
        rows.append([f"idle: server CPU per idle connection-second ≤ {ratio(IDLE_TARGET)} x "
                     f"{NODE}'s",
                     "; ".join(f"{r['mode']}: {fine(r['idleCpuUsPerConnectionSecond'])} / "
                               f"{fine(o['idleCpuUsPerConnectionSecond'])} µs" for r, o in idle),
                     link(rec), verdict([(mode, x is not None and x <= IDLE_TARGET)
                                         for mode, x in ratios])])
    return rows


def verdict_text(load: str, peer: str,
                 pairs: list[tuple[str, float, str, float, float, float]]) -> str:
    """Each point with a target: met or not."""
    return verdict([(f"{mode} {n(rate)}/s", x <= most)
                    for mode, rate, _, _, _, x in pairs
                    for most in [target_for(load, peer, rate)] if most is not None])


def readme_line(rec: Record) -> str:
    """CPU per delivered message (and per idle connection-second), jobwire against Node
    socket.io, load by load; result files from before --loads: the 10-ms batch load, every
    server side by side."""
    if has_loads(rec):
        return loads_line(rec)
    cpu = {(r["server"], r["mode"], r["targetRate"]): r["serverCpuUsPerMessage"]
           for r in runs(rec, "batch10")}
    points = sorted({(mode, rate) for _, mode, rate in cpu}, key=lambda k: (k[0], -k[1]))
    if not points:
        return ""
    return ("\n\nServer CPU per delivered message, side by side on one workload "
            f"({n(rec['parameters']['clients'])} clients, one core; {link(rec)}): "
            + "; ".join(f"{mode} at {n(rate)}/s: "
                        + ", ".join(f"{server} {f(us)} µs" for (server, m, r), us in
                                    cpu.items() if (m, r) == (mode, rate))
                        for mode, rate in points) + ".")


def loads_line(rec: Record) -> str:
    parts = []
    for load in dict.fromkeys(load_of(r) for r in runs(rec)):
        pairs = [x for x in peer_ratios(rec, load) if x[2] == NODE]
        if pairs:
            parts.append(f"{load}: " + ", ".join(f"{mode} {n(rate)}/s {f(us)} / {f(other)} µs "
                                                 f"({ratio(x)} x)"
                                                 for mode, rate, _, us, other, x in pairs))
    idle = [(r, o) for r in runs(rec, "idle") if r["server"] == JOBWIRE
            for o in runs(rec, "idle") if o["server"] == NODE and o["mode"] == r["mode"]
            and "idleCpuUsPerConnectionSecond" in r]
    for r, o in idle:
        a, b = r["idleCpuUsPerConnectionSecond"], o["idleCpuUsPerConnectionSecond"]
        parts.append(f"idle {r['mode']}: {fine(a)} / {fine(b)} µs per connection-second"
                     f" ({ratio(quotient(a, b))} x)" if b else f"idle {r['mode']}: {fine(a)} µs "
                     "per connection-second")
    if not parts:
        return ""
    return ("\n\nServer CPU per delivered message, jobwire / Node socket.io on the same load "
            f"and core ({n(rec['parameters']['clients'])} clients; loads and targets in "
            f"BENCHMARKS.md; {link(rec)}): " + "; ".join(parts) + ".")
