"""Result files: what a benchmark or load test measured, with what is needed to judge and
repeat it: the exact command, the code (git commit, uncommitted changes), the machine (CPU,
memory, kernel, library versions, load average), when it ran, its parameters and its figures.

    run = Run("connections", parameters)   # at the start: the clock, the load average
    ...
    path = run.save(figures, out)           # at the end: writes one JSON file

Without `out`, the file goes to benchmarks/results/<name>-<UTC start>.json of the checkout
this package is imported from."""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import platform
import re
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

LIBRARIES = ("uvicorn", "websockets", "starlette", "redis", "pydantic", "orjson", "picows",
             "uvloop", "httptools", "httpx")
PACKAGE_DIR = Path(__file__).resolve().parents[1]  # src/jobwire
SECRET_WORDS = re.compile(r"SECRET|KEY|PASSWORD|TOKEN", re.I)


def _git(*args: str, cwd: Path = PACKAGE_DIR) -> str | None:
    """git's output (right-stripped only: porcelain lines start with a space), or None."""
    try:
        proc = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True,
                              timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return proc.stdout.rstrip() if proc.returncode == 0 else None


def checkout() -> Path | None:
    """The git checkout this package is imported from, if any."""
    top = _git("rev-parse", "--show-toplevel")
    return Path(top) if top else None


def source() -> dict[str, Any]:
    """The code under test: the commit, and what differed from it (the working tree may hold
    uncommitted changes: the server and the generator ran with those)."""
    root = checkout()
    commit = root and _git("rev-parse", "HEAD", cwd=root)
    if not root or not commit:
        return {"commit": None, "dirty": None}
    status = _git("status", "--porcelain", "--untracked-files=no", cwd=root) or ""
    changed = [line[3:] for line in status.splitlines()]
    src_diff = _git("diff", "HEAD", "--", "src", cwd=root) or ""
    return {"checkout": str(root), "commit": commit, "dirty": bool(changed), "changed": changed,
            "srcChanged": [p for p in changed if p.startswith("src/")],
            "srcDiffSha256": hashlib.sha256(src_diff.encode()).hexdigest()[:16]
            if src_diff else None}


def _cpu_model() -> str | None:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def _memory_gib() -> float | None:
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemTotal:"):
                    return round(int(line.split()[1]) / 1024**2, 1)
    except OSError:
        pass
    return None


def library_versions(names: tuple[str, ...] = LIBRARIES) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in names:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def machine() -> dict[str, Any]:
    return {"cores": os.cpu_count(), "usableCores": len(os.sched_getaffinity(0)),
            "cpuModel": _cpu_model(), "memoryGiB": _memory_gib(),
            "kernel": platform.release(), "python": platform.python_version(),
            "libraries": library_versions(), "loadAverage1m": os.getloadavg()[0]}


def environment() -> dict[str, str]:
    """The JOBWIRE_* settings in force (secrets left out): they change what is measured."""
    return {k: ("(set)" if SECRET_WORDS.search(k) else v) for k, v in sorted(os.environ.items())
            if k.startswith("JOBWIRE_")}


def utc_now() -> datetime:
    return datetime.now(UTC)


def iso(t: datetime) -> str:
    return t.isoformat(timespec="seconds").replace("+00:00", "Z")


def default_path(name: str, at: datetime | None = None) -> Path:
    """benchmarks/results/<name>-<UTC time>.json in the checkout (or the current directory)."""
    stamp = (at or utc_now()).strftime("%Y%m%dT%H%M%SZ")
    return (checkout() or Path.cwd()) / "benchmarks" / "results" / f"{name}-{stamp}.json"


def add_out_option(parser: Any) -> None:
    """The benchmark scripts' --out option (an argparse parser's)."""
    parser.add_argument("--out", metavar="PATH",
                        help="the result file to write (default: "
                             "benchmarks/results/<name>-<UTC start time>.json)")


class Run:
    """One benchmark run, from its start (now) to `save`."""

    def __init__(self, name: str, parameters: dict[str, Any]):
        self.name = name
        self.parameters = parameters
        self.started = utc_now()
        self.machine = machine()  # the load average before the run puts its own load on
        self.source = source()
        self.command = list(getattr(sys, "orig_argv", sys.argv))
        self.environment = environment()

    def record(self, figures: Any) -> dict[str, Any]:
        return {"name": self.name, "command": self.command, "environment": self.environment,
                "source": self.source, "machine": self.machine,
                "startedAt": iso(self.started), "endedAt": iso(utc_now()),
                "loadAverage1mAtEnd": os.getloadavg()[0],
                "parameters": self.parameters, "result": figures}

    def save(self, figures: Any, out: str | Path | None = None) -> Path:
        """Write the result file (to `out`, or the default path); return its path."""
        path = Path(out) if out else default_path(self.name, self.started)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(orjson.dumps(self.record(figures),
                                      option=orjson.OPT_INDENT_2) + b"\n")
        print(f"{self.name}: result written to {path}", file=sys.stderr)
        return path
