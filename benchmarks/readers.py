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
from pathlib import Path

import torchxrayvision as xrv
from _timing import interleaved_best_times, machine_line

from cxrl.data.records import load_records


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
            seconds, _ = interleaved_best_times({"cxrl": ours, "torchxrayvision": peer}, args.repeats)
            ours_s, peer_s = seconds["cxrl"], seconds["torchxrayvision"]
            ratios[name] = ours_s / peer_s
            print(f"{name}: cxrl {ours_s:.2f} s, torchxrayvision {peer_s:.2f} s, ratio {ratios[name]:.2f}")
    print(machine_line())
    print(f"readers ratio={ratios['chexpert']:.3f}")


if __name__ == "__main__":
    main()
