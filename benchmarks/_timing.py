"""Timing shared by the benchmark scripts (imported as ``_timing``: running ``python benchmarks/x.py`` puts
``benchmarks/`` on the import path). Running this file itself does nothing."""

from __future__ import annotations

import time
from collections.abc import Callable
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
