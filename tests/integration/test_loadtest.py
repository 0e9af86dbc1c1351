"""`jobwire loadtest` run as a command against a real server: every transport delivers every
expected event with no seq gaps, and forced disconnects reconnect and resume without loss."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.conftest import Server, start_server

RUN_TIMEOUT = 40  # seconds for one run (it publishes for 1.5 s): bounded, however it fails


@pytest.fixture(scope="module")
def target() -> Iterator[Server]:
    server = start_server()
    yield server
    server.stop()


def run_loadtest(server: Server, *args: str) -> subprocess.CompletedProcess[bytes]:
    env = {**os.environ, "JOBWIRE_SECRET": server.secret}
    return subprocess.run(
        [sys.executable, "-m", "jobwire.cli", "loadtest", "--url", server.url,
         "--server-pid", str(server.process.pid), "--connections", "48",
         "--updates-per-second", "200", "--duration", "1.5s", "--poll-interval", "0.2s",
         "--connect-timeout", "15s", *args],
        env=env, capture_output=True, timeout=RUN_TIMEOUT, check=False)


def loadtest(server: Server, *args: str) -> tuple[int, dict[str, Any], str]:
    proc = run_loadtest(server, "--json", *args)
    assert proc.stdout, proc.stderr.decode()
    return proc.returncode, orjson.loads(proc.stdout), proc.stderr.decode()


def assert_complete(r: dict[str, Any]) -> None:
    assert r["connected"] == r["connections"] == 48
    assert r["eventsExpected"] == 300  # 200/s for 1.5 s, every update acknowledged
    assert r["eventsDelivered"] == r["eventsExpected"]
    assert r["eventsLost"] == r["seqGaps"] == r["duplicates"] == r["foreignEvents"] == 0
    assert r["publish"]["refused"] == r["publish"]["httpErrors"] == 0
    assert r["latencyMs"]["n"] > 0 and r["latencyMs"]["p50"] is not None
    assert r["connectMs"]["n"] == 48
    assert r["ok"] is True


@pytest.mark.parametrize("transport", ["ws", "sse", "longpoll", "poll", "mixed"])
def test_every_transport_delivers_everything(target: Server, transport: str) -> None:
    status, r, stderr = loadtest(target, "--transport", transport)
    assert status == 0, (r["warnings"], r["problems"], stderr)
    assert_complete(r)
    assert r["transport"] == transport
    expected_transports = ["ws", "sse", "longpoll", "poll"] if transport == "mixed" \
        else [transport]
    assert list(r["byTransport"]) == expected_transports
    for part in r["byTransport"].values():
        assert part["connected"] == 48 // len(expected_transports)
        assert part["eventsDelivered"] == part["eventsExpected"] > 0
    server = [p for p in r["processes"] if p["role"] == "server"]
    assert server and server[0]["pid"] == target.process.pid and server[0]["rssMiB"] > 0
    assert r["loadgen"]["cpuSeconds"] > 0


def test_json_path_writes_a_result_file_and_prints_the_report(target: Server,
                                                             tmp_path: Path) -> None:
    out = tmp_path / "run.json"
    proc = run_loadtest(target, "--json", str(out))
    assert proc.returncode == 0, proc.stderr.decode()
    assert b"delivery    300/300 events delivered" in proc.stdout
    record = orjson.loads(out.read_bytes())
    assert record["name"] == "loadtest"
    assert record["command"][-2:] == ["--json", str(out)]
    assert len(record["source"]["commit"]) == 40
    assert isinstance(record["source"]["dirty"], bool)
    machine = record["machine"]
    assert machine["cores"] >= 1 and machine["cpuModel"] and machine["memoryGiB"] > 0
    assert machine["kernel"] and machine["python"].startswith("3.")
    assert machine["libraries"]["uvicorn"] and machine["loadAverage1m"] >= 0
    assert record["startedAt"] <= record["endedAt"]
    assert record["startedAt"].endswith("Z")
    params = record["parameters"]
    assert params["connections"] == 48 and params["rate"] == 200 and "secret" not in params
    assert record["environment"]["JOBWIRE_SECRET"] == "(set)"  # named, never written
    assert_complete(record["result"])


def test_forced_disconnects_resume_without_loss(target: Server) -> None:
    status, r, stderr = loadtest(target, "--transport", "mixed", "--disconnect-every", "8",
                                 "--disconnect-interval", "0.4s")
    assert status == 0, (r["warnings"], r["problems"], stderr)
    assert_complete(r)
    d = r["disconnects"]
    assert d["forced"] >= 16  # 8 every 0.4 s for 1.5 s
    assert d["reconnected"] == d["forced"] and d["failed"] == 0
    assert d["reconnectMs"]["n"] == d["forced"]
    assert r["unexpectedDrops"] == 0


@pytest.mark.parametrize("transport", ["ws", "mixed"])
def test_reader_processes_deliver_everything_and_add_up(target: Server, transport: str) -> None:
    args = ["--transport", transport, "--processes", "2"]
    if transport == "mixed":
        args += ["--disconnect-every", "6", "--disconnect-interval", "0.4s"]
    status, r, stderr = loadtest(target, *args)
    assert status == 0, (r["warnings"], r["problems"], stderr)
    assert_complete(r)
    gen = r["loadgen"]
    publisher, *readers = gen["processes"]
    assert publisher["role"] == "publisher" and publisher["clients"] == 0
    assert [p["role"] for p in readers] == ["readers", "readers"]
    assert [p["clients"] for p in readers] == [24, 24]
    assert len({p["pid"] for p in gen["processes"]}) == 3
    assert all(p["cpuSeconds"] > 0 for p in gen["processes"])
    assert gen["cpuSeconds"] == pytest.approx(sum(p["cpuSeconds"] for p in gen["processes"]),
                                              abs=0.01)
    assert gen["loopLagMs"]["n"] >= sum(p["loopLagMs"]["n"] for p in readers) > 0
    assert r["latencyMs"]["n"] == r["eventsReceived"] > 0  # every worker's latencies merged
    if transport == "mixed":
        for part in r["byTransport"].values():  # each worker has a quarter of each transport
            assert part["connected"] == 12
            assert part["eventsDelivered"] == part["eventsExpected"] > 0
        d = r["disconnects"]
        assert d["forced"] >= 12 and d["reconnected"] == d["forced"] and d["failed"] == 0
        assert d["reconnectMs"]["n"] == d["forced"]


@pytest.mark.parametrize("processes", ["1", "2"])
def test_a_wrong_secret_fails_clearly(target: Server, processes: str) -> None:
    env = {**os.environ, "JOBWIRE_SECRET": "not-the-secret-" + "y" * 32}
    proc = subprocess.run(
        [sys.executable, "-m", "jobwire.cli", "loadtest", "--url", target.url,
         "--connections", "3", "--duration", "1", "--json", "--processes", processes],
        env=env, capture_output=True, timeout=RUN_TIMEOUT, check=False)
    assert proc.returncode == 2, proc.stdout
    assert b"no connection succeeded" in proc.stderr and b"4401" in proc.stderr


def test_options_are_checked_before_anything_runs() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "jobwire.cli", "loadtest", "--duration", "soon"],
        capture_output=True, timeout=RUN_TIMEOUT, check=False)
    assert proc.returncode == 2 and b"invalid duration" in proc.stderr
    env = {k: v for k, v in os.environ.items() if k != "JOBWIRE_SECRET"}
    proc = subprocess.run([sys.executable, "-m", "jobwire.cli", "loadtest"],
                          env=env, capture_output=True, timeout=RUN_TIMEOUT, check=False)
    assert proc.returncode == 2
    assert b"--url is required" in proc.stderr and b"JOBWIRE_SECRET" in proc.stderr
