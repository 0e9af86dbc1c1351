#!/usr/bin/env python3
"""Where the server's CPU goes while it delivers: py-spy samples of a loaded `jobwire serve`.

Starts a private `jobwire serve` (in-process broker, connection rate limits off), runs
`jobwire loadtest --url ... --server-pid ...` against it (N WebSocket clients, R updates/s
for D seconds, readers in --processes worker processes), and once the server has accepted
its first published update, samples it with `py-spy record --nonblocking --nolineno
--format raw` for the publishing time. Samples of an idle server thread are not recorded,
so shares of samples are shares of the server's CPU. Two views:

- self: the innermost Python frame of each sample, by module (a jobwire module, or the library
  or standard module it is in): the time spent in that code and in the C it calls (the
  socket's send under a jobwire write, for instance);
- inclusive: for jobwire's busiest functions, the share of samples they are on the stack of.

It also times JWT verification (`JwtAuth.verify`, HS256, as every connection does once) in
this process. py-spy is installed, pinned, into its own virtualenv (/tmp/jobwire-bench-tools),
not into the project's. The result file (--out, default benchmarks/results/cpu_profile-<UTC
time>.json) holds both views, the JWT figure, py-spy's sample counts and the load test's own
result file.

    .venv/bin/python benchmarks/cpu_profile.py [--clients 1000] [--rate 10000] [--duration 15]
        [--processes 2] [--sample-rate 200] [--out PATH]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import secrets
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import orjson

from jobwire.auth import JwtAuth
from jobwire.loadtest import procs, results

PY_SPY = "py-spy==0.4.3"
TOOLS = Path("/tmp/jobwire-bench-tools")  # a virtualenv of our own: never the project's
PUBLISHED = re.compile(rb"^jobwire_events_published_total (\S+)$", re.M)
FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^()]*)\)$")
TOP_FUNCTIONS = 15
EVENT_LOOP = "asyncio/runners.py"
ENTRY = {"jobwire/cli.py", "jobwire/server.py"}  # under every sample: no information
JWT_ITERATIONS = 5000


def py_spy() -> Path:
    """py-spy from our tools venv, installed on first use (and when the pin changes)."""
    exe, stamp = TOOLS / "bin" / "py-spy", TOOLS / ".py-spy-stamp"
    if not exe.exists() or not stamp.exists() or stamp.read_text() != PY_SPY:
        if not (TOOLS / "bin" / "python").exists():
            subprocess.run([sys.executable, "-m", "venv", str(TOOLS)], check=True)
        subprocess.run([str(TOOLS / "bin" / "pip"), "install", "-q", PY_SPY], check=True,
                       stdout=sys.stderr)
        stamp.write_text(PY_SPY)
    return exe


def published(client: httpx.Client, url: str) -> float:
    m = PUBLISHED.search(client.get(url + "/metrics").content)
    return float(m.group(1)) if m else 0.0


def wait_for_publishing(url: str, loadtest: subprocess.Popen[bytes], timeout: float) -> bool:
    """Until the server has accepted an update (the ramp-up is over), or the load test ended."""
    deadline = time.monotonic() + timeout
    with httpx.Client(timeout=2.0) as client:
        while time.monotonic() < deadline and loadtest.poll() is None:
            if published(client, url) > 0:
                return True
            time.sleep(0.1)
    return False


def module_of(path: str) -> str:
    """`jobwire/hub.py` for jobwire's files, `asyncio/runners.py` (the frame under which
    uvloop's C loop runs) as it is, and the package or stdlib module for the others. py-spy
    gives paths relative to the import root they were found under: `uvicorn/protocols/...`."""
    parts = Path(path).parts
    if "site-packages" in parts:
        parts = parts[parts.index("site-packages") + 1:]
    if "jobwire" in parts:
        return "/".join(parts[parts.index("jobwire"):])
    if path.endswith(EVENT_LOOP):
        return EVENT_LOOP
    return parts[0].removesuffix(".py") if parts else path


def parse_stacks(raw: str) -> list[tuple[list[tuple[str, str]], int]]:
    """py-spy's raw (collapsed) output: `frame;frame;... count`, root first; each frame
    `function (file)` (the process and thread pseudo-frames are dropped)."""
    stacks = []
    for line in raw.splitlines():
        frames_text, _, count = line.rpartition(" ")
        if not frames_text or not count.isdigit():
            continue
        frames = [(m["func"], m["file"]) for f in frames_text.split(";")
                  if (m := FRAME.match(f)) and m["file"].endswith(".py")]
        stacks.append((frames, int(count)))
    return stacks


def shares(stacks: list[tuple[list[tuple[str, str]], int]]) -> dict[str, Any]:
    total = sum(n for _, n in stacks) or 1
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    outside = 0
    for frames, n in stacks:
        own[module_of(frames[-1][1]) if frames else "(no Python frame)"] += n
        mine = {f"{func} ({module_of(file)})" for func, file in frames
                if module_of(file).startswith("jobwire/") and module_of(file) not in ENTRY}
        for name in mine:
            inclusive[name] += n
        outside += 0 if mine else n

    def pct(n: int) -> float:
        return round(100 * n / total, 1)

    return {"samples": total,
            "selfByModule": [{"module": m, "percent": pct(n)} for m, n in own.most_common()],
            "inclusiveByJobwireFunction": [{"function": f, "percent": pct(n)}
                                           for f, n in inclusive.most_common(TOP_FUNCTIONS)],
            "outsideJobwirePercent": pct(outside)}


def jwt_verify_us(iterations: int = JWT_ITERATIONS) -> float:
    """µs per first verification of a token (the server caches verified tokens, so each of
    these is new, as each connecting user's is)."""
    auth = JwtAuth(secret=secrets.token_urlsafe(32), algorithm="HS256")
    tokens = [auth.mint(f"profile-user-{i}", "user", ttl=3600) for i in range(iterations)]
    t0 = time.perf_counter()
    for token in tokens:
        auth.verify(token)
    return round((time.perf_counter() - t0) * 1e6 / iterations, 1)


def profile(args: argparse.Namespace, spy: Path, tmp: Path) -> dict[str, Any]:
    secret = secrets.token_urlsafe(32)
    cluster = procs.Cluster()
    with contextlib.ExitStack() as stack:
        procs.start_cluster(cluster, 1, secret, stack)
        server = cluster.servers[0]
        load_file, raw_file = tmp / "loadtest.json", tmp / "py-spy.txt"
        load = subprocess.Popen(
            [sys.executable, "-m", "jobwire.cli", "loadtest", "--url", server.url,
             "--server-pid", str(server.pid), "--connections", str(args.clients),
             "--updates-per-second", f"{args.rate:g}", "--duration", f"{args.duration:g}",
             "--processes", str(args.processes), "--json", str(load_file)],
            env={**os.environ, "JOBWIRE_SECRET": secret}, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE)
        stack.callback(procs.stop_process, load)
        if not wait_for_publishing(server.url, load, timeout=120):
            raise RuntimeError("the load test never published: "
                               + load.communicate()[1].decode(errors="replace")[-2000:])
        seconds = max(1, int(args.duration) - 1)  # inside the publishing time
        cpu0 = procs.cpu_seconds(server.pid)
        spied = subprocess.run(
            [str(spy), "record", "--pid", str(server.pid), "--rate", str(args.sample_rate),
             "--duration", str(seconds), "--nonblocking", "--nolineno", "--format", "raw",
             "--output", str(raw_file)], capture_output=True, check=False)
        cpu = procs.cpu_seconds(server.pid) - cpu0
        _, err = load.communicate(timeout=3 * args.duration + 120)
        if spied.returncode or not raw_file.exists():
            raise RuntimeError("py-spy failed: " + spied.stderr.decode(errors="replace"))
        if not load_file.exists():
            raise RuntimeError("the load test failed: " + err.decode(errors="replace")[-2000:])
    found = shares(parse_stacks(raw_file.read_text()))
    found["pySpy"] = {"version": PY_SPY.split("==")[1], "sampleRate": args.sample_rate,
                      "seconds": seconds, "serverCpuSecondsWhileSampling": round(cpu, 2),
                      "busyShareOfSamples": round(found["samples"]
                                                  / (args.sample_rate * seconds), 3)}
    found["jwtVerifyUs"] = jwt_verify_us()
    found["loadtest"] = orjson.loads(load_file.read_bytes())
    return found


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--clients", type=int, default=1000, help="WebSocket clients (default 1000)")
    p.add_argument("--rate", type=float, default=10000, help="updates/s (default 10000)")
    p.add_argument("--duration", type=float, default=15, help="seconds (default 15)")
    p.add_argument("--processes", type=int, default=2, help="reader processes (default 2)")
    p.add_argument("--sample-rate", type=int, default=200, help="py-spy samples/s (default 200)")
    results.add_out_option(p)
    args = p.parse_args()
    spy = py_spy()
    os.environ.update({"JOBWIRE_MAX_CONNECTIONS_PER_SECOND_PER_IP": "0",
                       "JOBWIRE_MAX_CONNECTIONS_PER_SECOND_PER_USER": "0",
                       "JOBWIRE_LOG_LEVEL": "warning"})
    run = results.Run("cpu_profile", {k: v for k, v in vars(args).items() if k != "out"})
    with tempfile.TemporaryDirectory(prefix="jobwire-profile-") as tmp:
        found = profile(args, spy, Path(tmp))
    run.save(found, args.out)
    print(f"{found['samples']} samples; self by module:")
    for row in found["selfByModule"][:12]:
        print(f"  {row['percent']:5.1f} %  {row['module']}")
    print("inclusive, jobwire functions:")
    for row in found["inclusiveByJobwireFunction"]:
        print(f"  {row['percent']:5.1f} %  {row['function']}")
    print(f"JWT verification: {found['jwtVerifyUs']} µs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
