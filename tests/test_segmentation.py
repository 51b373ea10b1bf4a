"""The segmentation protocol: Dice as the Kaggle/MGCA convention and globally, MGCA's loss by its formula, a U-Net
decoder on any encoder's pyramid, a frozen encoder left untouched, learning a toy task, the CLI end to end."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from cxrl.data import rle
from cxrl.errors import DataError
from cxrl.evaluate.finetune import FinetuneSettings
from cxrl.evaluate.segmentation import (
    SegmentationData,
    SegmentationModel,
    choose_mask_thresholds,
    dice_scores,
    global_dice,
    predict_probabilities,
    segmentation_loss,
    train_segmentation,
)
from cxrl.models import create_encoder


def test_dice_per_image_counts_an_empty_prediction_on_an_empty_mask_as_one():
    truth = np.zeros((3, 1, 4, 4), bool)
    pred = np.zeros_like(truth)
    truth[0, 0, :2, :2] = True  # 4 pixels
    pred[0, 0, :2, :1] = True  # 2 pixels, both inside: Dice 2*2/(2+4)
    pred[2, 0, 3, 3] = True  # a false positive on an empty mask: 0
    np.testing.assert_allclose(dice_scores(pred, truth)[:, 0], [4 / 6, 1.0, 0.0])
    np.testing.assert_allclose(global_dice(pred, truth), [2 * 2 / (3 + 4)])
    assert np.isnan(global_dice(np.zeros_like(truth), np.zeros_like(truth))[0])


def test_the_loss_is_ten_focal_minus_log_soft_dice():
    torch.manual_seed(0)
    logits, masks = torch.randn(2, 3, 5, 5), (torch.rand(2, 3, 5, 5) > 0.7).float()
    p = logits.sigmoid()
    p_t = p * masks + (1 - p) * (1 - masks)
    alpha_t = 0.25 * masks + 0.75 * (1 - masks)
    focal = (alpha_t * (1 - p_t) ** 2 * -torch.log(p_t)).mean()
    dice = (2 * (p * masks).sum((0, 2, 3)) + 1) / (p.sum((0, 2, 3)) + masks.sum((0, 2, 3)) + 1)
    torch.testing.assert_close(segmentation_loss(logits, masks), 10 * focal - torch.log(dice.mean()))


@pytest.mark.parametrize("name, kwargs", [("tiny_cnn", {}), ("resnet18", {}), ("vit_small", {"img_size": 32})])
def test_the_decoder_gives_one_logit_map_per_finding_at_the_input_size(name, kwargs, one_thread):
    model = SegmentationModel(create_encoder(name, **kwargs), n_classes=2, image_size=32)
    assert model(torch.randn(2, 1, 32, 32)).shape == (2, 2, 32, 32)


def test_mask_thresholds_maximize_the_selection_dice():
    truth = np.zeros((2, 2, 3, 3), bool)
    truth[0, 0, 0] = True  # finding 0: the top row of image 0; finding 1: empty everywhere
    probs = np.full(truth.shape, 0.3, np.float32)
    probs[0, 0, 0] = 0.6  # finding 0 needs a threshold in (0.3, 0.6]; finding 1 one above 0.3 (predict nothing)
    chosen = choose_mask_thresholds(probs, truth)
    assert 0.3 < chosen[0] <= 0.6 and chosen[1] > 0.3
    assert (dice_scores(probs >= chosen[:, None, None], truth) == 1).all()


def _disc_data(n: int, seed: int, size: int = 32) -> SegmentationData:
    """Noise images with a bright disc at a random place; the mask is the disc (half the images have none)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    images = rng.normal(90, 20, (n, size, size))
    masks = np.zeros((n, 1, size, size), bool)
    for i in range(n // 2):
        cy, cx = rng.integers(8, size - 8, 2)
        masks[i, 0] = (yy - cy) ** 2 + (xx - cx) ** 2 < 25
        images[i][masks[i, 0]] += 100
    return SegmentationData(np.clip(images, 0, 255).astype(np.uint8), masks)


def test_a_decoder_on_a_frozen_encoder_learns_discs_and_leaves_the_encoder_untouched(one_thread):
    torch.manual_seed(0)
    encoder = create_encoder("tiny_cnn")
    before = {k: v.clone() for k, v in encoder.state_dict().items()}
    train, valid = _disc_data(64, 0), _disc_data(32, 1)
    settings = FinetuneSettings(epochs=25, patience=25, head_lr=1e-2, batch_size=16)
    model, history = train_segmentation(encoder, train, valid, 32, settings, frozen=True)
    for k, v in model.encoder.state_dict().items():
        assert torch.equal(v, before[k]), k
    pred = predict_probabilities(model, valid.images, 32, "cpu", 16) >= np.array(history["thresholds"])[:, None, None]
    positive = valid.masks.any((2, 3))[:, 0]
    assert dice_scores(pred, valid.masks)[positive].mean() > 0.6
    assert history["best_epoch"] >= 0 and len(history["history"]) == 25


def _mask_cache(tmp_path, size: int = 32, n: int = 120):
    """A cache whose records carry the discs as phantom-style ``masks`` (finding Pleural Effusion)."""
    from cxrl.data.cache import write_cache

    data = _disc_data(n, 2, size)
    patients = np.arange(n) // 2
    split = np.where(patients % 10 < 6, "train", np.where(patients % 10 < 8, "valid", "test"))
    masks = [json.dumps({"Pleural Effusion": rle.encode_rle(m[0], relative=False)} if m.any() else {})
             for m in data.masks]
    records = pd.DataFrame({
        "image_path": [f"/toy/{i}.png" for i in range(n)], "patient_id": patients.astype(str),
        "study_id": np.arange(n).astype(str), "view": "PA", "sex": "F", "age": 50.0, "split": split,
        "dataset": "toy", "Pleural Effusion": data.masks.any((1, 2, 3)).astype("float32"), "masks": masks,
        "mask_format": rle.ABSOLUTE, "orig_height": size, "orig_width": size, "scale": 1.0, "pad_top": 0,
        "pad_left": 0,
    })
    return write_cache(tmp_path / "cache", data.images, records, {"source": "toy"})


def test_the_protocol_runs_from_the_cli_and_reports_dice(tmp_path, one_thread):
    from cxrl.cli import main

    cache = _mask_cache(tmp_path)
    out = tmp_path / "eval"
    assert main(["evaluate", "--encoder", "random", "--backbone", "tiny_cnn", "--data", str(cache.path),
                 "--protocol", "segmentation", "--fractions", "0.5,1", "--seeds", "1", "--epochs", "2",
                 "--bootstrap", "20", "--device", "cpu", "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["pathologies"] == ["Pleural Effusion"]
    run = metrics["runs"][-1]
    assert set(run["per_finding"]) == {"Pleural Effusion"} and run["n_test_images"] == int(
        (cache.records["split"] == "test").sum())
    assert 0 <= run["dice"] <= 1 and len(run["dice_ci"]) == 2
    empty = 1 - cache.records.loc[cache.records["split"] == "test", "Pleural Effusion"].mean()
    assert run["dice_if_empty"] == pytest.approx(empty)  # the share of test images without a disc
    report = (out / "report.md").read_text()
    assert "dice positive" in report and "| Pleural Effusion | " in report.split("## Per finding")[1]
    assert metrics["summary"]["1.0"]["dice_mean"] == pytest.approx(run["dice"])


def test_a_cache_without_masks_or_boxes_is_a_clear_error(toy_cache, tmp_path, one_thread):
    from cxrl.evaluate.protocol import run_evaluation

    with pytest.raises(DataError, match="segmentation needs masks or boxes"):
        run_evaluation("random", toy_cache.path, tmp_path / "e", protocol="segmentation", fractions=[1.0], seeds=1,
                       backbone="tiny_cnn", n_bootstrap=0, embedding="none", device="cpu", epochs=1)
