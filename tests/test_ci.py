"""CI (``.ci/run`` = ``make test``) checks what the README promises: lint first, then the whole suite."""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_make_test_lints_every_python_folder_before_the_suite():
    assert (ROOT / ".ci" / "run").read_text().strip().endswith("make test")
    plan = subprocess.run(["make", "-n", "test"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    lines = plan.splitlines()
    lint = next(i for i, line in enumerate(lines) if "ruff check" in line)
    suite = next(i for i, line in enumerate(lines) if "-m pytest" in line)
    assert lint < suite
    assert lines[lint].split("ruff check", 1)[1].split() == ["src", "tests", "benchmarks", "scripts"]
