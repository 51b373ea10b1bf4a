"""``cxrl inspect``: counts agree with the records, co-occurrence, the label-shift KL, CLI table/JSON/plot."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from cxrl.cli import main as cli_main
from cxrl.data.cache import write_cache
from cxrl.data.inspect import label_kl, label_shift, plot_summary, summarize
from cxrl.data.labels import PATHOLOGIES
from cxrl.errors import DataError


def small_cache(path, labels: dict[str, list[float]], **columns):
    n = len(next(iter(labels.values())))
    rec = pd.DataFrame(
        {"image_path": [f"/{i}.png" for i in range(n)], "patient_id": [str(i // 2) for i in range(n)], **columns}
    )
    for p in PATHOLOGIES:
        rec[p] = np.asarray(labels.get(p, [np.nan] * n), dtype="float32")
    return write_cache(path, np.zeros((n, 8, 8), np.uint8), rec, {"dataset": "toy", "options": {"equalize": "none"}})


def test_summary_counts(tmp_path):
    nan = np.nan
    cache = small_cache(
        tmp_path / "a",
        {"Edema": [1, 1, 0, -1, nan, 1], "Cardiomegaly": [1, 0, 0, 1, 1, nan]},
        split=["train", "train", "train", "valid", "test", None],
        view=["PA", "AP", "PA", "PA", "LATERAL", "PA"],
        sex=["F", "M", None, "F", "F", "M"],
    )
    s = summarize(cache)
    assert s["images"] == 6 and s["patients"] == 3 and s["image_size"] == 8
    assert s["splits"] == {"train": 3, "valid": 1, "test": 1, "unknown": 1}
    assert s["views"] == {"PA": 4, "AP": 1, "LATERAL": 1} and s["sex"] == {"F": 3, "M": 2, "unknown": 1}
    assert list(s["labels"]) == ["Cardiomegaly", "Edema"]  # canonical order, only labelled ones
    assert s["labels"]["Edema"] == {"positive": 3, "negative": 1, "uncertain": 1, "missing": 1, "prevalence": 0.6}
    assert s["cooccurrence"] == {"labels": ["Cardiomegaly", "Edema"], "counts": [[3, 1], [1, 3]]}


def test_label_kl_is_zero_for_same_mix_and_grows_with_shift(tmp_path):
    same = small_cache(tmp_path / "a", {"Edema": [1, 0] * 10, "Cardiomegaly": [1, 1, 0, 0] * 5})
    twin = small_cache(tmp_path / "b", {"Edema": [1, 0] * 10, "Cardiomegaly": [1, 1, 0, 0] * 5})
    mild = small_cache(tmp_path / "c", {"Edema": [1, 0, 0, 0] * 5, "Cardiomegaly": [1, 1, 0, 0] * 5})
    strong = small_cache(tmp_path / "d", {"Edema": [0] * 20, "Cardiomegaly": [1] * 20, "Hernia": [1] * 20})
    assert label_kl(same, twin) == pytest.approx(0.0, abs=1e-12)
    assert 0 < label_kl(same, mild) < label_kl(same, strong)
    shift = label_shift(same, strong)
    assert list(shift["labels"]) == ["Cardiomegaly", "Edema"]  # Hernia is not shared
    assert shift["labels"]["Edema"]["prevalence_b"] == pytest.approx(1 / 22)  # (0 + 1) / (20 + 2)
    p = np.array([11 / 22, 11 / 22]) / 1.0  # both labels at prevalence 0.5 in `same`
    q = np.array([21 / 22, 1 / 22])
    p, q = p / p.sum(), q / q.sum()
    assert shift["kl"] == pytest.approx(float(np.sum(p * np.log(p / q))))


def test_unlabelled_cache_summarizes_but_does_not_plot(tmp_path):
    cache = small_cache(tmp_path / "a", {"Edema": [np.nan, np.nan]})
    summary = summarize(cache)
    assert summary["labels"] == {} and summary["cooccurrence"] == {"labels": [], "counts": []}
    with pytest.raises(DataError, match="no labelled"):
        plot_summary(summary, tmp_path / "p.png")


def test_label_kl_needs_shared_labels(tmp_path):
    a = small_cache(tmp_path / "a", {"Edema": [1, 0]})
    b = small_cache(tmp_path / "b", {"Hernia": [1, 0]})
    with pytest.raises(DataError, match="share no"):
        label_kl(a, b)


def test_cli_table_json_plot_and_compare(toy_cache, tmp_path, capsys):
    other = small_cache(tmp_path / "other", {"Edema": [1, 0, 0, 0], "Cardiomegaly": [1, 1, 1, 0]})
    assert (
        cli_main(["inspect", str(toy_cache.path), "--compare", str(other.path), "--plot", str(tmp_path / "p.png")]) == 0
    )
    table = capsys.readouterr().out
    assert "Cardiomegaly" in table and "KL(this || other)" in table and "96 images" in table
    assert (tmp_path / "p.png").stat().st_size > 10_000
    assert cli_main(["inspect", str(toy_cache.path), "--json"]) == 0
    parsed = json.loads(capsys.readouterr().out)
    assert parsed["images"] == 96 and set(parsed["labels"]) == {"Cardiomegaly", "Pleural Effusion", "Edema"}
