"""What the image-text protocols (zero-shot, retrieval) share: the joint-space embeddings of the test images and of
their own reports, and the modality gap that every image-text evaluation writes into metrics.json."""

from __future__ import annotations

from typing import Any

import numpy as np

from cxrl.data.tokens import report_texts
from cxrl.evaluate.features import extract_features
from cxrl.evaluate.modality_gap import MIN_PAIRS, modality_gap
from cxrl.evaluate.protocols.base import EvalSetup


def embed_images(setup: EvalSetup, images: np.ndarray, desc: str) -> np.ndarray:
    """Joint-space embeddings ``(N, D)`` of uint8 ``images`` through the image side of ``setup.image_text``."""
    cfg = setup.cfg
    return extract_features(setup.image_text.image, images, setup.image_size, setup.device, cfg.batch_size,
                            desc=desc, precision=cfg.precision)


def encode_texts(setup: EvalSetup, texts: list[str]) -> np.ndarray:
    """Joint-space embeddings ``(N, D)`` of ``texts`` through the text side (on the evaluation device)."""
    return setup.image_text.text.to(setup.device)(texts).detach().float().cpu().numpy()


def test_reports(setup: EvalSetup) -> tuple[np.ndarray, list[str]]:
    """Positions within the test rows that have report text, and those texts."""
    ev = setup.ev
    if not any(c in ev.test_cache.records for c in ("findings", "impression", "report_text")):
        return np.arange(0), []
    texts = report_texts(ev.test_cache.records.iloc[ev.test])
    present = np.flatnonzero(texts.notna().to_numpy())
    return present, texts.iloc[present].tolist()


def gap_metrics(image_embeddings: np.ndarray, text_embeddings: np.ndarray, seed: int) -> dict[str, Any]:
    """:func:`cxrl.evaluate.modality_gap.modality_gap` of paired embeddings; a note when there are too few pairs."""
    if len(image_embeddings) < MIN_PAIRS:
        return {"note": f"{len(image_embeddings)} test images with a report: too few for the modality gap"}
    return modality_gap(image_embeddings, text_embeddings, seed=seed)
