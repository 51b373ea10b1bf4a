"""Subgroup evaluation (issue 14): per-subgroup AUROC, TPR/FPR and TPR gaps with patient-bootstrap CIs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cxrl.errors import ConfigError
from cxrl.evaluate.subgroups import check_subgroup_settings, present_keys, subgroup_metrics, subgroup_values


def _records(n: int, rng) -> pd.DataFrame:
    return pd.DataFrame({
        "patient_id": (np.arange(n) // 2).astype(str),
        "sex": np.where((np.arange(n) // 2) % 2 == 0, "F", "M"),
        "age": rng.uniform(20, 90, n).astype("float32"),
        "view": "PA",
        "dataset": "toy",
    })


def _missed_in_women(n: int = 800, seed: int = 0):
    """Two findings; A's positives score high except in women, where they look like negatives; B has no gap."""
    rng = np.random.default_rng(seed)
    records = _records(n, rng)
    y = (rng.random((n, 2)) < 0.3).astype(float)
    scores = rng.normal(0, 1, (n, 2)) + 3 * y
    women = (records["sex"] == "F").to_numpy()
    scores[women & (y[:, 0] == 1), 0] -= 3
    return y, scores, records


def test_tpr_gap_is_found_where_positives_are_missed_and_not_elsewhere():
    y, scores, records = _missed_in_women()
    out = subgroup_metrics(y, scores, np.array([1.5, 1.5]), records, ["A", "B"], ["sex", "age"],
                           groups=records["patient_id"], n_boot=300, seed=0)
    women_a = out["groups"]["sex"]["F"]["per_class"]["A"]
    assert women_a["tpr_gap"] < -0.3 and women_a["tpr_gap_ci"][1] < 0
    assert women_a["tpr"] == pytest.approx(women_a["tpr_gap"] + out["overall"]["A"]["tpr"])
    assert out["groups"]["sex"]["M"]["per_class"]["A"]["tpr_gap_ci"][0] > 0
    largest = out["largest_gaps"]["A"]
    assert (largest["key"], largest["subgroup"]) == ("sex", "F") and largest["tpr_gap_ci_adjusted"][1] < 0
    b = out["largest_gaps"]["B"]
    assert b["tpr_gap_ci_adjusted"][0] <= 0 <= b["tpr_gap_ci_adjusted"][1]
    assert women_a["auroc"] < out["groups"]["sex"]["M"]["per_class"]["A"]["auroc"] - 0.2


def test_subgroup_with_too_few_positives_is_nan_with_its_count_never_zero():
    y, scores, records = _missed_in_women(200)
    records.loc[:3, "age"] = 10.0  # four images in the 0-20 bin
    y[:4, 0], y[4:, 0] = [1, 0, 0, 0], y[4:, 0]
    out = subgroup_metrics(y, scores, np.array([1.5, 1.5]), records, ["A", "B"], ["age"], n_boot=50, min_count=5)
    young = out["groups"]["age"]["0-20"]
    cell = young["per_class"]["A"]
    assert young["n_images"] == 4 and (cell["n_positive"], cell["n_negative"]) == (1, 3)
    assert cell["tpr"] is None and cell["tpr_gap"] is None and cell["auroc"] is None and cell["fpr"] is None
    assert cell["tpr_gap_ci"] == [None, None] and young["macro_auroc"] is None


def test_age_is_binned_by_the_default_edges_or_given_ones():
    records = pd.DataFrame({"age": [5.0, 20.0, 39.9, 85.0, np.nan]})
    assert list(subgroup_values(records, "age")) == ["0-20", "20-40", "20-40", "80+", None]
    assert list(subgroup_values(records, "age", [0, 50])) == ["0-50", "0-50", "0-50", "50+", None]
    with pytest.raises(ConfigError, match="increasing"):
        check_subgroup_settings(["age"], [40, 20])
    with pytest.raises(ConfigError, match="race"):
        check_subgroup_settings(["race"], [0, 20])


def test_default_subgroups_are_the_columns_with_two_or_more_values():
    records = _records(20, np.random.default_rng(0))
    assert present_keys(records) == ["sex", "age"]
