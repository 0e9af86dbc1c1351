#!/usr/bin/env python3
"""Soak test: a long `jobwire loadtest` against one server on Redis, watching its memory.

It starts a private redis-server and one `jobwire serve` using it (the Redis broker, as in
production: the events, histories and job states live in Redis, so what the server holds is
its connections, subscriptions and buffers, and a leak there shows as rising RSS), then runs

    jobwire loadtest --url URL --connections 5000 --transport mixed --updates-per-second 1000
        --duration 3600s --disconnect-every 500 --disconnect-interval 180 --processes 2
        --server-pid PID --json FILE

and every --sample-every seconds reads the server's and Redis's RSS (/proc/<pid>/status
VmRSS), the server's open sessions and published events (/metrics) and the machine's load
average. The result file (--out, by default benchmarks/results/soak-<UTC time>.json) holds
those samples, the server's RSS at the start (the first sample once publishing has begun,
after the ramp-up), the middle and the end of publishing, its growth per hour (the least-squares
slope over the publishing samples), the delivery figures (delivered/expected, duplicates, seq
gaps, forced disconnects and reconnections) and the loadtest's whole result file. A PNG of the
server's RSS curve is drawn beside it (--plot: where; --plot-from FILE redraws one from a
result file).

    .venv/bin/python benchmarks/soak.py [--duration 3600] [--connections 5000] [--rate 1000]
        [--disconnect-interval 180] [--disconnect-every 500] [--processes 2]
        [--sample-every 10] [--out PATH] [--plot PATH]

The server under test has no per-address connection limit (JOBWIRE_MAX_CONNECTIONS_PER_SECOND_
PER_IP=0): every connection and reconnection comes from this one machine. A one-hour run is not
meant to hold the CPU lock other benchmarks take; the load average is recorded with every sample
instead, so a reader can see what else ran.

Exit status: 0 every expected event arrived once (no loss, duplicates or gaps) and every forced
disconnect resumed; 1 otherwise; 2 the soak could not run.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import os
import secrets
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path
from typing import Any

import httpx
import orjson

from jobwire.loadtest import procs, results

START_TIMEOUT = 30.0
# Every connection and reconnection comes from this one machine: no per-address limit.
SERVER_SETTINGS = {"JOBWIRE_MAX_CONNECTIONS_PER_SECOND_PER_IP": "0"}
DRAIN_WAIT = 120.0  # seconds allowed for the sessions to close once the load test ended


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--duration", type=float, default=3600, help="seconds of publishing "
                                                                "(default 3600)")
    p.add_argument("--connections", type=int, default=5000, help="readers (default 5000)")
    p.add_argument("--rate", type=float, default=1000, help="updates/s (default 1000)")
    p.add_argument("--transport", default="mixed", help="the readers' transport (default mixed)")
    p.add_argument("--disconnect-interval", type=float, default=180,
                   help="seconds between forced disconnects (default 180)")
    p.add_argument("--disconnect-every", type=int, default=0, metavar="N",
                   help="connections force-closed each time (default: a tenth of them)")
    p.add_argument("--processes", type=int, default=2, help="the load generator's reader "
                                                            "processes (default 2)")
    p.add_argument("--sample-every", type=float, default=10, help="seconds between memory "
                                                                  "samples (default 10)")
    p.add_argument("--plot", metavar="PATH", help="the RSS curve PNG (default: the result "
                                                  "file's path with .png)")
    p.add_argument("--plot-from", metavar="RESULT", help="only redraw the PNG of a result file")
    results.add_out_option(p)
    args = p.parse_args(argv)
    args.disconnect_every = args.disconnect_every or max(1, args.connections // 10)
    return args


def loadtest_command(args: argparse.Namespace, url: str, server_pid: int, out: Path
                     ) -> list[str]:
    return [sys.executable, "-m", "jobwire.cli", "loadtest", "--url", url,
            "--connections", str(args.connections), "--transport", args.transport,
            "--updates-per-second", f"{args.rate:g}", "--duration", f"{args.duration:g}s",
            "--disconnect-every", str(args.disconnect_every),
            "--disconnect-interval", f"{args.disconnect_interval:g}",
            "--processes", str(args.processes), "--connect-timeout", "300",
            "--server-pid", str(server_pid), "--json", str(out)]


def scrape(client: httpx.Client, url: str) -> dict[str, Any]:
    """Open sessions (in all, and by transport) and events published, from the server's
    /metrics (empty if it failed)."""
    out: dict[str, Any] = {"sessions": 0.0, "byTransport": {}}
    with contextlib.suppress(httpx.HTTPError):
        for line in client.get(url + "/metrics").text.splitlines():
            if line.startswith("jobwire_connections{"):
                labels, value = line.rsplit(" ", 1)
                out["sessions"] += float(value)
                out["byTransport"][labels.split('"')[1]] = int(float(value))
            elif line.startswith("jobwire_events_published_total "):
                out["published"] = float(line.rsplit(" ", 1)[1])
        return out
    return {}


def sample(t0: float, client: httpx.Client, url: str, server: int, redis: int
           ) -> dict[str, Any]:
    m = scrape(client, url)
    return {"t": round(time.monotonic() - t0, 1),
            "serverRssMiB": round(procs.rss_mib(server), 1),
            "redisRssMiB": round(procs.rss_mib(redis), 1),
            "sessions": int(m["sessions"]) if "sessions" in m else None,
            "sessionsByTransport": m.get("byTransport"),
            "published": int(m["published"]) if "published" in m else None,
            "loadAverage1m": os.getloadavg()[0]}


def publishing_window(samples: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The samples taken while publishing: from the first with events published (the ramp-up
    is over) to the last whose count still rose."""
    idx = [i for i, s in enumerate(samples) if s["published"]]
    if not idx:
        return []
    first = idx[0]
    last = max((i for i in idx if i > first and samples[i]["published"]
                > (samples[i - 1]["published"] or 0)), default=first)
    return samples[first:last + 1]


def slope_per_hour(points: list[tuple[float, float]]) -> float | None:
    """The least-squares slope of (seconds, MiB) points, in MiB per hour."""
    if len(points) < 2:
        return None
    n = len(points)
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    sxx = sum((x - mx) ** 2 for x, _ in points)
    if not sxx:
        return None
    return 3600 * sum((x - mx) * (y - my) for x, y in points) / sxx


def memory(window: list[dict[str, Any]], key: str) -> dict[str, Any]:
    """RSS at the start, middle and end of publishing, and its growth."""
    if not window:
        return {"startMiB": None, "middleMiB": None, "endMiB": None, "growthMiB": None,
                "growthMiBPerHour": None, "secondHalfGrowthMiBPerHour": None}
    start, end = window[0], window[-1]
    mid_t = (start["t"] + end["t"]) / 2
    middle = min(window, key=lambda s: abs(s["t"] - mid_t))
    slope = slope_per_hour([(s["t"], s[key]) for s in window])
    # The first minutes include the buffers and caches warming up: the second half's slope
    # is the one a leak cannot hide from.
    late = slope_per_hour([(s["t"], s[key]) for s in window if s["t"] >= middle["t"]])
    return {"startMiB": start[key], "startT": start["t"], "middleMiB": middle[key],
            "middleT": middle["t"], "endMiB": end[key], "endT": end["t"],
            "growthMiB": round(end[key] - start[key], 1),
            "growthMiBPerHour": None if slope is None else round(slope, 1),
            "secondHalfGrowthMiBPerHour": None if late is None else round(late, 1)}


def delivery(lt: dict[str, Any]) -> dict[str, Any]:
    disc = lt["disconnects"]
    return {"connected": lt["connected"], "connections": lt["connections"],
            "rampSeconds": lt["rampSeconds"], "updatesSent": lt["publish"]["updatesSent"],
            "achievedRate": lt["publish"]["achievedRate"],
            "eventsExpected": lt["eventsExpected"], "eventsDelivered": lt["eventsDelivered"],
            "eventsLost": lt["eventsLost"], "duplicates": lt["duplicates"],
            "seqGaps": lt["seqGaps"], "superseded": lt["superseded"],
            "unexpectedDrops": lt["unexpectedDrops"], "forcedDisconnects": disc["forced"],
            "reconnected": disc["reconnected"], "reconnectFailed": disc["failed"],
            "reconnectMs": disc["reconnectMs"], "latencyMs": lt["latencyMs"],
            "deliveredOnce": bool(lt["eventsDelivered"] == lt["eventsExpected"]
                                  and not lt["duplicates"] and not lt["seqGaps"]),
            "ok": bool(lt["ok"])}


def soak(args: argparse.Namespace, work: Path, stack: contextlib.ExitStack
         ) -> dict[str, Any]:
    """Start Redis and the server, run the loadtest while sampling, stop them; the figures."""
    redis_port, port = procs.free_ports(2)
    logs = {name: stack.enter_context((work / f"{name}.log").open("w+b"))
            for name in ("redis", "server", "loadtest")}
    redis = procs.start_redis(redis_port, str(work), logs["redis"])
    stack.callback(procs.stop_process, redis)
    procs.wait_redis(redis_port, redis, START_TIMEOUT)
    secret = secrets.token_urlsafe(32)
    # The server's own settings come from the environment start_server passes on.
    os.environ.update(SERVER_SETTINGS)
    redis_url = f"redis://127.0.0.1:{redis_port}/0"
    server = procs.start_server(port, secret, logs["server"], redis_url)
    stack.callback(procs.stop_process, server)  # callbacks run last first: before Redis
    url = f"http://127.0.0.1:{port}"
    procs.wait_healthy("server", url + "/readyz", server, START_TIMEOUT)

    out = work / "loadtest.json"
    env = {**os.environ, "JOBWIRE_SECRET": secret, "JOBWIRE_LOG_LEVEL": "warning"}
    cmd = loadtest_command(args, url, server.pid, out)
    samples: list[dict[str, Any]] = []
    with httpx.Client(timeout=5.0) as client:
        t0 = time.monotonic()
        gen = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, stdout=logs["loadtest"],
                               stderr=subprocess.STDOUT)
        stack.callback(procs.stop_process, gen)
        deadline = t0 + 3 * args.duration + 900
        while gen.poll() is None and time.monotonic() < deadline:
            samples.append(sample(t0, client, url, server.pid, redis.pid))
            print(f"soak: {samples[-1]}", file=sys.stderr, flush=True)
            with contextlib.suppress(subprocess.TimeoutExpired):
                gen.wait(args.sample_every)
        procs.stop_process(gen)
        ended = time.monotonic()
        # The clients are gone: the server should let go of every session (long-polls and
        # SSE streams notice a closed socket late) and of the memory they held.
        while True:
            after = sample(t0, client, url, server.pid, redis.pid)
            if after["sessions"] == 0 or time.monotonic() - ended > DRAIN_WAIT:
                break
            time.sleep(1.0)
        after["secondsAfterLoadtest"] = round(time.monotonic() - ended, 1)
    errors, tail = procs.log_tail(logs["server"])
    if not out.exists():
        _, gen_tail = procs.log_tail(logs["loadtest"])
        raise RuntimeError(f"the loadtest wrote no result (status {gen.returncode}):\n"
                           f"{gen_tail}\n--- server log ---\n{tail}")
    lt = orjson.loads(out.read_bytes())
    window = publishing_window(samples)
    samples.append(after)
    return {"serverSettings": SERVER_SETTINGS, "loadtestCommand": cmd,
            "loadtestStatus": gen.returncode,
            "serverRss": memory(window, "serverRssMiB"),
            "redisRss": memory(window, "redisRssMiB"),
            "afterLoadtest": after,
            "delivery": delivery(lt["result"]),
            "loadAverage1m": {"max": max(s["loadAverage1m"] for s in samples),
                              "mean": round(sum(s["loadAverage1m"] for s in samples)
                                            / len(samples), 2)},
            "serverLogErrors": errors, "serverLogTail": tail if errors else None,
            "samples": samples, "loadtest": lt}


# --- the RSS curve as a PNG, drawn here (no plotting library is a dependency) -------------

GLYPHS = {  # 3x5 pixels, rows top to bottom: the few characters the labels use
    "0": "111101101101111", "1": "010110010010111", "2": "111001111100111",
    "3": "111001111001111", "4": "101101111001001", "5": "111100111001111",
    "6": "111100111101111", "7": "111001001001001", "8": "111101111101111",
    "9": "111101111001111", ".": "000000000000010", " ": "000000000000000",
    "M": "101111111101101", "i": "010000010010010", "B": "110101110101110",
    "m": "000000111111101", "n": "000000110101101", "s": "000011100001110",
    "e": "000010111100011", "r": "000000110100100", "v": "000000101101010"}
WIDTH, HEIGHT, LEFT, RIGHT, TOP, BOTTOM = 900, 420, 70, 20, 40, 50
SERVER_COLOUR, MARK, GRID, INK = (31, 90, 180), (200, 60, 40), (225, 225, 225), (0, 0, 0)


class Canvas:
    def __init__(self, width: int, height: int):
        self.w, self.h = width, height
        self.px = bytearray(b"\xff" * (3 * width * height))

    def dot(self, x: int, y: int, c: tuple[int, int, int], size: int = 1) -> None:
        for dx in range(size):
            for dy in range(size):
                if 0 <= x + dx < self.w and 0 <= y + dy < self.h:
                    i = 3 * ((y + dy) * self.w + x + dx)
                    self.px[i:i + 3] = bytes(c)

    def line(self, x0: float, y0: float, x1: float, y1: float, c: tuple[int, int, int],
             size: int = 1) -> None:
        steps = max(1, int(max(abs(x1 - x0), abs(y1 - y0))))
        for k in range(steps + 1):
            self.dot(round(x0 + (x1 - x0) * k / steps), round(y0 + (y1 - y0) * k / steps),
                     c, size)

    def text(self, x: int, y: int, s: str, c: tuple[int, int, int] = INK, scale: int = 2
             ) -> None:
        for n, ch in enumerate(s):
            bits = GLYPHS.get(ch, GLYPHS[" "])
            for k, bit in enumerate(bits):
                if bit == "1":
                    self.dot(x + (4 * n + k % 3) * scale, y + k // 3 * scale, c, scale)

    def png(self) -> bytes:
        rows = b"".join(b"\x00" + bytes(self.px[3 * self.w * y:3 * self.w * (y + 1)])
                        for y in range(self.h))

        def chunk(kind: bytes, data: bytes) -> bytes:
            return (struct.pack(">I", len(data)) + kind + data
                    + struct.pack(">I", zlib.crc32(kind + data)))

        return (b"\x89PNG\r\n\x1a\n"
                + chunk(b"IHDR", struct.pack(">IIBBBBB", self.w, self.h, 8, 2, 0, 0, 0))
                + chunk(b"IDAT", zlib.compress(rows, 9)) + chunk(b"IEND", b""))


def nice_step(span: float, ticks: int = 6) -> float:
    raw = span / ticks
    magnitude = 10 ** len(str(int(raw))) / 10 if raw >= 1 else 1
    return next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)


def draw_rss(figures: dict[str, Any], path: Path) -> None:
    """The server's RSS in MiB over the run's minutes, from zero (so that a flat line looks
    flat), with the start, middle and end samples marked. Redis is left out: it keeps the
    events, and its growth by design would squash the server's line."""
    samples = [s for s in figures["samples"] if s["serverRssMiB"] == s["serverRssMiB"]]
    canvas = Canvas(WIDTH, HEIGHT)
    x_max = max(60.0, max((s["t"] for s in samples), default=60.0)) / 60
    y_max = 1.1 * max((s["serverRssMiB"] for s in samples), default=1.0)
    x_step, y_step = nice_step(x_max), nice_step(y_max)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def xy(t: float, mib: float) -> tuple[float, float]:
        return LEFT + plot_w * t / 60 / x_max, TOP + plot_h * (1 - mib / y_max)

    y = 0.0
    while y <= y_max:
        canvas.line(*xy(0, y), *xy(x_max * 60, y), GRID)
        canvas.text(8, round(xy(0, y)[1]) - 5, f"{y:g}")
        y += y_step
    x = 0.0
    while x <= x_max:
        canvas.line(*xy(x * 60, 0), *xy(x * 60, y_max), GRID)
        canvas.text(round(xy(x * 60, 0)[0]) - 6, HEIGHT - BOTTOM + 8, f"{x:g}")
        x += x_step
    canvas.line(LEFT, TOP, LEFT, TOP + plot_h, INK)
    canvas.line(LEFT, TOP + plot_h, LEFT + plot_w, TOP + plot_h, INK)
    canvas.text(8, 12, "MiB")
    canvas.text(LEFT + plot_w - 30, HEIGHT - 18, "min")
    points = [xy(s["t"], s["serverRssMiB"]) for s in samples]
    for a, b in itertools.pairwise(points):
        canvas.line(*a, *b, SERVER_COLOUR, 2)
    canvas.text(LEFT + 150, 15, "server", SERVER_COLOUR)
    rss = figures["serverRss"]
    for at in ("start", "middle", "end"):
        if rss.get(f"{at}T") is not None:
            x, y = xy(rss[f"{at}T"], rss[f"{at}MiB"])
            canvas.dot(round(x) - 4, round(y) - 4, MARK, 9)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(canvas.png())


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.plot_from:
        rec = orjson.loads(Path(args.plot_from).read_bytes())
        png = Path(args.plot or Path(args.plot_from).with_suffix(".png"))
        draw_rss(rec["result"], png)
        print(f"soak: plot written to {png}", file=sys.stderr)
        return 0
    record = results.Run("soak", {k: v for k, v in vars(args).items()
                                  if k not in ("out", "plot", "plot_from")}
                         | {"broker": "redis"})
    with tempfile.TemporaryDirectory(prefix="soak-") as tmp, contextlib.ExitStack() as stack:
        try:
            figures = soak(args, Path(tmp), stack)
        except RuntimeError as exc:
            print(f"soak: {exc}", file=sys.stderr)
            return 2
    path = record.save(figures, args.out)
    png = Path(args.plot or path.with_suffix(".png"))
    draw_rss(figures, png)
    d, rss = figures["delivery"], figures["serverRss"]
    print(f"soak: server RSS {rss['startMiB']} → {rss['middleMiB']} → {rss['endMiB']} MiB "
          f"({rss['growthMiBPerHour']} MiB/h); {d['eventsDelivered']}/{d['eventsExpected']} "
          f"delivered, duplicates {d['duplicates']}, gaps {d['seqGaps']}, reconnected "
          f"{d['reconnected']}/{d['forcedDisconnects']}; plot {png}", file=sys.stderr)
    return 0 if d["ok"] and d["deliveredOnce"] else 1


if __name__ == "__main__":
    sys.exit(main())
