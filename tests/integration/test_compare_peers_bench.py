"""benchmarks/compare_peers.py, shortened: every load on tiny settings against jobwire and Node
socket.io on a private Redis (real processes: redis-server, `jobwire serve`, node, the Redis
emitter), with the result file in a temporary folder. Checks that what it measures is whole
and that every comparison is made, not how fast anything is."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LOADS = ("batch10", "batch1", "single", "direct", "idle")
SERVERS = ("jobwire", "Node socket.io")

pytestmark = [pytest.mark.bench, pytest.mark.skipif(
    not all(shutil.which(p) for p in ("redis-server", "node", "npm")),
    reason="needs redis-server, node and npm")]


@pytest.mark.timeout(180)  # npm ci of benchmarks/peers on a clean checkout, then ~30 s
def test_every_load_delivers_everything_and_is_compared(tmp_path: Path) -> None:
    out = tmp_path / "compare_peers.json"
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "compare_peers.py"),
         "--loads", ",".join(LOADS), "--clients", "20", "--idle-clients", "50",
         "--idle-seconds", "1", "--rates", "200", "--duration", "1", "--settle", "0.2",
         "--drain", "5", "--workers", "10", "--modes", "redis",
         "--servers", "jobwire,node", "--out", str(out)],
        capture_output=True, text=True, timeout=170, check=False)
    assert done.returncode == 0, done.stderr[-3000:]

    rec = json.loads(out.read_text())
    assert rec["name"] == "compare_peers"
    runs = rec["result"]["runs"]
    assert sorted((r["load"], r["server"]) for r in runs) == sorted(
        (load, server) for load in LOADS for server in SERVERS)
    for r in runs:
        what = (r["load"], r["server"])
        assert r["mode"] == "redis"
        assert r["connected"] == r["clients"] == (50 if r["load"] == "idle" else 20), what
        assert r["expected"] == r["sent"] > 0, (what, r["notes"])
        assert r["delivered"] == r["expected"], (what, r["notes"])
        assert r["gaps"] == r["duplicates"] == r["refused"] == 0, (what, r["notes"])
        assert r["serverCpuUsPerMessage"] is not None and r["redisCpuUsPerMessage"] is not None
        assert r["latencyMs"]["n"] == r["delivered"], what
    for r in (r for r in runs if r["load"] == "idle"):
        assert r["targetRate"] == 1000  # --idle-rate's default, not --rates
        assert r["idleSeconds"] == 1
        assert r["idleCpuUsPerConnectionSecond"] >= 0 and r["idleCpuPercent"] >= 0

    lines = rec["result"]["verdicts"]
    for load in LOADS:
        assert any(line.startswith(f"{load}, redis") and "Redis CPU per message" in line
                   for line in lines), (load, lines)
    for load, what in (("direct", "CPU per message"), ("batch1", "CPU per message"),
                       ("idle", "idle CPU per connection-second")):
        assert any(line.startswith(f"{load}, redis") and f"jobwire / Node socket.io {what}"
                   in line for line in lines), (load, lines)
    assert any("target ≤ 1.00" in line for line in lines if line.startswith("direct"))
    assert any("target ≤ 1.00" in line for line in lines if line.startswith("idle"))
