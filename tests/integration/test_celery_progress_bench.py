"""The celery-progress comparison (benchmarks/celery_progress/run.py), shortened: a few users,
a few reports, the real processes (redis-server, a Celery worker, Django on uvicorn, `jobwire
serve`), and a result file in a temporary folder. Checks that what it measures is whole, not
how fast it is."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
USERS, STEPS = 3, 3

pytestmark = [pytest.mark.bench,
              pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server")]


def test_a_short_run_sees_every_report_on_both_systems(tmp_path: Path) -> None:
    out = tmp_path / "celery_progress.json"
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "celery_progress" / "run.py"),
         "--users", str(USERS), "--steps", str(STEPS), "--interval", "0.8",
         "--systems", "celery-progress,jobwire-ws", "--out", str(out)],
        capture_output=True, text=True, timeout=90, check=False)
    assert done.returncode == 0, done.stderr[-3000:]

    rec = json.loads(out.read_text())
    assert rec["name"] == "celery_progress" and rec["source"]["commit"]
    assert rec["parameters"]["pollIntervalDefault"] == 0.5  # celery_progress.js's default
    assert "pollInterval" in rec["parameters"]["pollIntervalSource"]
    runs = {r["system"]: r for r in rec["result"]["runs"]}
    assert set(runs) == {"celery-progress", "jobwire-ws"}
    for system, r in runs.items():
        assert r["users"] == USERS
        assert r["errorCount"] == 0 and r["timedOut"] == 0, (system, r["errors"])
        # every user saw every progress report, and the end
        assert r["reportsSent"] == r["reportsSeen"] == USERS * STEPS, (system, r)
        assert r["usersWithEveryReport"] == r["completed"] == USERS, (system, r)
        for delays in (r["delayMs"], r["completionDelayMs"]):
            assert delays["count"] > 0
            assert 0 <= delays["p50"] <= delays["p95"] <= delays["max"], (system, delays)
        assert r["serverCpuSeconds"] >= 0 and r["serverCpuMsPerUserMinute"] is not None
        assert r["watchMinutes"] > 0

    poll, push = runs["celery-progress"], runs["jobwire-ws"]
    # A poll every half second for the whole crawl; one WebSocket upgrade per user.
    assert poll["httpRequests"] > USERS * (STEPS + 1)
    assert push["httpRequests"] == USERS
    assert poll["requestsPerUserMinute"] > push["requestsPerUserMinute"] > 0
