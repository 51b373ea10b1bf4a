"""Metrics against scikit-learn on small arrays with NaN masks; thresholds; bootstrap intervals."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, cohen_kappa_score, f1_score, roc_auc_score

from cxrl.evaluate import metrics as M


def _data(n=120, k=4, seed=0, missing=0.2):
    rng = np.random.default_rng(seed)
    y = (rng.random((n, k)) < 0.35).astype(np.float64)
    scores = y * rng.normal(1.0, 1.0, (n, k)) + rng.normal(0, 1.0, (n, k))
    scores[:10] = np.round(scores[:10])  # ties
    y[rng.random((n, k)) < missing] = np.nan
    return y, scores


def test_auroc_and_ap_match_sklearn_with_nan_masks():
    y, s = _data()
    for k, (a, ap) in enumerate(zip(M.auroc(y, s), M.average_precision(y, s), strict=True)):
        keep = ~np.isnan(y[:, k])
        assert a == pytest.approx(roc_auc_score(y[keep, k], s[keep, k]), abs=1e-12)
        assert ap == pytest.approx(average_precision_score(y[keep, k], s[keep, k]), abs=1e-12)


def test_single_class_split_gives_nan_and_a_note_not_a_crash():
    y, s = _data(k=2)
    y[:, 1] = np.where(np.isnan(y[:, 1]), np.nan, 0.0)
    assert np.isfinite(M.auroc(y, s)[0]) and np.isnan(M.auroc(y, s)[1])
    assert np.isnan(M.average_precision(y, s)[1])
    result = M.evaluate_scores(y, s, M.choose_thresholds(y, s), ["A", "B"], n_boot=50)
    assert result["per_class"]["B"]["auroc"] is None
    assert result["macro_auroc"] == pytest.approx(M.auroc(y, s)[0])
    assert any(note.startswith("B:") for note in result["notes"])


def test_weighted_auroc_equals_auroc_of_the_repeated_sample():
    rng = np.random.default_rng(1)
    pos = rng.random(40) < 0.4
    s = np.round(rng.normal(size=40), 1)
    w = rng.integers(0, 4, size=(3, 40))
    got = M.weighted_auroc(pos, s, w)
    for b in range(3):
        idx = np.repeat(np.arange(40), w[b])
        assert got[b] == pytest.approx(roc_auc_score(pos[idx], s[idx]), abs=1e-12)


def test_threshold_metrics_match_sklearn():
    y, s = _data(seed=2)
    thr = M.choose_thresholds(y, s, "youden")
    cm = M.confusion_matrices(y, s, thr)
    got = M.threshold_metrics(cm)
    for k in range(y.shape[1]):
        keep = ~np.isnan(y[:, k])
        truth, pred = y[keep, k], (s[keep, k] >= thr[k]).astype(float)
        assert cm[k].sum() == keep.sum()
        assert got["f1"][k] == pytest.approx(f1_score(truth, pred))
        assert got["kappa"][k] == pytest.approx(cohen_kappa_score(truth, pred))
        assert got["accuracy"][k] == pytest.approx((truth == pred).mean())


def test_max_f1_threshold_is_optimal_on_validation_and_applied_unchanged_to_test():
    y_val, s_val = _data(seed=3)
    thr = M.choose_thresholds(y_val, s_val, "max_f1")
    for k in range(y_val.shape[1]):
        keep = ~np.isnan(y_val[:, k])
        truth, scores = y_val[keep, k] == 1, s_val[keep, k]

        def f1(t, truth=truth, scores=scores):
            pred = scores >= t
            return 2 * (pred & truth).sum() / (pred.sum() + truth.sum())

        assert f1(thr[k]) == pytest.approx(max(f1(t) for t in np.unique(scores)))
    y_test, s_test = _data(seed=4)
    result = M.evaluate_scores(y_test, s_test, thr, list("ABCD"), n_boot=20)
    for k, name in enumerate("ABCD"):
        keep = ~np.isnan(y_test[:, k])
        assert result["per_class"][name]["threshold"] == pytest.approx(thr[k])
        pred = s_test[keep, k] >= thr[k]
        assert result["per_class"][name]["confusion"][1][1] == int((pred & (y_test[keep, k] == 1)).sum())


def test_bootstrap_ci_contains_estimate_is_seeded_and_resamples_patients():
    y, s = _data(n=200, k=3, seed=5)
    patients = np.arange(200) // 4
    a = M.bootstrap_auroc(y, s, groups=patients, n_boot=300, seed=7)
    b = M.bootstrap_auroc(y, s, groups=patients, n_boot=300, seed=7)
    c = M.bootstrap_auroc(y, s, groups=patients, n_boot=300, seed=8)
    np.testing.assert_array_equal(a["macro"], b["macro"])
    assert not np.array_equal(a["macro"], c["macro"])
    point = M.auroc(y, s)
    assert a["macro"][0] <= np.nanmean(point) <= a["macro"][1]
    assert np.all(a["per_class"][:, 0] <= point) and np.all(point <= a["per_class"][:, 1])
    assert 0 < a["macro"][1] - a["macro"][0] < 0.3


def test_evaluate_scores_is_json_ready():
    import json

    y, s = _data()
    out = M.evaluate_scores(y, s, M.choose_thresholds(y, s), list("ABCD"), n_boot=20)
    text = json.dumps(out, allow_nan=False)
    assert "macro_auroc_ci" in text and set(out["per_class"]["A"]) >= {"auroc", "ap", "f1", "kappa", "confusion"}


def test_f1_kappa_precision_are_nan_without_positives_or_negatives_and_left_out_of_macros():
    y, s = _data(k=3, missing=0.0)
    y[:, 1], y[:, 2] = 0.0, 1.0  # class B: no positives; class C: no negatives
    thresholds = np.array([0.5, -10.0, 10.0])  # B predicts positives (FP), C predicts negatives (FN)
    result = M.evaluate_scores(y, s, thresholds, ["A", "B", "C"], n_boot=20)
    for name in ("B", "C"):
        assert [result["per_class"][name][m] for m in ("f1", "kappa", "precision")] == [None, None, None]
    for metric in ("f1", "kappa", "precision"):
        assert result[f"macro_{metric}"] == pytest.approx(result["per_class"]["A"][metric])
    assert any(n.startswith("B:") and "F1, kappa and precision" in n and "left out" in n for n in result["notes"])
