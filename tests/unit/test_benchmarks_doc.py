"""BENCHMARKS.md and the README's numbers are rendered by benchmarks/render.py from the result
files in benchmarks/results/: the committed documents must be what it renders from them now,
every file must say what was run where and when, and the text around the rendered blocks must
carry no figures of its own. Nothing here runs a benchmark."""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]
# A measurement typed by hand: a number with a unit of time, memory, share or rate.
FIGURE = re.compile(r"\d[\d,.]*\s?(?:ms|µs|s|KiB|MiB|GiB|%|x|/s|updates/s)(?![\w/])")


def load_render() -> ModuleType:
    spec = importlib.util.spec_from_file_location("render", ROOT / "benchmarks" / "render.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


render = load_render()


def test_the_documents_are_what_the_result_files_render() -> None:
    for path, text in render.rendered().items():
        assert path.read_text() == text, (
            f"{path.name} differs from what benchmarks/render.py renders from "
            "benchmarks/results: run `.venv/bin/python benchmarks/render.py`")


def test_a_checkout_elsewhere_renders_the_same(tmp_path: Path) -> None:
    """Commands are shown relative to the checkout they ran in, not to this one's path: result
    files written in another folder render the same documents here (and a clone in another
    folder, as CI makes, renders what was committed)."""
    for doc in render.DOCUMENTS:
        (tmp_path / doc).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / doc, tmp_path / doc)
    results = tmp_path / "benchmarks" / "results"
    results.mkdir(parents=True)
    for path in (ROOT / "benchmarks" / "results").glob("*.json"):  # as if run elsewhere
        (results / path.name).write_text(path.read_text().replace(str(ROOT), "/elsewhere/jw"))
    for path, text in render.rendered(tmp_path).items():
        assert text == (ROOT / path.relative_to(tmp_path)).read_text(), path.name


def test_the_documents_have_their_blocks() -> None:
    benchmarks = (ROOT / "BENCHMARKS.md").read_text()
    for key in ("targets", "machine", "files"):
        assert f"<!-- results:{key} -->" in benchmarks
    assert "<!-- results:readme -->" in (ROOT / "README.md").read_text()


def outside_blocks(text: str) -> str:
    return render.BLOCK.sub("", text)


def test_prose_around_the_blocks_types_no_figures() -> None:
    readme = (ROOT / "README.md").read_text()
    numbers = readme[readme.index("## Numbers"):]
    numbers = numbers[:numbers.index("\n## ", 1)]
    for name, text in (("BENCHMARKS.md", (ROOT / "BENCHMARKS.md").read_text()),
                       ("README.md, Numbers", numbers)):
        typed = FIGURE.findall(outside_blocks(text))
        assert not typed, f"{name}: figures typed outside the rendered blocks: {typed}"


@pytest.mark.parametrize("path", sorted((ROOT / "benchmarks" / "results").glob("*.json")),
                         ids=lambda p: p.name)
def test_every_result_file_says_what_ran_where_and_when(path: Path) -> None:
    rec = json.loads(path.read_text())
    assert rec["command"] and rec["name"] and path.name.startswith(rec["name"])
    assert len(rec["source"]["commit"]) == 40 and isinstance(rec["source"]["dirty"], bool)
    m = rec["machine"]
    assert m["cores"] and m["cpuModel"] and m["memoryGiB"] and m["kernel"] and m["python"]
    assert m["libraries"]["uvicorn"] and m["loadAverage1m"] >= 0
    assert rec["startedAt"] <= rec["endedAt"]
    assert isinstance(rec["parameters"], dict) and rec["result"]


def connections_run(connections: int, kib: float, p99: float) -> dict[str, object]:
    return {"name": "connections", "file": f"benchmarks/results/connections-{connections}.json",
            "startedAt": "2026-01-01T00:00:00Z", "endedAt": "2026-01-01T00:00:10Z",
            "parameters": {"connections": connections, "concurrent": 20},
            "result": {"rssPerConnectionKiB": kib, "connectMs": {"p50": 1, "p99": p99}}}


def test_targets_are_met_below_their_thresholds_only() -> None:
    rows = render.target_rows([connections_run(10_000, 19.9, 10.0),
                               connections_run(1_000, 20.0, 50.0)])
    memory, connect = rows
    assert memory[0].startswith("server RSS per idle WebSocket < 20 KiB")
    assert memory[-1] == "yes at 10,000; no at 1,000"
    assert connect[0].startswith("connect p99 < 50 ms") and connect[-1] == "no"


def test_met_is_decided_by_the_thresholds() -> None:
    assert render.verdict([("", True)]) == "**yes**"
    assert render.verdict([("a", False), ("b", False)]) == "no"
    assert render.verdict([("at 10,000", True), ("at 1,000", False)]) == \
        "yes at 10,000; no at 1,000"
    assert render.verdict([]) == "not measured"


def test_an_unknown_block_is_an_error() -> None:
    with pytest.raises(KeyError, match="nonsense"):
        render.render_text("<!-- results:nonsense -->\n<!-- /results:nonsense -->\n", [])


def test_the_prose_check_catches_a_typed_figure() -> None:
    assert FIGURE.findall("p99 stays at 12.4 ms, 19.5 KiB, 38 % and 30,000 updates/s")
    assert not FIGURE.findall("`benchmarks/render.py` from HS256 tokens, Engine.IO v4")
