"""Segmentation (``--protocol segmentation``): a U-Net decoder on the encoder's feature pyramid, trained on each
label fraction's annotated rows, scored by Dice on the test rows (:mod:`cxrl.evaluate.segmentation`).

Targets are the findings (``--pathologies``, default all) that the train and test rows outline
(:mod:`cxrl.data.dense`: phantom masks, SIIM's RLE, boxes filled in as RSNA's convention): at least
``min_positives`` images with a non-empty outline in each. Rows without any dense annotation are left out and
counted. The encoder is fine-tuned (``--lr``) unless ``--freeze-encoder``; a ``random`` encoder then trains from
scratch."""

from __future__ import annotations

from typing import Any

import numpy as np

from cxrl.data.dense import annotated, mask_stack, outlines
from cxrl.data.labels import PATHOLOGIES
from cxrl.errors import DataError
from cxrl.evaluate.metrics import bootstrap_mean_ci
from cxrl.evaluate.protocols.base import EvalProtocol, EvalSetup, Predictions
from cxrl.evaluate.protocols.registry import register_protocol
from cxrl.evaluate.segmentation import (
    SegmentationData,
    dice_scores,
    global_dice,
    predict_probabilities,
    resize_masks,
    train_segmentation,
)


@register_protocol("segmentation")
class Segmentation(EvalProtocol):
    """Chooses the findings and builds the selection and test masks once."""

    summary_keys = ("dice", "dice_positive", "dice_global")

    def __init__(self, setup: EvalSetup) -> None:
        super().__init__(setup)
        ev, source = setup.ev, setup.source
        self.annotated = annotated(source.records)
        test_annotated = annotated(ev.test_cache.records)
        train = np.flatnonzero((ev.records["split"] == "train").to_numpy() & self.annotated)
        test = ev.test[test_annotated[ev.test]]
        if not len(train) or not len(test):
            raise DataError(f"{source.path}: segmentation needs masks or boxes in the train and test rows "
                            f"({len(train)} train, {len(test)} test rows carry any); a phantom, SIIM or RSNA cache")
        self.findings, self.left_out = self._choose(source.records.iloc[train], ev.test_cache.records.iloc[test])
        self.test = test
        ev.pathologies = self.findings  # what the run reports on (and label_fraction covers at 1 %)
        self.valid = SegmentationData(*self._data(source, ev.valid[self.annotated[ev.valid]]))
        self.test_data = SegmentationData(*self._data(ev.test_cache, test))
        ev.notes.append(f"segmentation: {len(self.findings)} findings ({', '.join(self.findings)}); "
                        f"{len(ev.test) - len(test)} test rows without masks or boxes left out"
                        + (f"; too few outlines: {', '.join(self.left_out)}" if self.left_out else ""))

    def _choose(self, train_records, test_records) -> tuple[list[str], list[str]]:
        need = self.setup.cfg.min_positives
        counts = {f: (int(outlines(train_records, f).sum()), int(outlines(test_records, f).sum()))
                  for f in self.setup.cfg.pathologies or PATHOLOGIES}
        chosen = [f for f, (a, b) in counts.items() if min(a, b) >= need]
        if not chosen:
            raise DataError(f"segmentation: no evaluated finding is outlined in >= --min-positives {need} train and "
                            f"test images (train/test outlines: {counts})")
        return chosen, [f"{f} ({a}/{b})" for f, (a, b) in counts.items() if f not in chosen and (a or b)]

    def _data(self, cache, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        masks = mask_stack(cache.records, rows, self.findings, cache.image_size)
        return np.asarray(cache.images[rows]), resize_masks(masks, self.setup.image_size)

    def fit(self, train: np.ndarray, seed: int) -> Any:
        s = self.setup
        rows = train[self.annotated[train]]
        return train_segmentation(
            s.model, SegmentationData(*self._data(s.source, rows)), self.valid, s.image_size, s.cfg.finetune,
            s.device, seed, frozen=s.cfg.freeze_encoder, from_scratch=s.encoder_info["method"] == "random",
            precision=s.cfg.precision,
        )

    def predict(self, fitted: Any) -> Predictions:
        model, history = fitted
        s = self.setup
        probs = predict_probabilities(model, self.test_data.images, s.image_size, s.device, s.cfg.batch_size,
                                      s.cfg.precision)
        thresholds = np.asarray(history["thresholds"], np.float32)[None, :, None, None]
        return Predictions(np.zeros((0, 0)), probs >= thresholds, history, None)

    def metrics(self, predictions: Predictions, seed: int, fraction: float) -> dict[str, Any]:
        truth = self.test_data.masks
        per_image = dice_scores(predictions.test, truth)  # (N, K)
        positive = truth.any((2, 3))
        dice_pos = np.where(positive, per_image, np.nan)
        global_k = global_dice(predictions.test, truth)
        patients = self.setup.ev.test_cache.records["patient_id"].iloc[self.test].astype(str).to_numpy()
        ci = bootstrap_mean_ci(per_image.mean(1), patients, self.setup.cfg.n_bootstrap, seed)
        return {
            "dice": float(per_image.mean()), "dice_ci": ci.tolist(),
            "dice_positive": float(np.nanmean(np.nanmean(dice_pos, 0))),
            "dice_global": float(np.nanmean(global_k)),
            "per_finding": {f: {"dice": float(per_image[:, k].mean()),
                                "dice_positive": float(np.nanmean(dice_pos[:, k])),
                                "dice_global": float(global_k[k]), "n_positive": int(positive[:, k].sum())}
                            for k, f in enumerate(self.findings)},
            "dice_if_empty": float((~positive).mean()),  # the per-image Dice of predicting nothing anywhere
            "n_test_images": int(len(truth)), "findings": self.findings,
            "dice_convention": "per image; an empty prediction on an empty mask scores 1 (Kaggle, MGCA)",
        }

