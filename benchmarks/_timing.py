"""Timing and the machine line shared by the benchmark scripts (imported as ``_timing``: running
``python benchmarks/x.py`` puts ``benchmarks/`` on the import path). Running this file itself does nothing."""

from __future__ import annotations

import os
import platform
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


def interleaved_best_times(fns: dict[str, Callable[[], T]], repeats: int) -> tuple[dict[str, float], dict[str, T]]:
    """Best wall time of each function over ``repeats`` rounds, the functions alternating within each round so
    that a burst of load from other processes hits all alike; also the last result of each."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    results: dict[str, T] = {}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            result = fn()
            times[name].append(time.perf_counter() - start)
            results[name] = result  # the previous result is freed here, outside the timed call
    return {name: min(t) for name, t in times.items()}, results


def cpu_model() -> str:
    """The processor's model name (``/proc/cpuinfo``, with its family/model numbers), else ``platform``'s."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or platform.machine() or "unknown CPU"
    fields = {k: re.search(rf"^{k}\s*:\s*(.+)$", info, re.M) for k in ("model name", "cpu family", "model")}
    name, family, model = (m.group(1).strip() if m else None for m in fields.values())
    numbers = f" (family {family}, model {model})" if family and model else ""
    return f"{name or platform.processor() or platform.machine()}{numbers}"


def machine_line(gpu: str | None = None) -> str:
    """``machine: CPU, cores, load, GPU``: a ratio holds for the processor it was measured on, under that load."""
    load = f"{os.getloadavg()[0]:.1f}" if hasattr(os, "getloadavg") else "unknown"
    return (
        f"machine: {cpu_model()}, {os.cpu_count()} cores, load average {load} over the last minute "
        f"(this benchmark included), GPU: {gpu or 'none used'}"
    )
