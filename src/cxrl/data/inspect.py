"""``cxrl inspect``: what a cache holds (splits, views, sex, labels, co-occurrence) and how two label sets differ."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cxrl.data.cache import Cache, as_cache, open_cache
from cxrl.data.labels import PATHOLOGIES, label_matrix
from cxrl.data.records import SPLITS, VIEWS
from cxrl.errors import DataError

SMOOTHING = 1.0


def summarize(cache: Cache | str | Path) -> dict[str, Any]:
    """Counts of a cache: per split, view and sex; per label positive/negative/uncertain/missing and prevalence
    (positive / mentioned, uncertain counted as mentioned); and the positive co-occurrence matrix
    (``counts[i][j]`` = images positive for both label i and label j; the diagonal is the positives).
    """
    cache = as_cache(cache)
    records = cache.records
    names = labelled_pathologies(records)
    values = label_matrix(records, names)
    positive = (values == 1).astype(np.int64)
    return {
        "path": str(cache.path),
        "dataset": cache.manifest.get("dataset"),
        "images": len(records),
        "patients": int(records["patient_id"].nunique()),
        "image_size": cache.image_size,
        "equalize": cache.manifest.get("options", {}).get("equalize"),
        "splits": _counts(records, "split", SPLITS),
        "views": _counts(records, "view", VIEWS),
        "sex": _counts(records, "sex"),
        "labels": {name: _label_counts(values[:, k]) for k, name in enumerate(names)},
        "cooccurrence": {"labels": names, "counts": (positive.T @ positive).tolist()},
    }


def label_shift(cache_a: Cache | str | Path, cache_b: Cache | str | Path, smoothing: float = SMOOTHING) -> dict:
    """Per-label smoothed prevalences of two caches and the KL divergence of their label mix (see :func:`label_kl`)."""
    a, b = as_cache(cache_a).records, as_cache(cache_b).records
    in_b = set(labelled_pathologies(b))
    shared = [p for p in labelled_pathologies(a) if p in in_b]
    if not shared:
        raise DataError("the two caches share no labelled pathology; nothing to compare")
    prev_a, prev_b = _smoothed_prevalence(a, shared, smoothing), _smoothed_prevalence(b, shared, smoothing)
    mix_a, mix_b = prev_a / prev_a.sum(), prev_b / prev_b.sum()
    return {
        "labels": {
            p: {"prevalence_a": float(x), "prevalence_b": float(y)}
            for p, x, y in zip(shared, prev_a, prev_b, strict=True)
        },
        "kl": float(np.sum(mix_a * np.log(mix_a / mix_b))),
        "smoothing": smoothing,
    }


def label_kl(cache_a: Cache | str | Path, cache_b: Cache | str | Path, smoothing: float = SMOOTHING) -> float:
    """KL(P_a || P_b) in nats between the two caches' label-prevalence distributions over their shared labels.

    Shared labels: pathologies with at least one non-missing value in both caches. For each, the smoothed
    prevalence is ``p_l = (positives_l + s) / (mentioned_l + 2 s)`` (Laplace smoothing ``s``, so no label
    has prevalence 0 or 1 and the divergence is finite); the distribution is ``P(l) = p_l / sum_k p_k``
    (which finding a random positive label is). ``KL = sum_l P_a(l) log(P_a(l) / P_b(l))``: 0 when the
    label mixes agree, larger as they drift; it compares the mix, not overall disease burden.
    """
    return label_shift(cache_a, cache_b, smoothing)["kl"]


def labelled_pathologies(records: pd.DataFrame) -> list[str]:
    """Canonical pathologies with at least one non-missing value."""
    return [p for p in PATHOLOGIES if p in records and records[p].notna().any()]


def _counts(records: pd.DataFrame, column: str, order: tuple[str, ...] = ()) -> dict[str, int]:
    """Value counts of ``column``, ``order``'s values first, then the rest by frequency; None is "unknown"."""
    values = records[column] if column in records else pd.Series(None, index=records.index, dtype=object)
    counts = values.fillna("unknown").astype(str).value_counts()
    first = [k for k in order if k in counts.index]
    return {str(k): int(counts[k]) for k in first + [k for k in counts.index if k not in first]}


def _label_counts(values: np.ndarray) -> dict[str, Any]:
    counts = {
        "positive": int((values == 1).sum()),
        "negative": int((values == 0).sum()),
        "uncertain": int((values == -1).sum()),
        "missing": int(np.isnan(values).sum()),
    }
    mentioned = len(values) - counts["missing"]
    return {**counts, "prevalence": counts["positive"] / mentioned if mentioned else None}


def _smoothed_prevalence(records: pd.DataFrame, names: list[str], smoothing: float) -> np.ndarray:
    values = label_matrix(records, names)
    positives, mentioned = (values == 1).sum(axis=0), (~np.isnan(values)).sum(axis=0)
    return (positives + smoothing) / (mentioned + 2 * smoothing)


def format_summary(summary: dict[str, Any], shift: dict[str, Any] | None = None, top_pairs: int = 8) -> str:
    """A plain-text report of :func:`summarize` (and optionally :func:`label_shift`)."""
    lines = [
        f"cache {summary['path']}",
        f"  {summary['dataset']}: {summary['images']} images of {summary['patients']} patients, "
        f"{summary['image_size']} px, equalize {summary['equalize']}",
    ]
    for key in ("splits", "views", "sex"):
        lines.append(f"  {key:<7}" + "  ".join(f"{k} {v}" for k, v in summary[key].items()))
    lines += ["", f"  {'label':<28}{'pos':>7}{'neg':>7}{'unc':>7}{'n/a':>7}{'prev':>7}"]
    for name, c in summary["labels"].items():
        prevalence = f"{c['prevalence']:.3f}" if c["prevalence"] is not None else "-"
        counts = "".join(f"{c[k]:>7}" for k in ("positive", "negative", "uncertain", "missing"))
        lines.append(f"  {name:<28}{counts}{prevalence:>7}")
    lines += ["", "  most frequent co-occurring positives:"]
    lines += [f"    {a} + {b}: {n}" for a, b, n in _top_pairs(summary["cooccurrence"], top_pairs)] or ["    none"]
    if shift is not None:
        lines += ["", f"  {'label (smoothed prevalence)':<28}{'this':>8}{'other':>8}"]
        for name, p in shift["labels"].items():
            lines.append(f"  {name:<28}{p['prevalence_a']:>8.3f}{p['prevalence_b']:>8.3f}")
        lines.append(f"  label-mix KL(this || other) = {shift['kl']:.4f} nats")
    return "\n".join(lines)


def _top_pairs(cooccurrence: dict[str, Any], k: int) -> list[tuple[str, str, int]]:
    names, counts = cooccurrence["labels"], np.asarray(cooccurrence["counts"])
    pairs = [(names[i], names[j], int(counts[i, j])) for i in range(len(names)) for j in range(i + 1, len(names))]
    return sorted((p for p in pairs if p[2] > 0), key=lambda p: -p[2])[:k]


def plot_summary(summary: dict[str, Any], path: str | Path, shift: dict[str, Any] | None = None) -> Path:
    """Prevalence bars (positive and uncertain share of mentions) and the co-occurrence heatmap, as P(col | row)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(summary["labels"])
    if not names:
        raise DataError(f"{summary['path']}: no labelled pathology to plot")
    fig, (bars, heat) = plt.subplots(1, 2, figsize=(14, max(4.0, 0.35 * len(names) + 1.5)))
    y = np.arange(len(names))
    mentioned = [max(1, c["positive"] + c["negative"] + c["uncertain"]) for c in summary["labels"].values()]
    positive = [c["positive"] / m for c, m in zip(summary["labels"].values(), mentioned, strict=True)]
    uncertain = [c["uncertain"] / m for c, m in zip(summary["labels"].values(), mentioned, strict=True)]
    bars.barh(y, positive, color="tab:red", label="positive")
    bars.barh(y, uncertain, left=positive, color="tab:orange", label="uncertain")
    if shift is not None:
        other = [shift["labels"].get(n, {}).get("prevalence_b", np.nan) for n in names]
        bars.scatter(other, y, color="black", marker="|", s=200, label="other cache (smoothed)")
    bars.set(yticks=y, yticklabels=names, xlim=(0, 1), xlabel="share of mentions", title="label prevalence")
    bars.invert_yaxis()
    bars.legend(loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=3, frameon=False)
    counts = np.asarray(summary["cooccurrence"]["counts"], dtype=float)
    conditional = counts / np.maximum(np.diag(counts)[:, None], 1)
    image = heat.imshow(conditional, vmin=0, vmax=1, cmap="viridis")
    heat.set(xticks=y, yticks=y, title="co-occurrence P(column positive | row positive)")
    heat.set_xticklabels(names, rotation=90)
    heat.set_yticklabels(names)
    fig.colorbar(image, ax=heat, fraction=0.046)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return path


def add_cli(subparsers: argparse._SubParsersAction) -> None:
    """Register ``cxrl inspect``."""
    p = subparsers.add_parser("inspect", help="counts, co-occurrence and label shift of a cache")
    p.add_argument("cache", type=Path, help="a cache folder written by cxrl prepare")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--plot", type=Path, metavar="FILE", help="save prevalence bars and co-occurrence heatmap")
    p.add_argument("--compare", type=Path, metavar="CACHE2", help="label prevalence shift against another cache")
    p.set_defaults(func=_run_cli)


def _run_cli(args: argparse.Namespace) -> int:
    cache = open_cache(args.cache)
    summary = summarize(cache)
    shift = label_shift(cache, args.compare) if args.compare else None
    if args.json:
        print(json.dumps({**summary, "compare": shift} if shift else summary, indent=2))
    else:
        print(format_summary(summary, shift))
    if args.plot:
        print(f"plot written to {plot_summary(summary, args.plot, shift)}", file=sys.stderr)
    return 0
