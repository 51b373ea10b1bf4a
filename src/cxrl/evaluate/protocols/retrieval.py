"""Image-text retrieval (``--protocol retrieval``): no training labels; each test image queries the test reports
and each report the images (:mod:`cxrl.evaluate.retrieval`): Recall@1/5/10 and median rank with the image's own
report as the hit and, as a second figure (``label_match``), any report with the same labels; plus the modality
gap. Test rows without report text are left out and counted."""

from __future__ import annotations

from typing import Any

import numpy as np

from cxrl.errors import DataError
from cxrl.evaluate.protocols.base import EvalProtocol, EvalSetup, Predictions
from cxrl.evaluate.protocols.image_text import embed_images, encode_texts, gap_metrics, test_reports
from cxrl.evaluate.protocols.registry import register_protocol
from cxrl.evaluate.retrieval import RECALL_AT, retrieval_metrics

DIRECTIONS = ("image_to_text", "text_to_image")


@register_protocol("retrieval")
class Retrieval(EvalProtocol):
    """Embeds the test images that have a report and those reports, once."""

    summary_keys = tuple(f"{d}_{m}" for d in DIRECTIONS for m in (*(f"recall@{k}" for k in RECALL_AT),
                                                                    "median_rank"))
    label_free = True
    needs_text = True

    def __init__(self, setup: EvalSetup) -> None:
        super().__init__(setup)
        ev = setup.ev
        self.rows, texts = test_reports(setup)
        if not len(self.rows):
            raise DataError(f"{ev.test_cache.path}: no test row has report text (findings, impression or "
                            "report_text); retrieval needs the reports (MIMIC: --reader-option reports=true)")
        self.images = embed_images(setup, ev.test_cache.images[ev.test[self.rows]], "test embeddings")
        self.texts = encode_texts(setup, texts)

    def fit(self, train: np.ndarray, seed: int) -> Any:
        return None

    def predict(self, fitted: Any) -> Predictions:
        return Predictions(np.zeros((0, 0)), np.zeros((0, 0)), None, self.images)

    def metrics(self, predictions: Predictions, seed: int, fraction: float) -> dict[str, Any]:
        ev = self.setup.ev
        labels = ev.test_labels[ev.test[self.rows]]
        found = retrieval_metrics(self.images, self.texts, labels)
        flat = {f"{d}_{k}": v for d in DIRECTIONS for k, v in found[d].items()}
        chance = {f"chance_recall@{k}": min(k / len(self.rows), 1.0) for k in RECALL_AT}
        return {**flat, **chance, "label_match": found["label_match"], "n_test_without_report": int(
            len(ev.test) - len(self.rows)), "modality_gap": gap_metrics(self.images, self.texts, seed)}
