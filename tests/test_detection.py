"""Detection protocol (cxrl.evaluate.detection, detection_metrics, protocols.detection): boxes reach the detector in
its input frame, COCO mAP as computed by hand, the patient bootstrap re-pools COCO's matches, a frozen encoder stays
as it was, ViT encoders get a simple pyramid, and ``cxrl evaluate --protocol detection`` runs end to end."""

from __future__ import annotations

import copy
import json

import numpy as np
import pandas as pd
import pytest
import torch

from cxrl.data.labels import PATHOLOGIES
from cxrl.errors import DataError
from cxrl.evaluate.detection import build_detector, detect, hflip, train_detector
from cxrl.evaluate.detection_metrics import coco_matches, mean_average_precision, weighted_map
from cxrl.evaluate.finetune import FinetuneSettings
from cxrl.evaluate.protocol import run_evaluation
from cxrl.evaluate.protocols.detection import box_targets
from cxrl.models import create_encoder

CACHE, FILM_LEFT, FILM_SCALE = 64, 8, 0.5  # a 128 x 96 source film letterboxed into 64 px: 8 px bars left and right


def square_cache(folder, n: int = 100, seed: int = 0):
    """Bright squares on a letterboxed film, each with its box in source pixels; "Lung Opacity" is positive where
    an image has a square. Also returns the squares as drawn: ``(n_i, 4)`` xyxy cache pixels per image."""
    from cxrl.data.cache import write_cache

    rng = np.random.default_rng(seed)
    images = np.zeros((n, CACHE, CACHE))
    images[:, :, FILM_LEFT:CACHE - FILM_LEFT] = rng.normal(60, 8, (n, CACHE, CACHE - 2 * FILM_LEFT))
    boxes, drawn = [], []
    for image in images:
        items, squares = [], []
        for _ in range(rng.integers(0, 3)):
            side = int(rng.integers(13, 19))
            x, y = int(rng.integers(FILM_LEFT, CACHE - FILM_LEFT - side)), int(rng.integers(0, CACHE - side))
            image[y:y + side, x:x + side] += 120
            items.append({"label": "Lung Opacity", "x": (x - FILM_LEFT) / FILM_SCALE, "y": y / FILM_SCALE,
                          "w": side / FILM_SCALE, "h": side / FILM_SCALE})
            squares.append([x, y, x + side, y + side])
        boxes.append(items)
        drawn.append(np.array(squares, np.float32).reshape(-1, 4))
    patients = np.arange(n) // 2
    records = pd.DataFrame({
        "image_path": [f"/squares/{i}.png" for i in range(n)], "patient_id": patients.astype(str),
        "study_id": np.arange(n).astype(str), "view": "PA", "sex": "F", "age": 50.0, "dataset": "squares",
        "split": np.where(patients % 10 < 6, "train", np.where(patients % 10 < 8, "valid", "test")),
        "boxes": [json.dumps(b) for b in boxes], "orig_height": 128, "orig_width": 96, "scale": FILM_SCALE,
        "pad_top": 0, "pad_left": FILM_LEFT,
    })
    for p in PATHOLOGIES:
        records[p] = np.nan
    records["Lung Opacity"] = [float(len(b) > 0) for b in boxes]
    return write_cache(folder, np.clip(images, 0, 255).astype(np.uint8), records, {"source": "squares"}), drawn


def _evaluate(cache, out, **settings):
    return run_evaluation(
        "random", cache.path, out, protocol="detection", fractions=[1.0], seeds=1, backbone="tiny_cnn",
        n_bootstrap=0, embedding="none", min_positives=1, subgroups=[], **settings,
    )


def test_boxes_reach_the_detector_on_their_squares_and_it_finds_them(tmp_path, one_thread):
    cache, drawn = square_cache(tmp_path / "squares")
    size, classes = 48, ["Lung Opacity"]  # a 48 px model input: boxes scale by 0.75 from the 64 px cache
    split = cache.records["split"].to_numpy()
    train, valid, test = (np.flatnonzero(split == s) for s in ("train", "valid", "test"))
    targets = box_targets(cache.records, np.arange(len(cache)), classes, size / CACHE, size)
    for target, squares in zip(targets, drawn, strict=True):  # source boxes -> letterbox -> model input
        assert torch.allclose(target["boxes"], torch.as_tensor(squares) * size / CACHE)
    images = np.asarray(cache.images)
    settings = FinetuneSettings(epochs=4, patience=4, lr=1e-3, head_lr=1e-3, batch_size=4)
    model, _ = train_detector(create_encoder("tiny_cnn"), images[train], [targets[i] for i in train], images[valid],
                              [targets[i] for i in valid], classes, size, settings, from_scratch=True)
    found = detect(model, images[test], size)
    truth = [targets[i] for i in test]
    shuffled = [truth[j] for j in np.random.default_rng(1).permutation(len(truth))]  # another image's squares
    found_map, control_map = (mean_average_precision(found, t, classes)["map50"] for t in (truth, shuffled))
    assert found_map > 0.5
    assert found_map > 4 * control_map + 0.1


def _box(x0, y0, x1, y1):
    return [float(x0), float(y0), float(x1), float(y1)]


def _items(boxes, labels, scores=None):
    item = {"boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
            "labels": torch.tensor(labels, dtype=torch.int64)}
    return item if scores is None else {**item, "scores": torch.tensor(scores)}


# image 0: class 0 found exactly (0.9) plus a miss (0.8); image 1: class 0 found at IoU 0.62 (0.7), class 1 found
# exactly (0.5); image 2: no box, one false positive of class 0 (0.95)
TARGETS = [_items([_box(0, 0, 10, 10)], [0]), _items([_box(20, 20, 30, 30), _box(0, 0, 8, 8)], [0, 1]),
           _items([], [])]
FOUND = [_items([_box(0, 0, 10, 10), _box(40, 40, 50, 50)], [0, 0], [0.9, 0.8]),
         _items([_box(20, 20, 30, 26.2), _box(0, 0, 8, 8)], [0, 1], [0.7, 0.5]),
         _items([_box(30, 0, 40, 10)], [0], [0.95])]


def _coco_ap(precision_at_recall: list[tuple[float, float]]) -> float:
    """COCO's 101-point AP of an interpolated precision that is ``p`` up to recall ``r`` (steps, increasing r)."""
    points = np.linspace(0, 1, 101)
    return float(np.mean([next((p for r, p in precision_at_recall if x <= r + 1e-12), 0.0) for x in points]))


def test_map_equals_a_hand_computation():
    # class 0 on images 0-1, detections by score: TP, FP, then TP while IoU 0.62 >= threshold (0.40-0.60), else FP
    matched, missed = _coco_ap([(0.5, 1.0), (1.0, 2 / 3)]), _coco_ap([(0.5, 1.0)])
    assert matched == pytest.approx((51 + 50 * 2 / 3) / 101)
    boxed = mean_average_precision(FOUND[:2], TARGETS[:2], ["A", "B"])
    assert boxed["per_class_ap50"] == pytest.approx({"A": matched, "B": 1.0})
    assert boxed["map50"] == pytest.approx((matched + 1.0) / 2)
    assert boxed["map_40_75"] == pytest.approx(((5 * matched + 3 * missed) / 8 + 1.0) / 2)
    # all images: image 2's false positive (0.95) comes first, so precision is 1/2 at both recalls (0.62 matched)
    every = mean_average_precision(FOUND, TARGETS, ["A", "B"])
    assert every["per_class_ap50"]["A"] == pytest.approx(_coco_ap([(1.0, 0.5)]))
    assert every["map_40_75"] == pytest.approx(((5 * _coco_ap([(1.0, 0.5)]) + 3 * _coco_ap([(0.5, 0.5)])) / 8
                                                + 1.0) / 2)
    assert mean_average_precision([], [], ["A"])["map50"] is None


def test_bootstrap_repools_coco_matches_as_repeated_images():
    matches = coco_matches(FOUND, TARGETS, 2)
    assert weighted_map(matches, np.ones((1, 3)))[0] == pytest.approx(mean_average_precision(
        FOUND, TARGETS, ["A", "B"])["map_40_75"])
    repeated = [0, 0, 2, 2, 2]  # image 0 twice, image 1 never, image 2 three times
    assert weighted_map(matches, np.array([[2, 0, 3]]))[0] == pytest.approx(mean_average_precision(
        [FOUND[i] for i in repeated], [TARGETS[i] for i in repeated], ["A", "B"])["map_40_75"])
    assert np.isnan(weighted_map(matches, np.array([[0, 0, 1]]))[0])  # no box drawn: undefined


def test_a_frozen_encoder_stays_bit_identical_while_the_head_trains(one_thread):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (8, 32, 32), dtype=np.uint8)
    targets = [_items([_box(4, 4, 16, 16)], [0]) for _ in images]
    encoder = create_encoder("tiny_cnn")
    before = {k: v.clone() for k, v in encoder.state_dict().items()}
    torch.manual_seed(0)  # train_detector's seed: the detector it starts from
    initial = build_detector(copy.deepcopy(encoder), 1, 32).state_dict()
    settings = FinetuneSettings(epochs=2, batch_size=4)
    model, _ = train_detector(encoder, images, targets, images[:0], [], ["A"], 32, settings, seed=0, frozen=True)
    after = model.state_dict()
    for key, value in before.items():
        assert torch.equal(after[f"backbone.encoder.{key}"], value), key  # BatchNorm running statistics included
    assert torch.equal(initial["backbone.encoder.backbone.features.0.weight"], before["backbone.features.0.weight"])
    head = [k for k in initial if k.startswith(("rpn.", "roi_heads.", "backbone.fpn."))]
    assert all(not torch.equal(initial[k], after[k]) for k in head if initial[k].is_floating_point())


def test_boxes_follow_a_horizontal_flip():
    x = torch.zeros(2, 1, 20, 20)
    x[:, :, 2:6, 3:9] = 1.0
    targets = [_items([_box(3, 2, 9, 6)], [0])] * 2
    flipped, moved = hflip(x, targets, np.array([True, False]))
    for image, target in zip(flipped, moved, strict=True):
        x0, y0, x1, y1 = target["boxes"][0].int().tolist()
        assert image[0, y0:y1, x0:x1].min() == 1.0 and image.sum() == 24  # the box covers the square
    assert moved[0]["boxes"][0].tolist() == _box(11, 2, 17, 6)


def test_a_vit_encoder_detects_through_a_simple_pyramid():
    model = build_detector(create_encoder("vit_small", img_size=64, depth=2), 2, 64)
    assert model.backbone.simple_pyramid and model.backbone.strides == [8, 16, 32]
    losses = model.train()([torch.randn(1, 64, 64)], [_items([_box(8, 8, 40, 40)], [1])])
    assert all(torch.isfinite(v) for v in losses.values())
    assert set(model.eval()([torch.randn(1, 64, 64)])[0]) == {"boxes", "scores", "labels"}


def test_a_cache_without_boxes_is_a_data_error(toy_cache, tmp_path):
    with pytest.raises(DataError, match="no train row has a box"):
        _evaluate(toy_cache, tmp_path / "e")


def test_the_cli_evaluates_detection_on_a_phantom_cache(tmp_path, capsys, one_thread):
    from cxrl.cli import main
    from cxrl.data.phantom import write_dataset
    from cxrl.data.prepare import prepare

    root = write_dataset(tmp_path / "ph", n=60, size=64, layout="mimic", seed=5, patients=30, workers=1)
    prepare("mimic", root, tmp_path / "cache", size=32, workers=1)
    out = tmp_path / "eval"
    assert main(["evaluate", "--protocol", "detection", "--encoder", "random", "--backbone", "tiny_cnn", "--data",
                 str(tmp_path / "cache"), "--out", str(out), "--fractions", "1", "--seeds", "1", "--epochs", "1",
                 "--bootstrap", "20", "--pathologies", "Lung Opacity,Pleural Effusion", "--embedding", "none"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    run = metrics["runs"][0]
    assert set(run["classes"]) <= set(metrics["pathologies"]) and run["classes"]
    assert all(f"{k}_mean" in metrics["summary"]["1.0"] for k in ("map_40_75", "map50", "map_40_75_all", "map50_all"))
    report = (out / "report.md").read_text()
    assert "mAP@.50 all images" in report and "per-class AP50" in report
    assert main(["compare", str(out)]) == 0
    assert "mAP@[.40:.75]" in capsys.readouterr().out


def test_bf16_autocast_trains_and_detects_in_float32(one_thread):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (8, 32, 32), dtype=np.uint8)
    targets = [_items([_box(4, 4, 16, 16)], [0]) for _ in images]
    settings = FinetuneSettings(epochs=1, batch_size=4)
    model, history = train_detector(create_encoder("tiny_cnn"), images, targets, images[:4], targets[:4], ["A"], 32,
                                    settings, precision="bf16-mixed")
    assert np.isfinite(history["history"][0]["train_loss"])
    found = detect(model, images[:2], 32, precision="bf16-mixed")
    assert all(f["boxes"].dtype == torch.float32 and f["scores"].dtype == torch.float32 for f in found)
