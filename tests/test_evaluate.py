"""``cxrl evaluate`` and ``run_evaluation`` end to end on the toy cache with a tiny encoder."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from cxrl.cli import main
from cxrl.data.cache import write_cache
from cxrl.errors import DataError, LeakageError
from cxrl.evaluate.protocol import run_evaluation
from cxrl.models import create_encoder, save_encoder

QUICK = dict(backbone="tiny_cnn", n_bootstrap=100, min_positives=2, embedding="none")
TOP_KEYS = {"schema_version", "encoder", "data", "protocol", "pathologies", "runs", "summary", "notes", "plots"}
RUN_KEYS = {"fraction", "seed", "n_train_images", "n_train_patients", "selection", "macro_auroc", "macro_auroc_ci",
            "macro_ap", "macro_f1", "macro_kappa", "macro_accuracy", "macro_precision", "macro_recall", "per_class"}
CLASS_KEYS = {"auroc", "auroc_ci", "ap", "threshold", "f1", "kappa", "accuracy", "precision", "recall", "confusion"}


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A saved RUN dir holding an exported tiny_cnn encoder, as the engine writes it."""
    torch.manual_seed(1)
    path = tmp_path_factory.mktemp("run")
    save_encoder(path, create_encoder("tiny_cnn"), {"image_size": 64, "method": "simclr", "config": {}})
    return path


def _variant(toy_cache, path, edit):
    records = toy_cache.records.copy()
    edit(records)
    return write_cache(path, np.asarray(toy_cache.images), records, {"source": "toy-variant"})


@pytest.mark.slow
def test_cli_random_encoder_writes_documented_outputs(toy_cache, tmp_path, capsys):
    out = tmp_path / "eval"
    code = main(["evaluate", "--encoder", "random", "--backbone", "tiny_cnn", "--data", str(toy_cache.path),
                 "--fractions", "0.5,1", "--seeds", "2", "--out", str(out), "--min-positives", "2",
                 "--bootstrap", "100", "--embedding", "tsne", "--device", "cpu"])
    assert code == 0
    assert "macro AUROC" in capsys.readouterr().out
    m = json.loads((out / "metrics.json").read_text())
    assert set(m) >= TOP_KEYS
    assert m["pathologies"] == ["Cardiomegaly", "Edema", "Pleural Effusion"]
    assert m["encoder"]["method"] == "random" and m["protocol"]["protocol"] == "linear"
    assert len(m["runs"]) == 4 and set(m["runs"][0]) >= RUN_KEYS
    assert set(m["runs"][0]["per_class"]["Edema"]) >= CLASS_KEYS
    assert set(m["summary"]) == {"0.5", "1.0"}
    full = m["summary"]["1.0"]
    assert full["macro_auroc_mean"] == pytest.approx(np.mean(full["macro_auroc_values"]))
    assert full["macro_auroc_mean"] > 0.8  # the toy labels are bright discs: linearly decodable from random features
    low, high = m["runs"][-1]["macro_auroc_ci"]
    assert low <= m["runs"][-1]["macro_auroc"] <= high
    for name in m["plots"].values():
        assert (out / name).stat().st_size > 1000
    assert set(m["plots"]) == {"label_efficiency", "roc", "per_class_auroc", "confusion", "embedding"}
    html = (out / "report.html").read_text()
    assert "<table>" in html and 'src="roc.png"' in html
    assert "| 100% |" in (out / "report.md").read_text()


def test_saved_run_dir_is_evaluated_and_features_are_cached(toy_cache, run_dir, tmp_path):
    out = tmp_path / "eval"
    first = run_evaluation(run_dir, toy_cache.path, out, fractions=[1.0], seeds=1, **QUICK)
    assert first["encoder"]["method"] == "simclr" and first["encoder"]["name"] == run_dir.name
    assert first["encoder"]["image_size"] == 64
    cached = list((out / "features").glob("*.npz"))
    assert len(cached) == 1
    stamp = cached[0].stat().st_mtime_ns
    again = run_evaluation(run_dir, toy_cache.path, out, fractions=[1.0], seeds=1, **QUICK)
    assert cached[0].stat().st_mtime_ns == stamp  # read back, not recomputed
    assert again["runs"][0]["macro_auroc"] == first["runs"][0]["macro_auroc"]
    smaller = run_evaluation(run_dir, toy_cache.path, out, fractions=[1.0], seeds=1, image_size=32, **QUICK)
    assert len(list((out / "features").glob("*.npz"))) == 2 and smaller["encoder"]["image_size"] == 32


def test_leaking_split_is_refused(toy_cache, tmp_path):
    def leak(records):
        records.loc[records.index[-1], "patient_id"] = records["patient_id"].iloc[0]

    leaky = _variant(toy_cache, tmp_path / "leaky", leak)
    with pytest.raises(LeakageError):
        run_evaluation("random", leaky.path, tmp_path / "eval", fractions=[1.0], seeds=1, **QUICK)
    assert not (tmp_path / "eval" / "metrics.json").exists()


def test_transfer_tests_on_target_over_shared_pathologies(toy_cache, tmp_path):
    def target_edit(records):
        records["Pleural Effusion"] = np.nan  # not labelled in the target
        records["split"] = "train"  # no test split: every row is a test row
        records["dataset"] = "other"

    target = _variant(toy_cache, tmp_path / "target", target_edit)
    code = main(["evaluate", "--encoder", "random", "--backbone", "tiny_cnn", "--data", str(toy_cache.path),
                 "--target", str(target.path), "--fractions", "1", "--seeds", "1", "--out", str(tmp_path / "ev"),
                 "--min-positives", "2", "--bootstrap", "50", "--embedding", "none"])
    assert code == 0
    m = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert m["pathologies"] == ["Cardiomegaly", "Edema"]
    assert m["data"]["target"]["path"] == str(target.path) and m["data"]["n_test_rows"] == len(target)
    assert any("shared pathologies" in n for n in m["notes"])


def test_transfer_without_shared_pathologies_is_an_error(toy_cache, tmp_path):
    def unlabelled(records):
        records[["Cardiomegaly", "Edema", "Pleural Effusion"]] = np.nan

    target = _variant(toy_cache, tmp_path / "target", unlabelled)
    with pytest.raises(DataError, match="no pathology"):
        run_evaluation("random", toy_cache.path, tmp_path / "ev", target=target.path, fractions=[1.0], seeds=1, **QUICK)


def test_cache_without_test_split_uses_valid_as_test_and_carves_selection(toy_cache, tmp_path):
    def no_test(records):
        records.loc[records["split"] == "test", "split"] = "train"

    cache = _variant(toy_cache, tmp_path / "notest", no_test)
    m = run_evaluation("random", cache.path, tmp_path / "ev", fractions=[1.0], seeds=1, **QUICK)
    n_valid = int((cache.records["split"] == "valid").sum())
    assert m["data"]["n_test_rows"] == n_valid
    assert m["data"]["n_selection_rows"] > 0
    assert any("carved" in n for n in m["notes"]) and any("valid rows are the test rows" in n for n in m["notes"])
    assert m["runs"][0]["n_train_images"] + m["data"]["n_selection_rows"] + n_valid == len(cache)


def test_train_only_cache_is_a_clear_error(toy_cache, tmp_path):
    def train_only(records):
        records["split"] = "train"

    cache = _variant(toy_cache, tmp_path / "trainonly", train_only)
    with pytest.raises(DataError, match="train rows only"):
        run_evaluation("random", cache.path, tmp_path / "ev", fractions=[1.0], seeds=1, **QUICK)


@pytest.mark.slow
def test_finetune_protocol_restores_best_epoch(toy_cache, tmp_path):
    m = run_evaluation("random", toy_cache.path, tmp_path / "ev", protocol="finetune", fractions=[1.0], seeds=1,
                       epochs=3, patience=1, batch_size=32, **{**QUICK, "embedding": "tsne"})
    sel = m["runs"][0]["selection"]
    best = max(h["valid_macro_auroc"] for h in sel["history"])
    assert sel["valid_macro_auroc"] == pytest.approx(best)
    assert 1 <= len(sel["history"]) <= 3 and m["protocol"]["finetune"]["epochs"] == 3
    assert "embedding" in m["plots"]


def test_bad_settings_are_config_errors(toy_cache, tmp_path):
    from cxrl.errors import ConfigError

    with pytest.raises(ConfigError, match="uncertainty"):
        run_evaluation("random", toy_cache.path, tmp_path, uncertainty="maybe", **QUICK)
    with pytest.raises(ConfigError, match="unknown pathologies"):
        run_evaluation("random", toy_cache.path, tmp_path, pathologies=["Cardiomegally"], **QUICK)
    with pytest.raises(ConfigError, match="unknown config key"):
        run_evaluation("random", toy_cache.path, tmp_path, learning_rate=1, **QUICK)


def test_embedding_map_falls_back_to_tsne_when_umap_fails(tmp_path, monkeypatch, caplog):
    import sys
    import types

    from cxrl.evaluate import plots

    def broken(*args, **kwargs):
        raise ValueError("numba says no")

    monkeypatch.setitem(sys.modules, "umap", types.SimpleNamespace(UMAP=broken))  # no slow numba import
    rng = np.random.default_rng(0)
    labels = np.r_[np.zeros(10), np.ones(10), np.full(4, np.nan)]
    path = plots.embedding_map(rng.normal(size=(24, 8)), labels, "Edema", tmp_path / "map.png", method="umap")
    assert path.stat().st_size > 1000
    assert "using t-SNE" in caplog.text


@pytest.mark.slow
def test_umap_map_keeps_two_separated_groups_apart():
    """The real UMAP path (no fallback): two well-separated groups stay apart in the 2-D map (~20 s, numba)."""
    from cxrl.evaluate.plots import project

    rng = np.random.default_rng(0)
    x = np.r_[rng.normal(size=(60, 16)), rng.normal(size=(60, 16)) + 6].astype(np.float32)
    group = np.r_[np.zeros(60, bool), np.ones(60, bool)]
    xy, used = project(x, "umap")
    assert used == "umap" and xy.shape == (120, 2)
    centre_a, centre_b = xy[~group].mean(0), xy[group].mean(0)
    nearer_b = np.linalg.norm(xy - centre_b, axis=1) < np.linalg.norm(xy - centre_a, axis=1)
    assert (nearer_b == group).mean() >= 0.95


def test_layer_decay_scales_encoder_blocks_and_bce_masks_unknown_labels():
    from cxrl.evaluate.finetune import Classifier, FinetuneSettings, masked_bce, parameter_groups

    model = Classifier(create_encoder("tiny_cnn"), 3)
    groups = parameter_groups(model, FinetuneSettings(layer_decay=0.5, head_lr=1e-2), lr=1e-3)
    encoder_lrs = [g["lr"] for g in groups[:-1]]
    assert groups[-1]["lr"] == 1e-2 and encoder_lrs[-1] == pytest.approx(1e-3)
    assert len(encoder_lrs) == 16  # tiny_cnn: 8 conv + 8 batch-norm layers with parameters
    assert encoder_lrs[0] == pytest.approx(1e-3 * 0.5**15)
    assert all(a < b for a, b in zip(encoder_lrs, encoder_lrs[1:], strict=False))
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))
    logits = torch.tensor([[2.0, -1.0], [0.5, 3.0]])
    targets = torch.tensor([[1.0, float("nan")], [float("nan"), 0.0]])
    expected = torch.nn.functional.binary_cross_entropy_with_logits(torch.tensor([2.0, 3.0]), torch.tensor([1.0, 0.0]))
    assert masked_bce(logits, targets) == pytest.approx(expected.item())


def _tiny_finetune(valid_y: np.ndarray):
    from cxrl.evaluate.finetune import FinetuneSettings, finetune

    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (24, 32, 32), dtype=np.uint8)
    train_y = (rng.random((16, 2)) < 0.5).astype(np.float32)
    settings = FinetuneSettings(epochs=2, patience=5, batch_size=8, augment=False)
    return finetune(create_encoder("tiny_cnn"), images[:16], train_y, images[16:], valid_y, 32, settings)


def test_finetune_selects_on_validation_loss_when_no_class_has_both_values():
    # every selection row positive for class 0, negative for class 1: AUROC undefined, so select on the loss
    valid_y = np.tile(np.array([[1.0, 0.0]], np.float32), (8, 1))
    model, sel = _tiny_finetune(valid_y)
    assert sel["best_epoch"] >= 0 and sel["criterion"].startswith("valid loss")
    best = min(h["valid_loss"] for h in sel["history"])
    assert sel["valid_loss"] == pytest.approx(best) == sel["history"][sel["best_epoch"]]["valid_loss"]


def test_finetune_selects_on_auroc_of_the_classes_with_both_values():
    valid_y = np.array([[1, 0], [1, 1], [1, 0], [1, 1], [1, 0], [1, 1], [1, 0], [1, 1]], np.float32)
    _, sel = _tiny_finetune(valid_y)
    assert sel["best_epoch"] >= 0 and sel["criterion"].startswith("valid macro AUROC over the 1 of 2 classes")
    assert sel["valid_macro_auroc"] == pytest.approx(max(h["valid_macro_auroc"] for h in sel["history"]))


def test_report_names_the_finetune_selection_criterion():
    from cxrl.evaluate.report import markdown_report

    run = {"fraction": 1.0, "seed": 0, "macro_auroc": 0.7, "macro_auroc_ci": [0.6, 0.8], "notes": [], "per_class": {},
           "selection": {"best_epoch": 3, "criterion": "valid loss (no class has both label values)"}}
    metrics = {"encoder": {"name": "e", "num_features": 8, "image_size": 32},
               "protocol": {"protocol": "finetune", "fractions": [1.0], "seeds": 1, "uncertainty": "ignore",
                            "threshold_rule": "max_f1", "n_bootstrap": 10},
               "data": {"source": {"path": "c"}, "target": None, "n_test_rows": 4, "n_test_patients": 2},
               "pathologies": [], "runs": [run], "summary": {}, "notes": [], "plots": {}}
    assert "- fine-tuning selection: valid loss (no class has both label values); best epoch (0-based) 100% seed 0: 3" \
        in markdown_report(metrics)


def test_bootstrap_zero_gives_no_intervals_and_negative_is_a_clean_error(toy_cache, tmp_path, capsys):
    m = run_evaluation("random", toy_cache.path, tmp_path / "ev", fractions=[1.0], seeds=1,
                       **{**QUICK, "n_bootstrap": 0})
    assert m["runs"][0]["macro_auroc"] is not None and m["runs"][0]["macro_auroc_ci"] == [None, None]
    assert main(["evaluate", "--encoder", "random", "--data", str(toy_cache.path), "--out", str(tmp_path / "neg"),
                 "--bootstrap", "-1"]) == 1
    assert "bootstrap replicates must be >= 0" in capsys.readouterr().err


@pytest.mark.parametrize("fractions", ["0.1,,1", "0.1,1,", ",0.1"])
def test_an_empty_fraction_is_refused(fractions, capsys):
    with pytest.raises(SystemExit):
        main(["evaluate", "--encoder", "random", "--data", "c", "--out", "o", "--fractions", fractions])
    assert f"expected comma-separated numbers, found '{fractions}'" in capsys.readouterr().err


def test_pathologies_without_labels_and_too_few_positives_are_explained(toy_cache, tmp_path):
    def no_labels(records):
        records[["Cardiomegaly", "Edema", "Pleural Effusion"]] = np.nan

    bare = _variant(toy_cache, tmp_path / "bare", no_labels)
    with pytest.raises(DataError, match="none of --pathologies Edema has labels .*; those rows hold none of them"):
        run_evaluation("random", bare.path, tmp_path / "ev", fractions=[1.0], seeds=1,
                       **{**QUICK, "pathologies": ["Edema"]})
    with pytest.raises(DataError, match="lower --min-positives"):
        run_evaluation("random", bare.path, tmp_path / "ev", fractions=[1.0], seeds=1, **QUICK)

    def rare_edema(records):
        test = (records["split"] == "test").to_numpy()
        records.loc[test, "Edema"] = 0.0
        records.loc[records.index[test][0], "Edema"] = 1.0

    rare = _variant(toy_cache, tmp_path / "rare", rare_edema)
    m = run_evaluation("random", rare.path, tmp_path / "ev2", fractions=[1.0], seeds=1, **QUICK)
    assert "Edema" not in m["pathologies"]
    note = next(n for n in m["notes"] if n.startswith("left out"))
    assert "fewer than --min-positives 2 positives or negatives" in note and ", test 1+/" in note and "Edema" in note


def test_encoder_without_export_or_a_checkpoint_says_how_to_get_one(toy_cache, tmp_path, capsys):
    stopped = tmp_path / "stopped-run"
    (stopped / "checkpoints").mkdir(parents=True)
    (stopped / "checkpoints" / "last.ckpt").write_bytes(b"not unpickled")
    for encoder, expected in (
        (stopped, "its pre-training stopped before the end: `cxrl pretrain METHOD --data CACHE --out RUN --resume`"),
        (stopped / "checkpoints" / "last.ckpt", "a Lightning training checkpoint, which cxrl never unpickles"),
    ):
        assert main(["evaluate", "--encoder", str(encoder), "--data", str(toy_cache.path), "--out",
                     str(tmp_path / "ev")]) == 1
        err = capsys.readouterr().err
        assert err.startswith(f"cxrl evaluate: error: --encoder {encoder}: ") and expected in err


def test_protocol_names_the_backbone_evaluated_and_the_report_reads_plainly(toy_cache, run_dir, tmp_path):
    m = run_evaluation(run_dir, toy_cache.path, tmp_path / "ev", fractions=[0.5, 1.0], seeds=2,
                       **{**QUICK, "backbone": "resnet18"})
    assert m["protocol"]["backbone"] == "tiny_cnn" == m["encoder"]["backbone"]
    md = (tmp_path / "ev" / "report.md").read_text()
    assert "label fractions 50%, 100%; 2 seeds per fraction;" in md
    assert "train images: images in each seed's label subset" in md


def test_evaluate_refuses_to_overwrite_an_evaluation_without_overwrite(toy_cache, tmp_path, capsys):
    out = tmp_path / "ev"
    out.mkdir()
    (out / "metrics.json").write_text("{}")
    args = ["evaluate", "--encoder", "random", "--backbone", "tiny_cnn", "--data", str(toy_cache.path), "--out",
            str(out), "--fractions", "1", "--seeds", "1", "--min-positives", "2", "--bootstrap", "10",
            "--embedding", "none", "--device", "cpu"]
    assert main(args) == 1
    assert f"{out} already holds an evaluation (metrics.json): pass --overwrite" in capsys.readouterr().err
    assert (out / "metrics.json").read_text() == "{}"
    assert main([*args, "--overwrite"]) == 0
    assert json.loads((out / "metrics.json").read_text())["runs"]


def test_label_efficiency_legend_covers_no_point(tmp_path, monkeypatch):
    from cxrl.evaluate import plots

    figures = []
    monkeypatch.setattr(plots.plt, "close", figures.append)  # keep the figure to measure it
    summary = {str(f): {"fraction": f, "macro_auroc_mean": m, "macro_auroc_std": 0.01, "macro_auroc_values": [m]}
               for f, m in ((0.1, 0.8), (1.0, 0.6))}  # a falling curve puts the 100 % point bottom right
    plots.label_efficiency(summary, tmp_path / "le.png", "a-rather-long-encoder-name")
    fig = figures[0]
    fig.canvas.draw()
    ax = fig.axes[0]
    box = ax.get_legend().get_window_extent()
    points = ax.transData.transform([(f * 100, m) for f, m in ((0.1, 0.8), (1.0, 0.6))])
    assert not any(box.contains(x, y) for x, y in points)
    assert box.x1 <= fig.bbox.x1  # and the legend is inside the image
