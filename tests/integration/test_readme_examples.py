"""The README's Python client and publisher examples, as a user copies them: run against a real
`jobwire serve`, and type-checked with mypy --strict against the installed package (which must
say it is typed: py.typed)."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
from asyncio.subprocess import PIPE
from pathlib import Path

import pytest

from tests.conftest import WAIT, start_server, wait_for_sessions

README = Path(__file__).resolve().parents[2] / "README.md"
EXAMPLES = ("client", "publisher")


def example(name: str) -> str:
    """The ```python block after the README's `<!-- example: name ... -->` marker."""
    found = re.search(r"<!-- example: " + name + r"\b.*?-->\n```python\n(.*?)```",
                      README.read_text(), re.S)
    assert found is not None, f"the README has no example {name!r}"
    return found.group(1)


@pytest.fixture
def scripts(tmp_path: Path) -> dict[str, Path]:
    paths = {name: tmp_path / f"{name}.py" for name in EXAMPLES}
    for name, path in paths.items():
        path.write_text(example(name))
    return paths


async def test_the_client_example_follows_what_the_publisher_example_publishes(scripts):
    server = start_server()
    try:
        env = {**server.env, "JOBWIRE_URL": server.url,
               "USER_TOKEN": server.token("user_789"),
               "PUBLISHER_TOKEN": server.token("crawler-1", "publisher")}
        follower = await asyncio.create_subprocess_exec(
            sys.executable, str(scripts["client"]), env=env, stdout=PIPE, stderr=PIPE)
        try:
            await wait_for_sessions(server, "websocket", 1, timeout=3 * WAIT)
            publisher = await asyncio.create_subprocess_exec(
                sys.executable, str(scripts["publisher"]), env=env, stderr=PIPE)
            async with asyncio.timeout(3 * WAIT):
                _, published_err = await publisher.communicate()
                assert publisher.returncode == 0, published_err.decode()
                out, err = await follower.communicate()
        finally:
            if follower.returncode is None:
                follower.kill()
                await follower.wait()
        assert follower.returncode == 0, err.decode()
        assert out.decode().splitlines() == ["job_123 processing 45 websocket",
                                             "job_123 completed 100 websocket", "completed"]
    finally:
        server.stop()


def test_the_examples_type_check_strictly_against_the_installed_package(scripts, tmp_path):
    """mypy --strict sees jobwire's own annotations only because the package ships py.typed;
    without it every import of jobwire is an error."""
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--follow-imports=silent",
         "--cache-dir", str(tmp_path / "cache"), *map(str, scripts.values())],
        capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Success: no issues found in 2 source files" in result.stdout
