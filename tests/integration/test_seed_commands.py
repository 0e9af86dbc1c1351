"""The four load-test commands users are given (tests/websocket/test_connection.js and the
scripts in tests/performance/), in short versions against a real `jobwire serve` on a free
port: their PASS/FAIL lines and exit statuses, and the clear errors (exit 2) for a bad
argument, missing credentials and a missing jobwire command. Node runs them as users do; the
load tests run the real `jobwire loadtest` underneath."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Server, start_server

ROOT = Path(__file__).resolve().parents[2]
CONNECTION = ROOT / "tests" / "websocket" / "test_connection.js"
PERFORMANCE = ROOT / "tests" / "performance"
WEBSOCKET_LOAD = PERFORMANCE / "websocket_load_test.js"
THROUGHPUT = PERFORMANCE / "status_update_throughput.js"
REALTIME = PERFORMANCE / "realtime_load_test.sh"
RUN_TIMEOUT = 60  # seconds for one command (the longest publishes for 3 s): bounded
VERDICT = re.compile(r"^(PASS|FAIL)  (.+?): ", re.M)

CONNECT, DELIVERY = "connection established < 100 ms", "delivery < 500 ms"
SSE, LONGPOLL = "SSE delivery < 2 s", "long-poll delivery < 5 s"
CAPACITY = ">= 1,000 connections per server"
CONNECTED, RECONNECTED = "connection success rate > 98 %", "reconnection success rate > 95 %"
COMPLETE = "delivery >= 99.9 %"
RATE = "publish rate >= 95 % of --updates_per_second"
TIMED = (CONNECT, DELIVERY, SSE, LONGPOLL)

NODE = shutil.which("node")
pytestmark = pytest.mark.skipif(NODE is None, reason="node is not installed")


@pytest.fixture(scope="module")
def target() -> Iterator[Server]:
    server = start_server()
    yield server
    server.stop()


def run(command: list[str | Path], env: dict[str, str] | None = None,
        secret: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run a script as a user would (no JOBWIRE_* credentials but those given)."""
    base = {k: v for k, v in os.environ.items()
            if k not in ("JOBWIRE_SECRET", "JOBWIRE_TOKEN", "JOBWIRE_PUBLISHER_TOKEN")}
    if secret:
        base["JOBWIRE_SECRET"] = secret
    return subprocess.run([str(c) for c in command], env={**base, **(env or {})},
                          capture_output=True, text=True, timeout=RUN_TIMEOUT, check=False)


def verdicts(proc: subprocess.CompletedProcess[str]) -> dict[str, str]:
    """Each PASS/FAIL line's criterion and verdict, in order."""
    return {label: verdict for verdict, label in VERDICT.findall(proc.stdout)}


def assert_lines(proc: subprocess.CompletedProcess[str], criteria: list[str],
                 failing: tuple[str, ...] = ()) -> None:
    """The script ended with one line per criterion, in order, each with a measured value; the
    counts (success rates, delivery) pass but those in `failing`; the exit status is 0 exactly
    when every line passes. Latencies and connect times are judged by the script as printed but
    not required to pass here: they are this shared machine's, measured while other work runs."""
    found = verdicts(proc)
    out = proc.stdout + proc.stderr
    assert list(found) == criteria, out
    assert "not measured" not in proc.stdout, out
    for label, verdict in found.items():
        if label in failing:
            assert verdict == "FAIL", out
        elif label not in TIMED:
            assert verdict == "PASS", out
    assert proc.returncode == (0 if set(found.values()) == {"PASS"} else 1), out
    assert VERDICT.match(proc.stdout.rstrip().splitlines()[-1])  # the verdicts end it


# --- tests/websocket/test_connection.js -------------------------------------------------

CONNECTION_CRITERIA = [CONNECT, DELIVERY, CONNECTED, RECONNECTED, COMPLETE]


def test_connection_with_the_secret_judges_every_criterion(target: Server) -> None:
    proc = run([NODE, CONNECTION, f"--url={target.ws_url}"], secret=target.secret)
    assert_lines(proc, CONNECTION_CRITERIA)
    assert "seq 1, 2, 3 received of 1..3" in proc.stdout  # the missed one replayed, once
    assert "1 of 1 forced disconnects resumed" in proc.stdout


def test_connection_with_tokens_from_the_environment(target: Server) -> None:
    """No secret: the reader's token from JOBWIRE_TOKEN, the publisher's from
    JOBWIRE_PUBLISHER_TOKEN; the job is published for the reader's own user."""
    env = {"JOBWIRE_TOKEN": target.token("seed-reader"),
           "JOBWIRE_PUBLISHER_TOKEN": target.token("seed-pub", "publisher")}
    proc = run([NODE, CONNECTION, f"--url={target.url}"], env=env)  # the http:// form too
    assert_lines(proc, CONNECTION_CRITERIA)
    assert "as seed-reader" in proc.stdout


def test_connection_without_credentials_says_what_to_set(target: Server) -> None:
    proc = run([NODE, CONNECTION, f"--url={target.ws_url}"])
    assert proc.returncode == 2
    assert "JOBWIRE_SECRET" in proc.stderr and "JOBWIRE_TOKEN" in proc.stderr
    assert "JOBWIRE_PUBLISHER_TOKEN" in proc.stderr
    assert not verdicts(proc)


def test_connection_with_a_user_token_and_no_publisher_says_what_to_set(target: Server) -> None:
    proc = run([NODE, CONNECTION, f"--url={target.ws_url}"],
               env={"JOBWIRE_TOKEN": target.token("seed-reader")})
    assert proc.returncode == 2
    assert "no publisher token: set JOBWIRE_PUBLISHER_TOKEN" in proc.stderr


def test_connection_with_another_secret_is_refused_clearly(target: Server) -> None:
    proc = run([NODE, CONNECTION, f"--url={target.ws_url}"], secret="x" * 40)
    assert proc.returncode == 2
    assert "refused the reader's token: invalid token" in proc.stderr
    assert not verdicts(proc)


# --- tests/performance/*: `jobwire loadtest` underneath ----------------------------------


def test_websocket_load_below_a_thousand_connections_fails_that_line(target: Server) -> None:
    """Forty readers cannot meet the capacity line: it fails, and so the exit status is 1."""
    proc = run([WEBSOCKET_LOAD, "--connections=40", "--duration=2s", "--updates_per_second=200",
                f"--url={target.url}"], secret=target.secret)
    assert_lines(proc, [CONNECT, DELIVERY, CAPACITY, CONNECTED, RECONNECTED, COMPLETE],
                 failing=(CAPACITY,))
    assert "FAIL  >= 1,000 connections per server: 40 connections (40 of 40 asked for" \
        in proc.stdout
    assert proc.returncode == 1


def test_status_update_throughput_short_version(target: Server) -> None:
    proc = run([THROUGHPUT, "--updates_per_second=400", "--duration=2s", "--connections=30",
                f"--url={target.url}"], secret=target.secret)
    assert_lines(proc, [RATE, DELIVERY, COMPLETE, CONNECT, CONNECTED])
    assert "800 updates" in proc.stdout  # 400/s for 2 s, all published


def test_realtime_load_short_version_covers_every_transport(target: Server) -> None:
    proc = run([REALTIME, "--concurrent=40", "--duration=3s", "--updates_per_second=200",
                f"--url={target.url}"], secret=target.secret)
    assert_lines(proc, [CONNECT, DELIVERY, SSE, LONGPOLL, CONNECTED, RECONNECTED, COMPLETE])
    for transport in ("ws", "sse", "longpoll", "poll"):
        assert re.search(rf"^  {transport} +10 connections", proc.stdout, re.M), proc.stdout


@pytest.mark.parametrize(("command", "argument", "message"), [
    ([WEBSOCKET_LOAD], "--duration=soon", '--duration "soon" is not a duration'),
    ([WEBSOCKET_LOAD], "--connections=0", "--connections must be at least 1"),
    ([THROUGHPUT], "--updates_per_second=fast", "--updates_per_second must be a positive number"),
    ([REALTIME], "--concurrent=many", "--concurrent must be a whole number"),
    ([REALTIME], "--clients=5", "unknown option --clients"),
    ([NODE, CONNECTION], "--url=localhost", "--url \"localhost\" must be a URL"),
])
def test_a_bad_argument_is_a_clear_error(target: Server, command: list[str | Path],
                                         argument: str, message: str) -> None:
    url = f"--url={target.url}" if "--url" not in argument else argument
    proc = run([*command, argument, url], secret=target.secret)
    assert proc.returncode == 2
    assert message in proc.stderr and "see --help" in proc.stderr
    assert not proc.stdout


@pytest.mark.parametrize("script", [WEBSOCKET_LOAD, THROUGHPUT, REALTIME])
def test_a_load_test_without_the_secret_says_what_to_set(target: Server, script: Path) -> None:
    proc = run([script, "--duration=1s", f"--url={target.url}"],
               env={"JOBWIRE_TOKEN": target.token("seed-reader")})
    assert proc.returncode == 2
    assert "set JOBWIRE_SECRET to the server's signing secret" in proc.stderr
    assert not proc.stdout


def test_a_load_test_without_a_jobwire_command_says_where_to_get_it(tmp_path: Path,
                                                                    target: Server) -> None:
    """A copy of the scripts in a checkout without .venv, with only node on the PATH."""
    copy = tmp_path / "tests" / "performance"
    shutil.copytree(PERFORMANCE, copy)
    assert NODE is not None
    proc = run([NODE, copy / WEBSOCKET_LOAD.name, f"--url={target.url}"],
               env={"PATH": str(Path(NODE).parent)}, secret=target.secret)
    assert proc.returncode == 2
    assert "no jobwire command" in proc.stderr and "./scripts/test" in proc.stderr
