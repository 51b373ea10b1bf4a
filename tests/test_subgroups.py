"""Subgroup evaluation (issue 14): per-subgroup AUROC, TPR/FPR and TPR gaps with patient-bootstrap CIs."""

from __future__ import annotations

import json

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


def test_no_bootstrap_gives_gaps_without_intervals():
    """--bootstrap 0: the gaps are measured, their intervals are null (it used to crash on an empty quantile)."""
    y, scores, records = _missed_in_women()
    out = subgroup_metrics(y, scores, np.array([1.5, 1.5]), records, ["A", "B"], ["sex"],
                           groups=records["patient_id"], n_boot=0, seed=0)
    women_a = out["groups"]["sex"]["F"]["per_class"]["A"]
    assert women_a["tpr_gap"] < -0.3 and women_a["tpr_gap_ci"] == [None, None]


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


@pytest.mark.usefixtures("one_thread")
def test_evaluate_reports_subgroups_present_in_the_test_rows(toy_cache, tmp_path):
    from cxrl.data.cache import write_cache
    from cxrl.evaluate.protocol import run_evaluation

    records = toy_cache.records.copy()
    records["sex"] = np.where(records["patient_id"].astype(int) % 2 == 0, "F", "M")
    cache = write_cache(tmp_path / "cache", np.asarray(toy_cache.images), records, {"source": "toy-sexes"})
    m = run_evaluation("random", cache.path, tmp_path / "ev", fractions=[0.5, 1.0], seeds=1, backbone="tiny_cnn",
                       n_bootstrap=50, min_positives=3, embedding="none")
    assert m["protocol"]["subgroups"] == ["sex"]  # view, age and dataset have one value in the toy cache
    assert "subgroups" not in m["runs"][0]  # only the largest fraction's runs, the ones reported
    sub = m["runs"][1]["subgroups"]
    assert set(sub["groups"]["sex"]) == {"F", "M"}
    assert sum(g["n_images"] for g in sub["groups"]["sex"].values()) == m["data"]["n_test_rows"]
    report = (tmp_path / "ev" / "report.md").read_text()
    assert "## Subgroups (100% labels, seed 0)" in report and "| sex F |" in report
    assert m["plots"]["subgroup_tpr_gaps"] == "subgroup_tpr_gaps.png"
    none = run_evaluation("random", cache.path, tmp_path / "ev2", fractions=[1.0], seeds=1, backbone="tiny_cnn",
                          n_bootstrap=0, min_positives=3, embedding="none", subgroups=[])
    assert "subgroups" not in none["runs"][0] and "subgroup_tpr_gaps" not in none["plots"]


def test_unknown_subgroup_is_a_clean_cli_error(toy_cache, tmp_path, capsys):
    from cxrl.cli import main

    args = ["evaluate", "--encoder", "random", "--data", str(toy_cache.path), "--out", str(tmp_path / "ev")]
    assert main([*args, "--subgroups", "sex,race"]) == 1
    assert "unknown subgroups ['race']" in capsys.readouterr().err


def _eval_with_subgroups(path, name: str, women_auroc: list[float]) -> None:
    runs = [{"fraction": f, "seed": s, "subgroups": {"groups": {"sex": {"F": {
        "macro_auroc": a if f == 1.0 else 0.5, "per_class": {"A": {"tpr_gap": -0.2}, "B": {"tpr_gap": None}}}}}}}
        for f in (0.1, 1.0) for s, a in enumerate(women_auroc)]
    path.mkdir(parents=True)
    (path / "metrics.json").write_text(json.dumps({
        "encoder": {"name": name, "method": "simclr"}, "protocol": {"protocol": "linear"},
        "summary": {"1.0": {"macro_auroc_mean": 0.8, "macro_auroc_std": 0.0}}, "runs": runs}))


def test_compare_shows_one_subgroup_column_across_encoders(tmp_path, capsys):
    from cxrl.cli import main

    _eval_with_subgroups(tmp_path / "a", "enc-a", [0.7, 0.8])
    _eval_with_subgroups(tmp_path / "b", "enc-b", [0.6])
    assert main(["compare", str(tmp_path / "a"), str(tmp_path / "b"), "--subgroup", "sex=F"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[2].endswith("| 100% labels | sex=F macro AUROC |")
    assert lines[4].endswith("| 0.750 ± 0.071 (TPR gap -0.200, 100% labels) |")
    assert lines[5].endswith("| 0.600 ± 0.000 (TPR gap -0.200, 100% labels) |")
    assert main(["compare", str(tmp_path / "a"), "--subgroup", "age=80+"]) == 1
    assert "in none of these evaluations; they have sex=F" in capsys.readouterr().err


def test_gap_interval_of_a_small_subgroup_with_every_positive_found_is_not_collapsed():
    """6 of 6 positives found against 70 % overall: every bootstrap replicate of the subgroup says TPR 1, yet 6/6
    is well within chance of 0.7 (0.7^6 = 0.12); the interval must contain 0."""
    rng = np.random.default_rng(0)
    records = _records(400, rng)
    records["view"] = np.where(np.arange(400) < 12, "AP", "PA")  # 12 AP images, 6 of them positive
    y = np.zeros((400, 1))
    y[:6, 0], y[12:212, 0] = 1, 1
    scores = np.where(y[:, 0] == 1, 1.0, -1.0)[:, None]
    scores[12:72, 0] = -1.0  # 60 of the 200 PA positives missed: overall TPR 146/206
    out = subgroup_metrics(y, scores, np.array([0.0]), records, ["A"], ["view"], groups=records["patient_id"],
                           n_boot=200)
    ap = out["groups"]["view"]["AP"]["per_class"]["A"]
    assert ap["tpr"] == 1.0 and ap["tpr_gap"] == pytest.approx(1 - 146 / 206)
    assert ap["tpr_gap_ci"][0] < 0 < ap["tpr_gap_ci"][1]
