"""The soak benchmark (benchmarks/soak.py), shortened to seconds: a real redis-server and
`jobwire serve`, a few hundred mixed-transport readers with forced disconnects, and the result
file and plot in a temporary folder. Checks that what it records is whole, not how fast it is."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.bench
DURATION, SAMPLE_EVERY, CONNECTIONS, RATE = 4, 1, 100, 100


def test_a_short_soak_records_memory_over_time_and_every_event_once(tmp_path: Path) -> None:
    out, png = tmp_path / "soak.json", tmp_path / "soak.png"
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "soak.py"), "--duration", str(DURATION),
         "--connections", str(CONNECTIONS), "--rate", str(RATE), "--disconnect-every", "20",
         "--disconnect-interval", "3", "--sample-every", str(SAMPLE_EVERY), "--out", str(out),
         "--plot", str(png)],
        capture_output=True, text=True, timeout=180, check=False)
    assert done.returncode == 0, done.stderr[-3000:]

    rec = json.loads(out.read_text())
    assert rec["name"] == "soak" and rec["source"]["commit"]
    assert rec["parameters"]["broker"] == "redis"
    assert rec["machine"]["loadAverage1m"] >= 0 and rec["loadAverage1mAtEnd"] >= 0
    r = rec["result"]

    # RSS sampled all along: before the ramp-up, while publishing, and after the clients left.
    samples = r["samples"]
    assert len(samples) >= DURATION // SAMPLE_EVERY
    assert [s["t"] for s in samples] == sorted(s["t"] for s in samples)
    for s in samples:
        assert s["serverRssMiB"] > 0 and s["redisRssMiB"] > 0 and s["loadAverage1m"] >= 0
    # every reader connected: polls hold no session, the other three quarters do
    assert max(s["sessions"] for s in samples) >= CONNECTIONS * 3 // 4
    assert r["afterLoadtest"]["sessions"] == 0  # and the server let go of them all after

    for who in ("serverRss", "redisRss"):
        m = r[who]
        assert m["startT"] < m["middleT"] < m["endT"], m
        assert min(m["startMiB"], m["middleMiB"], m["endMiB"]) > 0
        assert m["growthMiB"] == round(m["endMiB"] - m["startMiB"], 1)
        assert m["growthMiBPerHour"] is not None
    # the start is after the ramp-up: publishing had begun
    start = next(s for s in samples if s["t"] == r["serverRss"]["startT"])
    assert start["published"] > 0

    d = r["delivery"]
    assert d["connected"] == CONNECTIONS
    assert d["updatesSent"] == DURATION * RATE
    assert d["eventsDelivered"] == d["eventsExpected"] >= DURATION * RATE
    assert d["duplicates"] == 0 and d["seqGaps"] == 0 and d["eventsLost"] == 0
    assert d["deliveredOnce"] and d["ok"]
    assert d["forcedDisconnects"] >= 20 and d["reconnected"] == d["forcedDisconnects"]
    assert r["loadtest"]["result"]["transport"] == "mixed"
    assert set(r["loadtest"]["result"]["byTransport"]) == {"ws", "sse", "longpoll", "poll"}

    header = png.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n" and header[12:16] == b"IHDR"
