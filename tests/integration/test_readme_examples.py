"""The README's Python client and publisher examples, as a user copies them: run against a real
`jobwire serve`, and type-checked with mypy --strict against the installed package (which must
say it is typed: py.typed)."""

from __future__ import annotations

import re
import subprocess
import sys
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
        follower = subprocess.Popen([sys.executable, str(scripts["client"])], env=env,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            await wait_for_sessions(server, "websocket", 1, timeout=3 * WAIT)
            published = subprocess.run([sys.executable, str(scripts["publisher"])], env=env,
                                       capture_output=True, text=True, timeout=3 * WAIT)
            assert published.returncode == 0, published.stderr
            out, err = follower.communicate(timeout=3 * WAIT)
        finally:
            if follower.poll() is None:
                follower.kill()
                follower.wait(5)
        assert follower.returncode == 0, err
        assert out.splitlines() == ["job_123 processing 45 websocket",
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
