"""Subgroup evaluation as CheXclusion reports it (Seyyed-Kalantari et al., PSB 2021): per subgroup and finding,
AUROC with patient-bootstrap CIs and, at the protocol's threshold, the true- and false-positive rates and their
gaps to the whole test set (subgroup TPR minus overall TPR).

:func:`subgroup_metrics` is a function of per-image scores, labels, thresholds and the test rows' records, so any
protocol that yields per-image scores can call it. Subgroups come from the record columns ``sex``, ``view``,
``dataset`` and ``age`` (binned, :data:`AGE_BINS` unless given). A subgroup with fewer than ``min_count``
positives (TPR, AUROC) or negatives (FPR, AUROC) of a finding keeps its counts and gets NaN (``null``) there,
never 0. A gap's interval is the hull of the percentile patient bootstrap (one set of replicates for the subgroup
and the whole set) and of the subgroup TPR's Wilson score interval (Wilson 1927) minus the overall TPR: the
bootstrap alone collapses when a small subgroup's TPR is 0 or 1 (every replicate alike). The largest gap per
finding also gets a Bonferroni interval over all the run's measured gaps, since it is picked after looking.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy.stats import binomtest

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
    all_rates: list[dict] = []  # per member, for the adjusted intervals
    for i, (key, value, mask) in enumerate(members):
        rates = _rates(labels, scores, thresholds, mask, min_count)
        aurocs = auroc(labels[mask], scores[mask])
        ci = bootstrap_auroc(labels[mask], scores[mask], groups=_subset(groups, mask), n_boot=n_boot, seed=seed)
        per_class = {name: _cell(rates, overall, k, aurocs[k], ci["per_class"][k], gaps[k][:, i], min_count)
                     for k, name in enumerate(pathologies)}
        macro = _nanmean(np.array([c["auroc"] for c in per_class.values()], dtype=np.float64))
        out[key][value] = {"n_images": int(mask.sum()), "macro_auroc": macro, "per_class": per_class}
        all_rates.append(rates)
    return {
        "keys": list(keys),
        "age_bins": [float(b) for b in age_bins],
        "min_count": min_count,
        "overall": {name: {"tpr": _num(overall["tpr"][k]), "fpr": _num(overall["fpr"][k])}
                    for k, name in enumerate(pathologies)},
        "groups": out,
        "largest_gaps": _largest_gaps(out, gaps, members, all_rates, overall, pathologies),
    }


def _cell(rates: dict, overall: dict, k: int, auc: float, auc_ci, gap_samples, min_count: int) -> dict:
    """One subgroup's entry for class ``k``; AUROC only with ``min_count`` positives and negatives."""
    both = rates["n_positive"][k] >= min_count and rates["n_negative"][k] >= min_count
    return {
        "n_positive": int(rates["n_positive"][k]),
        "n_negative": int(rates["n_negative"][k]),
        "auroc": _num(auc if both else np.nan),
        "auroc_ci": [_num(v) for v in (auc_ci if both else (np.nan, np.nan))],
        "tpr": _num(rates["tpr"][k]),
        "fpr": _num(rates["fpr"][k]),
        "tpr_gap": _num(rates["tpr"][k] - overall["tpr"][k]),
        "fpr_gap": _num(rates["fpr"][k] - overall["fpr"][k]),
        "tpr_gap_ci": _gap_interval(gap_samples, rates, k, overall["tpr"][k], 1 - LEVEL),
    }


def _rates(labels, scores, thresholds, mask: np.ndarray, min_count: int) -> dict[str, np.ndarray]:
    """Positive/negative counts, true positives, TPR and FPR per class over ``mask`` rows; NaN below ``min_count``."""
    cm = confusion_matrices(labels[mask], scores[mask], thresholds).astype(np.float64)
    n_pos, n_neg = cm[:, 1].sum(axis=1), cm[:, 0].sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        tpr = np.where(n_pos >= max(min_count, 1), cm[:, 1, 1] / n_pos, np.nan)
        fpr = np.where(n_neg >= max(min_count, 1), cm[:, 0, 1] / n_neg, np.nan)
    return {"n_positive": n_pos, "n_negative": n_neg, "tp": cm[:, 1, 1], "tpr": tpr, "fpr": fpr}


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


def _gap_interval(samples: np.ndarray, rates: dict, k: int, overall: float, alpha: float) -> list[float | None]:
    """``[low, high]`` of class ``k``'s TPR gap at level ``1 - alpha``: hull of the bootstrap percentiles and the
    Wilson interval of the subgroup TPR minus ``overall``; ``[None, None]`` when unmeasured or without replicates."""
    boot = percentiles(samples[:, None], alpha / 2)[0]
    if not np.isfinite(rates["tpr"][k]) or not np.isfinite(overall) or np.isnan(boot).any():
        return [None, None]
    wilson = binomtest(int(rates["tp"][k]), int(rates["n_positive"][k])).proportion_ci(1 - alpha, method="wilson")
    return [_num(min(boot[0], wilson.low - overall)), _num(max(boot[1], wilson.high - overall))]


def _largest_gaps(out: dict, gaps: list, members: list, rates: list, overall: dict, pathologies: Sequence[str]
                  ) -> dict:
    """Per finding, the measured subgroup with the largest absolute TPR gap (None when none is measured), with a
    Bonferroni interval over the ``n_compared`` measured gaps of all findings."""
    measured = {name: [(i, key, value) for i, (key, value, _) in enumerate(members)
                       if out[key][value]["per_class"][name]["tpr_gap"] is not None] for name in pathologies}
    n_compared = sum(map(len, measured.values()))
    result: dict[str, dict | None] = {}
    for k, name in enumerate(pathologies):
        if not measured[name]:
            result[name] = None
            continue
        i, key, value = max(measured[name], key=lambda m: abs(out[m[1]][m[2]]["per_class"][name]["tpr_gap"]))
        entry = out[key][value]["per_class"][name]
        adjusted = _gap_interval(gaps[k][:, i], rates[i], k, overall["tpr"][k],
                                 (1 - LEVEL) / n_compared)
        result[name] = {
            "key": key,
            "subgroup": value,
            **{f: entry[f] for f in ("n_positive", "tpr", "tpr_gap", "tpr_gap_ci", "fpr_gap")},
            "n_compared": n_compared,
            "tpr_gap_ci_adjusted": adjusted,
        }
    return result


def _subset(groups: Sequence | None, mask: np.ndarray) -> np.ndarray | None:
    return None if groups is None else np.asarray(groups)[mask]
