"""`jobwire loadtest` needs the loadtest extra (picows, httptools): without it, the command says
how to install it and exits 2 before doing anything."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import WAIT, free_port

INSTALL_HINT = "pip install 'jobwire[loadtest]'"


def loadtest(tmp_path: Path, *args: str, absent: tuple[str, ...] = ()) -> (
        subprocess.CompletedProcess[str]):
    """Run `jobwire loadtest` in a new interpreter in which each module of `absent` fails to
    import as an uninstalled one does (a module of that name, first on the path, raising
    ModuleNotFoundError)."""
    for name in absent:
        message = f"No module named {name!r}"
        (tmp_path / f"{name}.py").write_text(
            f"raise ModuleNotFoundError({message!r}, name={name!r})\n")
    path = os.pathsep.join(p for p in (str(tmp_path), os.environ.get("PYTHONPATH")) if p)
    return subprocess.run(
        [sys.executable, "-m", "jobwire.cli", "loadtest",
         "--url", f"http://127.0.0.1:{free_port()}", "--duration", "1", *args],
        capture_output=True, text=True, timeout=3 * WAIT, env={**os.environ, "PYTHONPATH": path})


@pytest.mark.parametrize("absent", [("picows",), ("httptools",), ("picows", "httptools")])
def test_without_the_extra_it_says_how_to_install_it(tmp_path, absent):
    out = loadtest(tmp_path, absent=absent)
    assert out.returncode == 2, out.stderr
    assert INSTALL_HINT in out.stderr
    assert all(name in out.stderr for name in absent), out.stderr
    assert out.stdout == ""


def test_with_the_extra_it_goes_on_to_check_the_options(tmp_path):
    out = loadtest(tmp_path, "--connections", "0")
    assert out.returncode == 2
    assert "jobwire loadtest: error:" in out.stderr and "connections" in out.stderr
    assert INSTALL_HINT not in out.stderr
