"""Result files (jobwire.loadtest.results): what a run records besides its figures."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest

from jobwire.loadtest import results


def test_a_run_records_command_code_machine_times_and_parameters(tmp_path: Path) -> None:
    run = results.Run("example", {"connections": 3})
    path = run.save({"p99": 1.5}, tmp_path / "out" / "example.json")
    rec = orjson.loads(path.read_bytes())
    assert list(rec) == ["name", "command", "environment", "source", "machine", "startedAt",
                         "endedAt", "loadAverage1mAtEnd", "parameters", "result"]
    assert rec["name"] == "example" and rec["command"]
    assert rec["parameters"] == {"connections": 3} and rec["result"] == {"p99": 1.5}
    assert len(rec["source"]["commit"]) == 40  # the tests run in the checkout
    machine = rec["machine"]
    assert machine["cores"] >= 1 and machine["memoryGiB"] > 0 and machine["kernel"]
    assert set(results.LIBRARIES) <= set(machine["libraries"])
    assert rec["startedAt"] <= rec["endedAt"] and rec["endedAt"].endswith("Z")


def test_settings_are_recorded_and_secrets_only_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JOBWIRE_SECRET", "do-not-write-me")
    monkeypatch.setenv("JOBWIRE_JWT_PRIVATE_KEY", "nor-me")
    monkeypatch.setenv("JOBWIRE_MAX_CONNECTIONS_PER_SECOND_PER_IP", "0")
    env = results.environment()
    assert env["JOBWIRE_SECRET"] == env["JOBWIRE_JWT_PRIVATE_KEY"] == "(set)"
    assert env["JOBWIRE_MAX_CONNECTIONS_PER_SECOND_PER_IP"] == "0"


def test_the_default_file_is_named_by_the_run_and_its_utc_start() -> None:
    path = results.default_path("saturation", datetime(2026, 12, 5, 23, 4, 5, tzinfo=UTC))
    assert path.name == "saturation-20261205T230405Z.json"
    assert path.parent.parts[-2:] == ("benchmarks", "results")
