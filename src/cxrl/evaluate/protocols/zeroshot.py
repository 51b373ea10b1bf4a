"""Zero-shot classification (``--protocol zeroshot``): no training labels; each finding is scored by CheXzero's
positive-vs-negative prompt ensembles (:mod:`cxrl.evaluate.zeroshot`) and rated like the linear probe (same test
rows and pathologies, so both sit in one table), plus the CheXpert 5x200-style five-way accuracy and the modality
gap of the test images and their reports."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import yaml

from cxrl.data.labels import label_matrix
from cxrl.errors import ConfigError
from cxrl.evaluate.protocols.base import EvalProtocol, EvalSetup, Predictions
from cxrl.evaluate.protocols.image_text import embed_images, encode_texts, gap_metrics, test_reports
from cxrl.evaluate.protocols.registry import register_protocol
from cxrl.evaluate.zeroshot import (
    COMPETITION_FINDINGS,
    DEFAULT_PROMPTS,
    PromptPair,
    class_embeddings,
    five_way_accuracy,
    zeroshot_scores,
)


@register_protocol("zeroshot")
class ZeroShot(EvalProtocol):
    """Image embeddings of the selection and test rows and the prompt ensembles are computed once."""

    summary_keys = (*EvalProtocol.summary_keys, "five_way_accuracy")
    label_free = True
    needs_text = True

    def __init__(self, setup: EvalSetup) -> None:
        super().__init__(setup)
        ev = setup.ev
        self.prompts = load_prompts(setup.cfg.prompts)
        self.encode = lambda texts: encode_texts(setup, texts)
        self.classes = class_embeddings(self.encode, ev.pathologies, self.prompts)
        self.valid = embed_images(setup, setup.source.images[ev.valid], "selection embeddings")
        self.test = embed_images(setup, ev.test_cache.images[ev.test], "test embeddings")

    def fit(self, train: np.ndarray, seed: int) -> Any:
        return None

    def predict(self, fitted: Any) -> Predictions:
        return Predictions(zeroshot_scores(self.valid, self.classes), zeroshot_scores(self.test, self.classes),
                           None, self.test)

    def metrics(self, predictions: Predictions, seed: int, fraction: float) -> dict[str, Any]:
        result = super().metrics(predictions, seed, fraction)
        records = self.setup.ev.test_cache.records.iloc[self.setup.ev.test]
        if all(f in records for f in COMPETITION_FINDINGS):
            five = five_way_accuracy(self.test, label_matrix(records, list(COMPETITION_FINDINGS)), self.encode,
                                     self.prompts)
            result |= {"five_way_accuracy": five["accuracy"], "five_way_images": five["n_images"]}
        rows, texts = test_reports(self.setup)
        if len(rows):
            result["modality_gap"] = gap_metrics(self.test[rows], self.encode(texts), seed)
        return result


def load_prompts(path: str | Path | None) -> dict[str, PromptPair]:
    """The built-in prompts, with the findings of a YAML ``{finding: {positive: [...], negative: [...]}}`` replaced."""
    if path is None:
        return DEFAULT_PROMPTS
    try:
        data = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as e:
        raise ConfigError(f"--prompts {path}: cannot read it ({e})") from e
    if not isinstance(data, dict):
        raise ConfigError(f"--prompts {path}: expected a mapping finding -> {{positive: [...], negative: [...]}}")
    prompts = dict(DEFAULT_PROMPTS)
    for finding, pair in data.items():
        if not isinstance(pair, dict) or not all(isinstance(pair.get(k), list) and pair[k]
                                                 for k in ("positive", "negative")):
            raise ConfigError(f"--prompts {path}: {finding!r} needs non-empty 'positive' and 'negative' lists")
        prompts[finding] = (tuple(map(str, pair["positive"])), tuple(map(str, pair["negative"])))
    return prompts
