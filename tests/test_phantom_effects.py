"""``cxrl phantom --subgroup-effect``: a finding left undrawn in one subgroup, found by subgroup evaluation."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch
from torch import nn

from cxrl.cli import main
from cxrl.data.phantom import truth_mask, write_dataset
from cxrl.data.phantom.effects import parse_effect
from cxrl.data.prepare import prepare
from cxrl.errors import ConfigError

N, SIZE = 60, 64
PLANTED = "Cardiomegaly:sex=F:0"


def _files(root):
    return {p.relative_to(root): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def default_and_planted(tmp_path_factory):
    root = tmp_path_factory.mktemp("effects")
    default = write_dataset(root / "default", N, size=SIZE, seed=3, workers=1)
    planted = write_dataset(root / "planted", N, size=SIZE, seed=3, workers=1, subgroup_effects=[parse_effect(PLANTED)])
    return default, planted


def test_an_effect_that_hides_nothing_leaves_every_file_byte_identical(default_and_planted, tmp_path):
    default, _ = default_and_planted
    shown = write_dataset(tmp_path / "shown", N, size=SIZE, seed=3, workers=1,
                          subgroup_effects=[parse_effect("Cardiomegaly:sex=F:1")])
    before, after = _files(default), _files(shown)
    manifest = "phantom_truth/manifest.json"
    assert {k: v for k, v in before.items() if str(k) != manifest} == {k: v for k, v in after.items()
                                                                         if str(k) != manifest}
    recorded = json.loads(after[next(k for k in after if str(k) == manifest)])
    assert recorded.pop("subgroup_effects") == [{"finding": "Cardiomegaly", "key": "sex", "value": "F",
                                                 "visibility": 1.0, "n_undrawn": 0}]
    assert recorded == json.loads(before[next(k for k in before if str(k) == manifest)])


def test_planted_finding_is_undrawn_in_the_subgroup_only_and_labels_keep_it(default_and_planted):
    default, planted = default_and_planted
    truth = pd.read_parquet(planted / "phantom_truth" / "truth.parquet")
    sex = pd.read_csv(planted / "train.csv")["Sex"].tolist() + pd.read_csv(planted / "valid.csv")["Sex"].tolist()
    truth["sex"] = sex  # truth rows and CSV rows are both in spec order (train then valid)
    positive = truth[truth["Cardiomegaly"] == 1]
    drawn = positive.apply(lambda r: truth_mask(r, "Cardiomegaly", SIZE).any(), axis=1)
    women, men = (positive["sex"] == "Female").to_numpy(), (positive["sex"] == "Male").to_numpy()
    assert women.any() and men.any()
    assert not drawn[women].any() and drawn[men].all()
    base = pd.read_parquet(default / "phantom_truth" / "truth.parquet")
    pd.testing.assert_series_equal(base["Cardiomegaly"], truth["Cardiomegaly"])
    effect = json.loads((planted / "phantom_truth" / "manifest.json").read_text())["subgroup_effects"][0]
    assert effect["n_undrawn"] == int(women.sum())
    hidden = set(positive["image"][women])
    for image in truth["image"]:
        same = (default / image).read_bytes() == (planted / image).read_bytes()
        assert same != (image in hidden), image


@pytest.mark.parametrize("text, message", [
    ("Cardiomegaly:sex=X:0", "sex must be one of F, M"),
    ("Cardiomegally:sex=F:0", "unknown finding"),
    ("Cardiomegaly:race=A:0", "unknown key"),
    ("Cardiomegaly:age=old:0", "LO-HI"),
    ("Cardiomegaly:sex=F:1.5", r"visibility must be a number in \[0, 1\]"),
    ("Cardiomegaly-sex-F", "expected FINDING:KEY=VALUE:VISIBILITY"),
])
def test_bad_effects_are_clear_errors(text, message, tmp_path, capsys):
    with pytest.raises(ConfigError, match=message):
        parse_effect(text)
    assert main(["phantom", "--out", str(tmp_path / "d"), "--n", "3", "--size", "64", "--subgroup-effect", text]) == 1
    assert "cxrl phantom: error:" in capsys.readouterr().err


class PooledPixels(nn.Module):
    """A fixed 'encoder': the image average-pooled to 8 x 8 (heart width is visible at that scale)."""

    num_features = 64

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.adaptive_avg_pool2d(x, 8).flatten(1)


@pytest.mark.slow
def test_evaluation_finds_the_planted_gap_where_it_was_put(tmp_path):
    from cxrl.evaluate.protocol import run_evaluation

    effect = [parse_effect("Edema:sex=F:0")]  # Edema is the finding pooled pixels see best at 64 px
    caches = []
    for name, seed, n in (("train", 5, 400), ("test", 6, 400)):
        root = write_dataset(tmp_path / name, n, size=SIZE, seed=seed, workers=1, subgroup_effects=effect)
        prepare("chexpert", root, tmp_path / f"{name}-cache", size=SIZE)
        caches.append(tmp_path / f"{name}-cache")
    m = run_evaluation(PooledPixels(), caches[0], tmp_path / "ev", target=caches[1], fractions=[1.0],
                       seeds=1, pathologies=["Cardiomegaly", "Pleural Effusion", "Edema"], blank="zero",
                       subgroups=["sex"], n_bootstrap=300, embedding="none")
    sub = m["runs"][0]["subgroups"]
    women = sub["groups"]["sex"]["F"]["per_class"]
    assert women["Edema"]["tpr_gap_ci"][1] < 0
    assert sub["largest_gaps"]["Edema"]["subgroup"] == "F"
    for finding in ("Cardiomegaly", "Pleural Effusion"):
        low, high = women[finding]["tpr_gap_ci"]
        assert low <= 0 <= high, finding
    report = (tmp_path / "ev" / "report.md").read_text()
    assert "| Edema | sex F |" in report and "![TPR gap per subgroup](subgroup_tpr_gaps.png)" in report
    assert (tmp_path / "ev" / "subgroup_tpr_gaps.png").is_file()
