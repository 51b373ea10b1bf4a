"""Fine-tuning (``--protocol finetune``): the encoder plus a linear head trained end to end on each label subset,
early-stopped on the selection rows (:mod:`cxrl.evaluate.finetune`)."""

from __future__ import annotations

from typing import Any

import numpy as np

from cxrl.evaluate.features import extract_features
from cxrl.evaluate.finetune import finetune, head_logits, predict
from cxrl.evaluate.protocols.base import EvalProtocol, EvalSetup, Predictions
from cxrl.evaluate.protocols.registry import register_protocol


@register_protocol("finetune")
class Finetune(EvalProtocol):
    """A ``random`` encoder is trained from scratch (its own settings); the memmap rows every run predicts on are
    read once."""

    def __init__(self, setup: EvalSetup) -> None:
        super().__init__(setup)
        ev = setup.ev
        self.valid_images, self.test_images = setup.source.images[ev.valid], ev.test_cache.images[ev.test]

    def fit(self, train: np.ndarray, seed: int) -> Any:
        s, ev = self.setup, self.setup.ev
        return finetune(
            s.model, s.source.images[train], ev.labels[train], self.valid_images, ev.labels[ev.valid],
            s.image_size, s.cfg.finetune, s.device, seed,
            from_scratch=s.encoder_info["method"] == "random", precision=s.cfg.precision,
        )

    def predict(self, fitted: Any) -> Predictions:
        tuned, history = fitted
        s, cfg = self.setup, self.setup.cfg
        valid = predict(tuned, self.valid_images, s.image_size, s.device, cfg.batch_size, cfg.precision)
        embedding = extract_features(
            tuned.encoder, self.test_images, s.image_size, s.device, cfg.batch_size, desc="test embeddings",
            precision=cfg.precision,
        )
        return Predictions(valid, head_logits(tuned, embedding, s.device, cfg.batch_size), history, embedding)
