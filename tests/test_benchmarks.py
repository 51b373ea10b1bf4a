"""The benchmark scripts name the machine their figures were measured on (benchmarks are not run as tests)."""

from __future__ import annotations

import re
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).parents[1] / "benchmarks"


def test_every_benchmark_prints_the_machine_just_before_its_ratio():
    scripts = sorted(p for p in BENCHMARKS.glob("*.py") if not p.name.startswith("_"))
    assert len(scripts) >= 6
    for script in scripts:
        lines = [line.strip() for line in script.read_text().splitlines()]
        last = max(i for i, line in enumerate(lines) if re.match(r'print\(f"[\w ]*(ratio|images_per_s)=', line))
        assert lines[last - 1].startswith("print(machine_line("), script.name


def test_machine_line_names_the_cpu_model(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    sys.modules.pop("_timing", None)
    import _timing

    line = _timing.machine_line()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists() and "model name" in cpuinfo.read_text():
        model = re.search(r"^model name\s*:\s*(.+)$", cpuinfo.read_text(), re.M).group(1).strip()
        assert f"machine: {model}" in line
    assert "cores" in line and "load average" in line and "GPU: none used" in line
    assert _timing.machine_line("NVIDIA H200").endswith("GPU: NVIDIA H200")
