"""Phantom generation speed: N images at 256 px written as JPEG + masks + truth, end to end.

    .venv/bin/python benchmarks/phantom_speed.py [--n 2000] [--size 256] [--workers 2] [--layout chexpert]

Prints ``phantom images_per_s=<float>`` last (target: >= 85 with 2 workers, i.e. 10,000 images < 2 minutes).
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

from _timing import machine_line

from cxrl.data.phantom import write_dataset
from cxrl.data.phantom.layouts import LAYOUTS


def _cpu_seconds() -> float:
    """User + system CPU of this process and its finished children (the pool's workers)."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--layout", default="chexpert", choices=LAYOUTS)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        start, cpu_start = time.perf_counter(), _cpu_seconds()
        write_dataset(Path(tmp) / "phantom", args.n, size=args.size, layout=args.layout, workers=args.workers)
        seconds, cpu = time.perf_counter() - start, _cpu_seconds() - cpu_start
    print(f"{args.n} images at {args.size} px, {args.workers} workers, {args.layout}: {seconds:.1f} s wall")
    print(f"CPU time {1000 * cpu / args.n:.1f} ms/image (all processes); on {args.workers} idle cores that is "
          f"{args.workers * args.n / cpu:.1f} images/s - the wall figure below is lower when the machine is shared")
    print(machine_line())
    print(f"phantom images_per_s={args.n / seconds:.1f}")


if __name__ == "__main__":
    main()
