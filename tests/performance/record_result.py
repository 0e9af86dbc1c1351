#!/usr/bin/env python3
"""Run one of the load-test commands users are given, as written, and keep what it printed
and judged in a result file: benchmarks/results/seed-<script>-<UTC start>.json, with the
command, the commit, the machine and the UTC times (jobwire.loadtest.results), the verdicts
and the figures behind them, and the full printed output. BENCHMARKS.md renders these files
(`.venv/bin/python benchmarks/render.py`).

    .venv/bin/python tests/performance/record_result.py \\
        ./tests/performance/websocket_load_test.js --connections=1000 --duration=300s

The command runs with `--report=<a temporary file>` added (every script there takes it: the
verdicts and measurements as JSON); its output is shown as it comes, stdout and stderr in
one stream, as a terminal would show them. Exits with the command's status."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from jobwire.loadtest.results import Run

SCRIPTS = ("test_connection", "websocket_load_test", "status_update_throughput",
           "realtime_load_test")


def script_name(command: list[str]) -> str:
    """The script a command runs (`node x.js …` or `./x.js …`), one of SCRIPTS."""
    for arg in command[:2]:
        stem = Path(arg).stem
        if stem in SCRIPTS:
            return stem
    raise SystemExit(f"record_result.py: error: not one of the load-test scripts "
                     f"({', '.join(SCRIPTS)}): {' '.join(command)}")


def run(command: list[str], report: Path) -> tuple[int, str]:
    """Run `command` with --report; echo and return its merged output."""
    lines = []
    with subprocess.Popen([*command, f"--report={report}"], stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            sys.stdout.write(line)
            sys.stdout.flush()
            lines.append(line)
    return proc.returncode, "".join(lines)


def main(argv: list[str]) -> int:
    command = argv[1:]
    if not command or command[0] in ("-h", "--help"):
        print(__doc__)
        return 0 if command else 2
    name = script_name(command)
    run_record = Run(f"seed-{name}", {"script": name, "command": command})
    with tempfile.TemporaryDirectory() as folder:
        report_path = Path(folder) / "report.json"
        status, output = run(command, report_path)
        if not report_path.exists():  # it could not run (status 2): nothing was measured
            print(f"record_result.py: {name} wrote no report (status {status}): "
                  "nothing recorded", file=sys.stderr)
            return status or 2
        report: dict[str, Any] = json.loads(report_path.read_text())
    figures = {"exitStatus": status, "criteria": report.get("criteria", []),
               "measured": report.get("measured"), "loadtest": report.get("loadtest"),
               "output": output}
    run_record.save(figures)
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv))
