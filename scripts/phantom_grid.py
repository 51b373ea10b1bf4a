"""Draw ``docs/phantom_grid.png``: a 3x4 grid of phantoms with their labels and report excerpts.

    .venv/bin/python scripts/phantom_grid.py [--size 256] [--seed 0] [--out docs/phantom_grid.png]
"""

from __future__ import annotations

import argparse
import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from cxrl.data.phantom import plan_dataset, render  # noqa: E402
from cxrl.data.phantom.report import dataset_report  # noqa: E402

SHORT = {"Enlarged Cardiomediastinum": "EnlCM", "Pleural Effusion": "Effusion", "Support Devices": "Devices",
         "Pleural Other": "PleuralOther", "Lung Opacity": "Opacity", "Lung Lesion": "Lesion"}


def _caption(spec) -> str:
    labels = spec.csv_labels()
    pos = [SHORT.get(k, k) for k, v in labels.items() if v == 1 and k != "No Finding"]
    unc = [SHORT.get(k, k) + "?" for k, v in labels.items() if v == -1]
    head = f"{spec.view}  " + (", ".join(pos + unc) or "No Finding")
    impression = spec.report.split("IMPRESSION:")[-1].split()
    return "\n".join(textwrap.wrap(head, 40)[:2] + textwrap.wrap(" ".join(impression), 44)[:2])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("docs/phantom_grid.png"))
    args = parser.parse_args()
    specs = plan_dataset(300, seed=args.seed)
    firsts = [s for s in specs if s.study == 1]
    picked = firsts[:11] + [next(s for s in firsts[11:] if s.true_labels()["No Finding"] == 1)]
    fig, axes = plt.subplots(3, 4, figsize=(16, 14.5))
    for ax, spec in zip(axes.flat, picked, strict=True):
        spec.report = dataset_report(spec, args.seed)
        ax.imshow(render(spec, args.size, args.seed).image, cmap="gray", vmin=0, vmax=255)
        ax.set_title(_caption(spec), fontsize=9, loc="left")
        ax.axis("off")
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=72)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
