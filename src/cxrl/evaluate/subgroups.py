"""Subgroup evaluation as CheXclusion reports it (Seyyed-Kalantari et al., PSB 2021): per subgroup and finding,
AUROC with patient-bootstrap CIs and, at the protocol's threshold, the true- and false-positive rates and their
gaps to the whole test set (subgroup TPR minus overall TPR).

:func:`subgroup_metrics` is a function of per-image scores, labels, thresholds and the test rows' records, so any
protocol that yields per-image scores can call it. Subgroups come from the record columns ``sex``, ``view``,
``dataset`` and ``age`` (binned, :data:`AGE_BINS` unless given). A subgroup with fewer than ``min_count``
positives (TPR, AUROC) or negatives (FPR, AUROC) of a finding keeps its counts and gets NaN (``null``) there,
never 0. Gap intervals come from one patient bootstrap shared by the subgroup and the whole set; the largest gap
per finding also gets a Bonferroni-adjusted interval over that finding's measured subgroups, since the largest of
several gaps is chosen after looking.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from cxrl.errors import ConfigError
from cxrl.evaluate.metrics import (
    _nanmean,
    _num,
    auroc,
    bootstrap_auroc,
    bootstrap_weights,
    confusion_matrices,
    percentiles,
)

SUBGROUP_KEYS: tuple[str, ...] = ("sex", "age", "view", "dataset")
AGE_BINS: tuple[float, ...] = (0.0, 20.0, 40.0, 60.0, 80.0)
LEVEL = 0.95


def age_bin_names(bins: Sequence[float]) -> list[str]:
    """``(0, 20, 40)`` -> ``["0-20", "20-40", "40+"]``; ages below the first edge belong to no bin."""
    edges = [f"{b:g}" for b in bins]
    return [f"{lo}-{hi}" for lo, hi in zip(edges, edges[1:], strict=False)] + [f"{edges[-1]}+"]


def check_subgroup_settings(keys: Sequence[str] | None, age_bins: Sequence[float]) -> None:
    """A ConfigError for an unknown subgroup key or age edges that are not increasing."""
    unknown = sorted(set(keys or ()) - set(SUBGROUP_KEYS))
    if unknown:
        raise ConfigError(f"unknown subgroups {unknown}; expected some of {', '.join(SUBGROUP_KEYS)} (or none)")
    if not age_bins or any(b >= a for b, a in zip(age_bins, age_bins[1:], strict=False)):
        raise ConfigError(f"age bins must be increasing edges in years, e.g. 0,20,40,60,80; found {list(age_bins)}")


def subgroup_values(records: pd.DataFrame, key: str, age_bins: Sequence[float] = AGE_BINS) -> np.ndarray:
    """Each row's subgroup under ``key`` as a string, None where unknown (an object array)."""
    if key == "age":
        ages = pd.to_numeric(records["age"], errors="coerce").to_numpy(dtype=np.float64)
        index = np.searchsorted(np.asarray(age_bins, dtype=np.float64), ages, side="right") - 1
        names = np.array(age_bin_names(age_bins) + [None], dtype=object)
        return names[np.where(np.isfinite(ages) & (index >= 0), index, -1)]
    column = records[key]
    return np.where(column.notna(), column.astype(str), None).astype(object)


def present_keys(records: pd.DataFrame, age_bins: Sequence[float] = AGE_BINS) -> list[str]:
    """The subgroup keys under which ``records`` fall into two or more known subgroups."""
    return [k for k in SUBGROUP_KEYS if k in records and len({v for v in subgroup_values(records, k, age_bins)
                                                              if v is not None}) > 1]


def subgroup_metrics(
    labels: np.ndarray,
    scores: np.ndarray,
    thresholds: np.ndarray,
    records: pd.DataFrame,
    pathologies: Sequence[str],
    keys: Sequence[str],
    age_bins: Sequence[float] = AGE_BINS,
    groups: Sequence | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    min_count: int = 5,
) -> dict:
    """Per-subgroup metrics and TPR gaps of one model's test scores, as JSON-ready data.

    ``labels``/``scores`` are ``(N, K)`` as in :mod:`cxrl.evaluate.metrics`, ``records`` the N test rows,
    ``groups`` their patient ids (bootstrap unit). Returns ``overall`` (TPR, FPR per finding), ``groups``
    (``{key: {subgroup: {"n_images", "macro_auroc", "per_class": {finding: ...}}}}``) and ``largest_gaps``.
    """
    members = [(k, v, values == v) for k in keys
               for values in [subgroup_values(records, k, age_bins)]
               for v in sorted({x for x in values if x is not None})]
    overall = _rates(labels, scores, thresholds, np.ones(len(labels), bool), min_count)
    gaps = _gap_samples(labels, scores, thresholds, [m for *_, m in members], groups, n_boot, seed)
    out: dict[str, dict] = {k: {} for k in keys}
    for i, (key, value, mask) in enumerate(members):
        rates = _rates(labels, scores, thresholds, mask, min_count)
        aurocs = auroc(labels[mask], scores[mask])
        ci = bootstrap_auroc(labels[mask], scores[mask], groups=_subset(groups, mask), n_boot=n_boot, seed=seed)
        per_class = {}
        for k, name in enumerate(pathologies):
            both = rates["n_positive"][k] >= min_count and rates["n_negative"][k] >= min_count
            per_class[name] = {
                "n_positive": int(rates["n_positive"][k]),
                "n_negative": int(rates["n_negative"][k]),
                "auroc": _num(aurocs[k] if both else np.nan),
                "auroc_ci": [_num(v) for v in (ci["per_class"][k] if both else (np.nan, np.nan))],
                "tpr": _num(rates["tpr"][k]),
                "fpr": _num(rates["fpr"][k]),
                "tpr_gap": _num(rates["tpr"][k] - overall["tpr"][k]),
                "fpr_gap": _num(rates["fpr"][k] - overall["fpr"][k]),
                "tpr_gap_ci": _interval(gaps[k][:, i], rates["tpr"][k], 1 - LEVEL),
            }
        macro = _nanmean(np.array([c["auroc"] for c in per_class.values()], dtype=np.float64))
        out[key][value] = {"n_images": int(mask.sum()), "macro_auroc": macro, "per_class": per_class}
    return {
        "keys": list(keys),
        "age_bins": [float(b) for b in age_bins],
        "min_count": min_count,
        "overall": {name: {"tpr": _num(overall["tpr"][k]), "fpr": _num(overall["fpr"][k])}
                    for k, name in enumerate(pathologies)},
        "groups": out,
        "largest_gaps": _largest_gaps(out, gaps, members, pathologies),
    }


def _rates(labels, scores, thresholds, mask: np.ndarray, min_count: int) -> dict[str, np.ndarray]:
    """Positive/negative counts, TPR and FPR per class over ``mask`` rows; NaN below ``min_count``."""
    cm = confusion_matrices(labels[mask], scores[mask], thresholds).astype(np.float64)
    n_pos, n_neg = cm[:, 1].sum(axis=1), cm[:, 0].sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        tpr = np.where(n_pos >= max(min_count, 1), cm[:, 1, 1] / n_pos, np.nan)
        fpr = np.where(n_neg >= max(min_count, 1), cm[:, 0, 1] / n_neg, np.nan)
    return {"n_positive": n_pos, "n_negative": n_neg, "tpr": tpr, "fpr": fpr}


def _gap_samples(labels, scores, thresholds, masks: list[np.ndarray], groups, n_boot: int, seed: int) -> list:
    """Per class, ``(n_boot, G)`` bootstrap replicates of each subgroup's TPR minus the whole set's TPR."""
    out = [np.full((n_boot, len(masks)), np.nan) for _ in range(labels.shape[1])]
    if n_boot == 0 or not masks:
        return out
    member = np.stack(masks, axis=1).astype(np.float64)  # (N, G)
    for start, w in bootstrap_weights(len(labels), groups, n_boot, seed):
        for k in range(labels.shape[1]):
            keep = ~np.isnan(labels[:, k])
            pos = (labels[keep, k] > 0.5).astype(np.float64)
            hit = pos * (scores[keep, k] >= thresholds[k])
            cols = np.column_stack([hit, pos, hit[:, None] * member[keep], pos[:, None] * member[keep]])
            sums = w[:, keep] @ cols  # (b, 2 + 2G)
            g = len(masks)
            with np.errstate(invalid="ignore", divide="ignore"):
                out[k][start : start + len(w)] = sums[:, 2 : 2 + g] / sums[:, 2 + g :] - (sums[:, :1] / sums[:, 1:2])
    return out


def _interval(samples: np.ndarray, measured: float, alpha: float) -> list[float | None]:
    """Two-sided percentile interval at ``1 - alpha``; ``[None, None]`` when the gap itself is not measured."""
    if not np.isfinite(measured):
        return [None, None]
    return [_num(v) for v in percentiles(samples[:, None], alpha / 2)[0]]


def _largest_gaps(out: dict, gaps: list, members: list, pathologies: Sequence[str]) -> dict[str, dict | None]:
    """Per finding, the measured subgroup with the largest absolute TPR gap (None when none is measured)."""
    result: dict[str, dict | None] = {}
    for k, name in enumerate(pathologies):
        measured = [(i, key, value) for i, (key, value, _) in enumerate(members)
                    if out[key][value]["per_class"][name]["tpr_gap"] is not None]
        if not measured:
            result[name] = None
            continue
        i, key, value = max(measured, key=lambda m: abs(out[m[1]][m[2]]["per_class"][name]["tpr_gap"]))
        entry = out[key][value]["per_class"][name]
        result[name] = {
            "key": key,
            "subgroup": value,
            **{f: entry[f] for f in ("n_positive", "tpr", "tpr_gap", "tpr_gap_ci", "fpr_gap")},
            "n_compared": len(measured),
            "tpr_gap_ci_adjusted": _interval(gaps[k][:, i], entry["tpr"], (1 - LEVEL) / len(measured)),
        }
    return result


def _subset(groups: Sequence | None, mask: np.ndarray) -> np.ndarray | None:
    return None if groups is None else np.asarray(groups)[mask]
