"""Detection (``--protocol detection``): a Faster R-CNN on the encoder (:mod:`cxrl.evaluate.detection`) trained on
each label subset's boxes, scored by COCO mAP (:mod:`cxrl.evaluate.detection_metrics`) as MGCA reports RSNA: mAP over
IoU 0.4:0.05:0.75 and at 0.5 on the test images with a box, and the same on all test images (false positives on
box-free images count there).

Classes are the evaluated findings (``setup.ev.pathologies``) that label some box of the train rows (RSNA: "Lung
Opacity"; the phantom: canonical finding names). Rows whose ``boxes`` column is empty (no box annotation at all, as
most NIH images) are left out of training, selection and test, and counted; an annotated row without boxes is a
box-free image. Boxes come from :func:`cxrl.data.dense.record_boxes` in cache pixels, scaled to the image size.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch

from cxrl.data.dense import annotated, record_boxes
from cxrl.errors import DataError
from cxrl.evaluate.detection import detect, train_detector
from cxrl.evaluate.detection_metrics import Detections, bootstrap_map_ci, mean_average_precision
from cxrl.evaluate.protocols.base import EvalProtocol, EvalSetup, Predictions
from cxrl.evaluate.protocols.registry import register_protocol


@dataclass
class DetectionPredictions(Predictions):
    """No scores per class (``valid``/``test`` are empty): the test images' ``detections`` instead."""

    detections: Detections = field(default_factory=list)


@register_protocol("detection")
class Detection(EvalProtocol):
    """Settles the classes and reads the selection and test images and boxes once."""

    summary_keys = ("map_40_75", "map50", "map_40_75_all", "map50_all")

    def __init__(self, setup: EvalSetup) -> None:
        super().__init__(setup)
        ev, source = setup.ev, setup.source
        train = np.flatnonzero((ev.records["split"] == "train").to_numpy())
        self.classes = detection_classes(ev.records.iloc[train], ev.pathologies, str(source.path))
        self.valid, self.test = boxed_rows(ev.records, ev.valid), boxed_rows(ev.test_cache.records, ev.test)
        self.left_out = {"selection": len(ev.valid) - len(self.valid), "test": len(ev.test) - len(self.test)}
        if not len(self.test):
            raise DataError(f"{ev.test_cache.path}: none of its {len(ev.test)} test rows has a box annotation")
        self.valid_images, self.test_images = source.images[self.valid], ev.test_cache.images[self.test]
        size = setup.image_size
        self.valid_targets = box_targets(ev.records, self.valid, self.classes, size / source.image_size, size)
        self.test_targets = box_targets(
            ev.test_cache.records, self.test, self.classes, size / ev.test_cache.image_size, size)
        self.patients = ev.test_cache.records["patient_id"].astype(str).to_numpy()[self.test]

    def fit(self, train: np.ndarray, seed: int) -> Any:
        s = self.setup
        rows = boxed_rows(s.ev.records, train)
        if not len(rows):
            raise DataError(f"{s.source.path}: the label subset of seed {seed} ({len(train)} rows) holds no row "
                            "with a box annotation; raise the label fraction")
        size = s.image_size
        model, history = train_detector(
            s.model, s.source.images[rows], box_targets(s.ev.records, rows, self.classes, size / s.source.image_size,
                                                        size),
            self.valid_images, self.valid_targets, self.classes, size, s.cfg.finetune, s.device, seed,
            frozen=s.cfg.freeze_encoder, from_scratch=s.encoder_info["method"] == "random", precision=s.cfg.precision,
        )
        return model, {**history, "n_train_left_out": int(len(train) - len(rows))}

    def predict(self, fitted: Any) -> Predictions:
        model, history = fitted
        s = self.setup
        found = detect(model, self.test_images, s.image_size, s.device, s.cfg.batch_size, s.cfg.precision,
                       desc="test detections")
        return DetectionPredictions(np.zeros((0, 0)), np.zeros((0, 0)), history, None, found)

    def metrics(self, predictions: Predictions, seed: int, fraction: float) -> dict[str, Any]:
        assert isinstance(predictions, DetectionPredictions)
        found, targets, cfg = predictions.detections, self.test_targets, self.setup.cfg
        boxed = [i for i, t in enumerate(targets) if len(t["boxes"])]
        on_boxed = mean_average_precision([found[i] for i in boxed], [targets[i] for i in boxed], self.classes)
        on_all = mean_average_precision(found, targets, self.classes)
        ci = bootstrap_map_ci([found[i] for i in boxed], [targets[i] for i in boxed], len(self.classes),
                              groups=self.patients[boxed], n_boot=cfg.n_bootstrap, seed=seed)
        left_out = {"train": predictions.selection["n_train_left_out"], **self.left_out}
        return {
            "map_40_75": on_boxed["map_40_75"],
            "map_40_75_ci": ci,
            "map50": on_boxed["map50"],
            "map_40_75_all": on_all["map_40_75"],
            "map50_all": on_all["map50"],
            "per_class_ap50": on_boxed["per_class_ap50"],
            "per_class_ap50_all": on_all["per_class_ap50"],
            "classes": self.classes,
            "n_test_images": len(targets),
            "n_test_images_with_box": len(boxed),
            "left_out_without_box_annotation": left_out,
            "notes": _notes(self.classes, on_boxed, ci, left_out, cfg.n_bootstrap),
        }


def detection_classes(train_records: pd.DataFrame, pathologies: list[str], where: str) -> list[str]:
    """The ``pathologies`` that label some box of ``train_records``, in their order; a DataError without any."""
    labels = {b.label for row in train_records.to_dict("records") for b in record_boxes(row)}
    if not labels:
        raise DataError(f"{where}: no train row has a box; --protocol detection needs box annotations (RSNA "
                        "Pneumonia, VinDr-CXR, NIH's boxed subset, Object-CXR, the phantom)")
    classes = [p for p in pathologies if p in labels]
    if not classes:
        raise DataError(f"{where}: none of the evaluated findings ({', '.join(pathologies)}) labels a box of the "
                        f"train rows; their boxes are labelled {', '.join(sorted(labels))} (name them with "
                        "--pathologies)")
    return classes


def boxed_rows(records: pd.DataFrame, rows: np.ndarray) -> np.ndarray:
    """The ``rows`` of ``records`` with a box annotation (a ``boxes`` value, ``"[]"`` for a box-free image)."""
    if "boxes" not in records:
        return rows[:0]
    return rows[annotated(records.iloc[rows][["boxes"]])]


def box_targets(records: pd.DataFrame, rows: np.ndarray, classes: list[str], scale: float, size: int) -> Detections:
    """torchvision targets of ``rows``: the boxes labelled with one of ``classes``, from cache pixels to pixels of
    the ``size`` model input (``scale``: size / cache size), clipped to it; boxes left without area are dropped."""
    out = []
    for row in records.iloc[rows].to_dict("records"):
        kept = [b for b in record_boxes(row) if b.label in classes]
        boxes = (np.array([[b.x0, b.y0, b.x1, b.y1] for b in kept], np.float32).reshape(-1, 4) * scale).clip(0, size)
        area = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        labels = np.array([classes.index(b.label) for b in kept], np.int64)
        out.append({"boxes": torch.as_tensor(boxes[area]), "labels": torch.as_tensor(labels[area])})
    return out


def _notes(classes: list[str], on_boxed: dict, ci: list, left_out: dict[str, int], n_boot: int) -> list[str]:
    """The run's lines for the report: classes, per-class AP50, the interval, the rows left out."""
    ap50 = ", ".join(f"{c} {'n/a' if v is None else f'{v:.3f}'}" for c, v in on_boxed["per_class_ap50"].items())
    interval = "n/a" if None in ci else f"{ci[0]:.3f}–{ci[1]:.3f}"
    return [
        f"detection classes: {', '.join(classes)} (the evaluated findings that label a box of the train rows)",
        f"per-class AP50 on the test images with a box: {ap50}",
        f"mAP@[.40:.75] on the test images with a box: 95% CI {interval} ({n_boot} patient resamples)",
        "left out, no box annotation: " + ", ".join(f"{k} {v} rows" for k, v in left_out.items()),
    ]
