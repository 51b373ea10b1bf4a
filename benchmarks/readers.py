"""Reading the real CheXpert train.csv (223,414 rows) and NIH Data_Entry (112,120 rows) into records, vs the peer.

Peer: torchxrayvision's ``CheX_Dataset`` / ``NIH_Dataset`` built on the same CSV files (all views, every image,
no images opened), which do less: no path parsing into patient/study ids, no label validation, no boxes.
Times are the best of ``--repeats`` alternating runs, measured in the same process. Prints one ratio per dataset
(cxrl time / torchxrayvision time; below 1 means cxrl is faster); last line ``readers ratio=<CheXpert ratio>``.
Usage: ``python benchmarks/readers.py [--repeats 3]``.
"""

from __future__ import annotations

import argparse
import importlib.util
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torchxrayvision as xrv

from cxrl.data.records import load_records


def best_times(ours: Callable[[], object], peer: Callable[[], object], repeats: int) -> tuple[float, float]:
    """Shortest wall time of each over ``repeats`` alternating calls (both see the same machine load)."""
    times: dict[Callable[[], object], list[float]] = {ours: [], peer: []}
    for _ in range(repeats):
        for fn, spent in times.items():
            start = time.perf_counter()
            fn()
            spent.append(time.perf_counter() - start)
    return min(times[ours]), min(times[peer])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    data = Path(importlib.util.find_spec("torchxrayvision").origin).parent / "data"
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "chexpert").mkdir()
        (root / "chexpert" / "train.csv.gz").symlink_to(data / "chexpert_train.csv.gz")
        (root / "nih").mkdir()
        (root / "nih" / "Data_Entry_2017_v2020.csv.gz").symlink_to(data / "Data_Entry_2017_v2020.csv.gz")
        cases = {
            "chexpert": (
                lambda: load_records("chexpert", root / "chexpert"),
                lambda: xrv.datasets.CheX_Dataset(
                    str(root), str(data / "chexpert_train.csv.gz"), views=["*"], unique_patients=False
                ),
            ),
            "nih": (
                lambda: load_records("nih", root / "nih"),
                lambda: xrv.datasets.NIH_Dataset(
                    str(root), str(data / "Data_Entry_2017_v2020.csv.gz"), views=["*"], unique_patients=False
                ),
            ),
        }
        ratios = {}
        for name, (ours, peer) in cases.items():
            ours_s, peer_s = best_times(ours, peer, args.repeats)
            ratios[name] = ours_s / peer_s
            print(f"{name}: cxrl {ours_s:.2f} s, torchxrayvision {peer_s:.2f} s, ratio {ratios[name]:.2f}")
    print(f"readers ratio={ratios['chexpert']:.3f}")


if __name__ == "__main__":
    main()
