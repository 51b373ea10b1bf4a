"""Detection metrics: COCO mean average precision (pycocotools, through torchmetrics' ``MeanAveragePrecision``) at
MGCA's IoU thresholds 0.4:0.05:0.75 and at 0.5, per-class AP at 0.5, and a patient-bootstrap interval of the mAP.

Detections and targets are torchvision's per-image dicts (``boxes`` ``(n, 4)`` xyxy in one pixel frame,
``labels`` ``(n,)`` class indices, ``scores`` for detections). COCO's AP of a class is the mean, over 101 recall
points, of the interpolated precision of its detections pooled over the images and sorted by score (at most
:data:`MAX_DETECTIONS` per image); a class without a ground-truth box is undefined and left out of the mean.

The bootstrap keeps COCO's per-image matching (pycocotools ``COCOeval.evaluate``, once) and re-pools it with each
replicate's image multiplicities (:func:`cxrl.evaluate.metrics.bootstrap_weights`), which gives the AP of the
resampled image list without re-matching: a weighted cumulative sum in place of repeated rows.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from cxrl.evaluate.metrics import bootstrap_weights, percentiles

IOU_THRESHOLDS: tuple[float, ...] = tuple(round(0.4 + 0.05 * i, 2) for i in range(8))  # MGCA: 0.4, 0.45, ..., 0.75
MAX_DETECTIONS = 100  # COCO's maxDets for mAP
_RECALL_POINTS = np.linspace(0.0, 1.0, 101)  # COCO's recThrs

Detections = list[dict[str, torch.Tensor]]


def mean_average_precision(detections: Detections, targets: Detections, classes: Sequence[str]) -> dict[str, Any]:
    """``map_40_75`` (mAP over :data:`IOU_THRESHOLDS`), ``map50`` and ``per_class_ap50`` (``{class name: AP or
    None}``, None where a class has no ground-truth box); None throughout when no image has a box."""
    if not targets:
        return {"map_40_75": None, "map50": None, "per_class_ap50": dict.fromkeys(classes)}
    over_range = _coco_map(detections, targets, IOU_THRESHOLDS, per_class=False)
    at_50 = _coco_map(detections, targets, (0.5,), per_class=True)
    found = dict(zip(at_50["classes"].reshape(-1).tolist(), at_50["map_per_class"].reshape(-1).tolist(), strict=True))
    return {
        "map_40_75": _defined(over_range["map"]),
        "map50": _defined(at_50["map"]),
        "per_class_ap50": {name: _defined(found.get(k, -1.0)) for k, name in enumerate(classes)},
    }


def _coco_map(detections: Detections, targets: Detections, thresholds: Sequence[float], per_class: bool) -> dict:
    from torchmetrics.detection import MeanAveragePrecision  # seconds to import: only when detection runs

    metric = MeanAveragePrecision(
        box_format="xyxy", iou_type="bbox", iou_thresholds=list(thresholds), class_metrics=per_class,
        max_detection_thresholds=[1, 10, MAX_DETECTIONS], backend="pycocotools",
    )
    metric.update(detections, targets)
    return metric.compute()


def _defined(value: float | torch.Tensor) -> float | None:
    """torchmetrics' -1 (undefined: no ground truth) as None."""
    value = float(value)
    return value if value >= 0 else None


@dataclass
class ClassMatches:
    """One class's detections pooled over the images, as COCO matched them: the image of each detection, its score,
    whether it is a true or false positive at each IoU threshold ``(T, D)``, and the ground-truth boxes per image."""

    image: np.ndarray
    scores: np.ndarray
    tp: np.ndarray
    fp: np.ndarray
    n_gt: np.ndarray


def coco_matches(
    detections: Detections, targets: Detections, n_classes: int, thresholds: Sequence[float] = IOU_THRESHOLDS
) -> list[ClassMatches]:
    """COCO's greedy per-image matching (``COCOeval.evaluate``, all areas, :data:`MAX_DETECTIONS` per image) of
    every class ``0 .. n_classes - 1``."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    images = [{"id": i} for i in range(len(targets))]
    categories = [{"id": k} for k in range(n_classes)]
    truth, found = COCO(), COCO()
    truth.dataset = {"images": images, "categories": categories, "annotations": _annotations(targets)}
    found.dataset = {"images": images, "categories": categories, "annotations": _annotations(detections)}
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress
        truth.createIndex()
        found.createIndex()
        coco = COCOeval(truth, found, "bbox")
        coco.params.iouThrs = np.asarray(thresholds, dtype=np.float64)
        coco.params.areaRng, coco.params.areaRngLbl = [[0.0, 1e10]], ["all"]
        coco.params.maxDets = [MAX_DETECTIONS]
        coco.evaluate()
    n_images = len(targets)
    return [_class_matches(coco.evalImgs[k * n_images:(k + 1) * n_images], len(thresholds)) for k in range(n_classes)]


def _class_matches(per_image: list[dict | None], n_thresholds: int) -> ClassMatches:
    """Pool one class's ``COCOeval.evalImgs`` entries (one per image, None: no box and no detection there)."""
    none = np.zeros((n_thresholds, 0), bool)
    image, scores, tp, fp = [np.zeros(0, int)], [np.zeros(0)], [none], [none]
    n_gt = np.zeros(len(per_image))
    for i, e in enumerate(per_image):
        if e is None:
            continue
        matched = np.asarray(e["dtMatches"]).reshape(n_thresholds, -1) > 0
        counted = ~np.asarray(e["dtIgnore"]).reshape(n_thresholds, -1).astype(bool)
        image.append(np.full(matched.shape[1], i))
        scores.append(np.asarray(e["dtScores"], dtype=np.float64))
        tp.append(matched & counted)
        fp.append(~matched & counted)
        n_gt[i] = np.count_nonzero(np.asarray(e["gtIgnore"]) == 0)
    return ClassMatches(np.concatenate(image), np.concatenate(scores), np.concatenate(tp, axis=1),
                        np.concatenate(fp, axis=1), n_gt)


def _annotations(items: Detections) -> list[dict]:
    """COCO annotations (``[x, y, w, h]``, ids from 1: COCO marks "unmatched" with id 0)."""
    out = []
    for i, item in enumerate(items):
        boxes = item["boxes"].detach().cpu().double().reshape(-1, 4).numpy()
        scores = item["scores"].detach().cpu().double().numpy() if "scores" in item else np.ones(len(boxes))
        for (x0, y0, x1, y1), label, score in zip(boxes, item["labels"].tolist(), scores, strict=True):
            out.append({"id": len(out) + 1, "image_id": i, "category_id": int(label), "iscrowd": 0,
                        "bbox": [x0, y0, x1 - x0, y1 - y0], "area": (x1 - x0) * (y1 - y0), "score": float(score)})
    return out


def weighted_map(matches: Sequence[ClassMatches], weights: np.ndarray) -> np.ndarray:
    """COCO mAP ``(B,)`` of ``B`` image lists in which image ``i`` appears ``weights[b, i]`` times: per class and
    threshold the precision/recall curve of the pooled detections, each counted with its image's weight (COCO's
    ``accumulate`` on repeated images), interpolated at 101 recall points; NaN where no class has a box."""
    weights = np.atleast_2d(np.asarray(weights, dtype=np.float64))
    per_class = np.array([[_weighted_ap(m, row) for m in matches] for row in weights]).reshape(len(weights), -1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a replicate in which no class has a box: NaN
        return np.nanmean(per_class, axis=1)


def _weighted_ap(m: ClassMatches, weights: np.ndarray) -> float:
    """AP of one class averaged over the IoU thresholds, image ``i`` counted ``weights[i]`` times; NaN where the
    weighted images hold no box of it."""
    n_gt = float(weights @ m.n_gt)
    if n_gt == 0:
        return float("nan")
    if not len(m.scores):
        return 0.0
    order = np.argsort(-m.scores, kind="mergesort")  # COCO's sort
    w = weights[m.image[order]]
    tp, fp = np.cumsum(w * m.tp[:, order], axis=1), np.cumsum(w * m.fp[:, order], axis=1)
    recall, precision = tp / n_gt, tp / (tp + fp + np.spacing(1))
    envelope = np.maximum.accumulate(precision[:, ::-1], axis=1)[:, ::-1]  # best precision at this recall or more
    ap = []
    for t in range(len(tp)):
        at = np.searchsorted(recall[t], _RECALL_POINTS, side="left")
        ap.append(envelope[t, at[at < len(order)]].sum() / len(_RECALL_POINTS))
    return float(np.mean(ap))


def bootstrap_map_ci(
    detections: Detections, targets: Detections, n_classes: int, groups: Sequence | None = None, n_boot: int = 1000,
    seed: int = 0, level: float = 0.95,
) -> list[float | None]:
    """Percentile interval ``[low, high]`` of the mAP over :data:`IOU_THRESHOLDS`, resampling ``groups`` (patient
    ids, one per image) with replacement; ``[None, None]`` without replicates or boxes."""
    if n_boot == 0 or not targets:
        return [None, None]
    matches = coco_matches(detections, targets, n_classes)
    samples = np.full(n_boot, np.nan)
    for start, row_weights in bootstrap_weights(len(targets), groups, n_boot, seed):
        samples[start:start + len(row_weights)] = weighted_map(matches, row_weights)
    low, high = percentiles(samples[:, None], (1 - level) / 2)[0]
    return [float(v) if np.isfinite(v) else None for v in (low, high)]
