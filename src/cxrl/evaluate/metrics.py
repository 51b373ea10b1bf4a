"""Multi-label classification metrics: pure functions on numpy arrays, NaN labels masked per class.

Conventions (also in ``docs/metrics.md``):

* ``y`` is ``(N, K)`` float with 1 positive, 0 negative, NaN unknown (masked for that class only);
  ``scores`` is ``(N, K)`` float (probabilities or logits; only the order matters for AUROC and AP).
* A class whose split has only positives or only negatives gets NaN for the metrics that need both
  (AUROC, AP, F1, kappa, precision) with a note, never an exception; macro averages are ``nanmean`` over
  classes, so such a class is left out of them.
* Thresholds are chosen on the validation split (maximum F1, or Youden's J = TPR - FPR) and applied unchanged
  to the test split.
* Bootstrap intervals resample *patients* (all images of a drawn patient come together) when patient ids are
  given, else images; percentile 95 % intervals, seeded.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence

import numpy as np
from sklearn.metrics import average_precision_score

THRESHOLD_RULES = ("max_f1", "youden")
_CHUNK = 250  # bootstrap replicates per vectorized pass (bounds memory on large test sets)


def _observed(y: np.ndarray, scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    keep = ~np.isnan(y[:, k])
    return y[keep, k] > 0.5, scores[keep, k]


def weighted_auroc(positive: np.ndarray, scores: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """AUROC (Mann-Whitney U / (n+ n-), ties count 1/2) for each row of integer ``weights`` ``(B, n)``.

    Sorting once and summing weights within tied-score groups makes ``B`` bootstrap replicates one
    vectorized pass (Hanley & McNeil 1982, eq. 1 with sample multiplicities). Rows with no positive or
    no negative weight give NaN.
    """
    order = np.argsort(scores, kind="stable")
    s, pos = scores[order], positive[order]
    w = np.atleast_2d(weights)[:, order].astype(np.float64)
    starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])
    w_pos = np.add.reduceat(w * pos, starts, axis=1)
    w_neg = np.add.reduceat(w * ~pos, starts, axis=1)
    neg_below = np.cumsum(w_neg, axis=1) - w_neg
    n_pos, n_neg = w_pos.sum(axis=1), w_neg.sum(axis=1)
    u = (w_pos * (neg_below + 0.5 * w_neg)).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where((n_pos > 0) & (n_neg > 0), u / (n_pos * n_neg), np.nan)


def auroc(y: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Per-class AUROC ``(K,)``; NaN where a class has one label value only among observed rows."""
    out = np.full(y.shape[1], np.nan)
    for k in range(y.shape[1]):
        pos, s = _observed(y, scores, k)
        if len(s):
            out[k] = weighted_auroc(pos, s, np.ones((1, len(s))))[0]
    return out


def average_precision(y: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Per-class average precision (area under the precision-recall step curve); NaN without positives."""
    out = np.full(y.shape[1], np.nan)
    for k in range(y.shape[1]):
        pos, s = _observed(y, scores, k)
        if pos.any() and not pos.all():
            out[k] = average_precision_score(pos, s)
    return out


def choose_thresholds(y: np.ndarray, scores: np.ndarray, rule: str = "max_f1") -> np.ndarray:
    """Per-class decision thresholds on a validation split: predict positive when ``score >= threshold``.

    ``max_f1`` maximizes F1 = 2TP / (2TP + FP + FN); ``youden`` maximizes J = TPR - FPR (Youden 1950).
    Candidates are the observed scores; a class with one label value only gets the median score.
    """
    if rule not in THRESHOLD_RULES:
        raise ValueError(f"threshold rule {rule!r}: expected one of {THRESHOLD_RULES}")
    out = np.full(y.shape[1], np.nan)
    for k in range(y.shape[1]):
        pos, s = _observed(y, scores, k)
        if not len(s):
            continue
        if pos.all() or not pos.any():
            out[k] = float(np.median(s))
            continue
        order = np.argsort(-s, kind="stable")
        s_desc, p_desc = s[order], pos[order]
        last_of_tie = np.r_[s_desc[1:] != s_desc[:-1], True]
        tp = np.cumsum(p_desc)[last_of_tie]
        fp = np.cumsum(~p_desc)[last_of_tie]
        f1 = 2 * tp / (2 * tp + fp + (pos.sum() - tp))
        objective = f1 if rule == "max_f1" else tp / pos.sum() - fp / (~pos).sum()
        out[k] = s_desc[last_of_tie][int(np.argmax(objective))]
    return out


def confusion_matrices(y: np.ndarray, scores: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """``(K, 2, 2)`` integer counts ``[[TN, FP], [FN, TP]]`` per class over observed rows."""
    out = np.zeros((y.shape[1], 2, 2), dtype=np.int64)
    for k in range(y.shape[1]):
        pos, s = _observed(y, scores, k)
        pred = s >= thresholds[k]
        out[k] = [[np.sum(~pos & ~pred), np.sum(~pos & pred)], [np.sum(pos & ~pred), np.sum(pos & pred)]]
    return out


def threshold_metrics(cm: np.ndarray) -> dict[str, np.ndarray]:
    """Accuracy, precision, recall, F1 and Cohen's kappa (Cohen 1960) per class from ``(K, 2, 2)`` counts.

    A class without positives or without negatives gets NaN precision, F1 and kappa (they are 0 or undefined
    there whatever the model), as AUROC and AP; recall stays defined while there are positives.
    """
    cm = cm.astype(np.float64)
    tn, fp, fn, tp = cm[:, 0, 0], cm[:, 0, 1], cm[:, 1, 0], cm[:, 1, 1]
    n = tn + fp + fn + tp
    both = (tp + fn > 0) & (tn + fp > 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        observed = (tp + tn) / n
        chance = ((tp + fp) * (tp + fn) + (tn + fn) * (tn + fp)) / n**2
        kappa = np.where(chance < 1, (observed - chance) / (1 - chance), np.nan)
        return {
            "accuracy": observed,
            "precision": np.where(both, tp / (tp + fp), np.nan),
            "recall": tp / (tp + fn),
            "f1": np.where(both, 2 * tp / (2 * tp + fp + fn), np.nan),
            "kappa": np.where(both, kappa, np.nan),
        }


def bootstrap_auroc(
    y: np.ndarray,
    scores: np.ndarray,
    groups: Sequence | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, np.ndarray]:
    """Percentile bootstrap intervals of per-class and macro AUROC (Efron & Tibshirani 1993, ch. 13).

    ``groups`` (e.g. patient ids, one per row) makes each replicate draw groups with replacement and keep
    all their rows, so correlated images of one patient do not narrow the interval. Returns ``per_class``
    ``(K, 2)`` and ``macro`` ``(2,)`` as ``[low, high]``; NaN where a class is undefined in most replicates,
    and everywhere when ``n_boot`` is 0 (no intervals).
    """
    if n_boot < 0:
        raise ValueError(f"n_boot must be >= 0 (0: no intervals), found {n_boot}")
    if n_boot == 0:
        return {"per_class": np.full((y.shape[1], 2), np.nan), "macro": np.full(2, np.nan)}
    per_class = np.full((n_boot, y.shape[1]), np.nan)
    for start, row_weights in bootstrap_weights(len(y), groups, n_boot, seed):
        for k in range(y.shape[1]):
            keep = ~np.isnan(y[:, k])
            if not keep.any():  # a subset without labels of this class: NaN, as auroc()
                continue
            per_class[start : start + len(row_weights), k] = weighted_auroc(
                y[keep, k] > 0.5, scores[keep, k], row_weights[:, keep]
            )
    alpha = (1 - level) / 2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a replicate where every class is undefined
        macro = np.nanmean(per_class, axis=1)
    return {"per_class": percentiles(per_class, alpha), "macro": percentiles(macro[:, None], alpha)[0]}


def bootstrap_weights(
    n_rows: int, groups: Sequence | None, n_boot: int, seed: int
) -> Iterator[tuple[int, np.ndarray]]:
    """``(first replicate, row multiplicities (b, n_rows))`` in chunks of at most ``_CHUNK`` replicates.

    Each replicate draws the distinct ``groups`` (one per row; default: each row its own) with replacement and
    weights every row by how often its group was drawn; seeded, so callers sharing a seed share replicates.
    """
    rng = np.random.default_rng(seed)
    groups = np.arange(n_rows) if groups is None else np.asarray(groups)
    _, row_group = np.unique(groups, return_inverse=True)
    n_groups = int(row_group.max(initial=-1)) + 1
    for start in range(0, n_boot, _CHUNK):
        b = min(_CHUNK, n_boot - start)
        draws = rng.integers(0, n_groups, size=(b, n_groups)) + n_groups * np.arange(b)[:, None]
        yield start, np.bincount(draws.ravel(), minlength=b * n_groups).reshape(b, n_groups)[:, row_group]


def bootstrap_mean_ci(
    values: np.ndarray, groups: Sequence | None = None, n_boot: int = 1000, seed: int = 0, level: float = 0.95
) -> np.ndarray:
    """Percentile bootstrap interval ``[low, high]`` of the mean of per-row ``values``, ``groups`` (e.g. patients)
    resampled as in :func:`bootstrap_auroc`; NaN when ``n_boot`` is 0."""
    values = np.asarray(values, dtype=np.float64)
    if n_boot == 0 or not len(values):
        return np.full(2, np.nan)
    means = np.concatenate([w @ values / w.sum(1) for _, w in bootstrap_weights(len(values), groups, n_boot, seed)])
    return percentiles(means[:, None], (1 - level) / 2)[0]


def percentiles(samples: np.ndarray, alpha: float) -> np.ndarray:
    """``[low, high]`` per column, NaN for a column defined in fewer than half of the replicates (or none)."""
    out = np.full((samples.shape[1], 2), np.nan)
    for k in range(samples.shape[1]):
        col = samples[:, k][~np.isnan(samples[:, k])]
        if len(col) and len(col) >= len(samples) / 2:
            out[k] = np.quantile(col, [alpha, 1 - alpha])
    return out


def single_class_notes(y: np.ndarray, pathologies: Sequence[str], split: str) -> list[str]:
    """Human-readable notes for classes whose metrics are NaN because a split lacks one label value."""
    notes = []
    for k, name in enumerate(pathologies):
        obs = y[:, k][~np.isnan(y[:, k])]
        n_pos = int((obs > 0.5).sum())
        if n_pos == 0 or n_pos == len(obs):
            notes.append(
                f"{name}: {split} has {n_pos} positive(s) of {len(obs)} labelled rows; AUROC, AP, F1, kappa and "
                "precision are undefined (null) and left out of the macro averages"
            )
    return notes


def evaluate_scores(
    y_test: np.ndarray,
    s_test: np.ndarray,
    thresholds: np.ndarray,
    pathologies: Sequence[str],
    groups: Sequence | None = None,
    n_boot: int = 1000,
    seed: int = 0,
) -> dict:
    """Every test metric of one fitted model, as JSON-ready plain data (schema: ``docs/metrics.md``)."""
    per_auroc = auroc(y_test, s_test)
    ap = average_precision(y_test, s_test)
    cm = confusion_matrices(y_test, s_test, thresholds)
    at_threshold = threshold_metrics(cm)
    ci = bootstrap_auroc(y_test, s_test, groups=groups, n_boot=n_boot, seed=seed)
    per_class = {
        name: {
            "auroc": _num(per_auroc[k]),
            "auroc_ci": [_num(v) for v in ci["per_class"][k]],
            "ap": _num(ap[k]),
            "threshold": _num(thresholds[k]),
            **{m: _num(v[k]) for m, v in at_threshold.items()},
            "confusion": cm[k].tolist(),
            "n_positive": int(cm[k, 1].sum()),
            "n_negative": int(cm[k, 0].sum()),
        }
        for k, name in enumerate(pathologies)
    }
    return {
        "macro_auroc": _nanmean(per_auroc),
        "macro_auroc_ci": [_num(v) for v in ci["macro"]],
        "macro_ap": _nanmean(ap),
        **{f"macro_{m}": _nanmean(v) for m, v in at_threshold.items()},
        "per_class": per_class,
        "notes": single_class_notes(y_test, pathologies, "test"),
    }


def _nanmean(x: np.ndarray) -> float | None:
    x = np.asarray(x, dtype=np.float64)
    return _num(np.nanmean(x)) if np.isfinite(x).any() else None


def _num(x) -> float | None:
    """A JSON-safe float: NaN and inf become ``None`` (``null``)."""
    x = float(x)
    return x if np.isfinite(x) else None
