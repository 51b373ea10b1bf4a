"""Derive the phantom's label statistics ONCE from the real CheXpert train.csv (frontal rows).

The CSV ships inside the torchxrayvision wheel; only aggregate figures are written
(``src/cxrl/data/phantom/chexpert_stats.json``): per-label marginals, label-state patterns with their
counts (patterns seen fewer than ``--min-count`` times are dropped), findings per image, pairwise lifts and
the acquisition mix.

    .venv/bin/python scripts/derive_phantom_stats.py
"""

from __future__ import annotations

import argparse
import importlib.util
import itertools
import json
from pathlib import Path

import numpy as np
import pandas as pd

OUT = Path(__file__).resolve().parents[1] / "src/cxrl/data/phantom/chexpert_stats.json"


def _txv_csv() -> Path:
    spec = importlib.util.find_spec("torchxrayvision")
    if spec is None or not spec.origin:
        raise SystemExit("torchxrayvision is not installed: pip install -e '.[test]'")
    return Path(spec.origin).parent / "data" / "chexpert_train.csv.gz"


def _state_codes(labels: np.ndarray) -> np.ndarray:
    """'1' positive, 'u' uncertain, '0' negative or not mentioned."""
    return np.where(labels == 1, "1", np.where(labels == -1, "u", "0"))


def derive(frame: pd.DataFrame, min_count: int) -> dict:
    frontal = frame[frame["Frontal/Lateral"] == "Frontal"]
    findings = [c for c in frame.columns[5:] if c != "No Finding"]
    values = frontal[findings].to_numpy(dtype=np.float32)
    marginals = {
        name: {
            "positive": float(np.mean(col == 1)),
            "uncertain": float(np.mean(col == -1)),
            "negative": float(np.mean(col == 0)),
            "blank": float(np.mean(np.isnan(col))),
        }
        for name, col in zip(findings, values.T, strict=True)
    }
    patterns = pd.Series(["".join(r) for r in _state_codes(values)]).value_counts()
    kept = patterns[patterns >= min_count]
    pathology = values[:, [i for i, f in enumerate(findings) if f != "Support Devices"]] == 1
    per_image = np.bincount(pathology.sum(1), minlength=7)
    positive = values == 1
    prevalence = positive.mean(0)
    lifts = {}
    for i, j in itertools.combinations(range(len(findings)), 2):
        joint = float(np.mean(positive[:, i] & positive[:, j]))
        lifts[f"{findings[i]}|{findings[j]}"] = round(joint / (prevalence[i] * prevalence[j]), 3)
    views = frontal["AP/PA"].value_counts()
    return {
        "source": "CheXpert-v1.0 train.csv (torchxrayvision data folder), frontal rows",
        "n_frontal": int(len(frontal)),
        "findings": findings,
        "marginals": marginals,
        "pattern_min_count": min_count,
        "pattern_coverage": round(float(kept.sum() / patterns.sum()), 4),
        "patterns": {code: int(count) for code, count in kept.items()},
        "pathologies_per_image": [round(float(c / len(frontal)), 4) for c in per_image[:6]]
        + [round(float(per_image[6:].sum() / len(frontal)), 4)],
        "lifts": lifts,
        "ap_fraction": round(float(views.get("AP", 0) / (views.get("AP", 0) + views.get("PA", 0))), 4),
        "female_fraction": round(float(np.mean(frontal["Sex"] == "Female")), 4),
        "age_mean": round(float(frontal["Age"][frontal["Age"] > 0].mean()), 2),
        "age_sd": round(float(frontal["Age"][frontal["Age"] > 0].std()), 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--csv", type=Path, default=None, help="CheXpert train.csv[.gz] (default: torchxrayvision's)")
    parser.add_argument("--min-count", type=int, default=3, help="drop label patterns seen fewer times")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    stats = derive(pd.read_csv(args.csv or _txv_csv()), args.min_count)
    args.out.write_text(json.dumps(stats, indent=1) + "\n")
    print(f"wrote {args.out}: {len(stats['patterns'])} patterns, coverage {stats['pattern_coverage']}")


if __name__ == "__main__":
    main()
