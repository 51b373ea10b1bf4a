"""Modality gap (Liang et al. 2022): centroid distance on the unit sphere and held-out linear separability."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from cxrl.errors import CxrlError
from cxrl.evaluate.modality_gap import modality_gap


def test_centroid_distance_is_measured_between_normalized_embeddings():
    images = np.array([[5.0, 0.0], [0.0, 2.0], [3.0, 0.0], [0.0, 0.5]])  # unit rows: centroid (1/2, 1/2)
    texts = -np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 1.0]])  # centroid (-1/2, -1/2)
    assert modality_gap(images, texts)["centroid_distance"] == pytest.approx(math.sqrt(2))
    assert modality_gap(images, images)["centroid_distance"] == 0.0


def test_shifted_modalities_are_separable_and_mixed_ones_are_not():
    rng = np.random.default_rng(0)
    content = rng.normal(size=(400, 16))
    offset = np.zeros(16)
    offset[0] = 3.0
    gapped = modality_gap(content + offset, content - offset + rng.normal(scale=0.3, size=(400, 16)))
    assert gapped["separability_auroc"] == 1.0 and gapped["separability_accuracy"] == 1.0
    assert gapped["centroid_distance"] > 0.5
    mixed = modality_gap(torch.tensor(content), torch.tensor(rng.normal(size=(400, 16))))  # same distribution
    assert abs(mixed["separability_auroc"] - 0.5) < 0.1 and abs(mixed["separability_accuracy"] - 0.5) < 0.1
    assert mixed["n_pairs"] == 400


def test_separability_is_seeded():
    rng = np.random.default_rng(1)
    images, texts = rng.normal(size=(60, 4)), rng.normal(size=(60, 4)) + 0.3
    assert modality_gap(images, texts, seed=3) == modality_gap(images, texts, seed=3)
    assert modality_gap(images, texts, seed=3) != modality_gap(images, texts, seed=4)


def test_mismatched_or_too_few_pairs_are_named():
    with pytest.raises(CxrlError, match="must match"):
        modality_gap(np.eye(4), np.eye(5)[:4])
    with pytest.raises(CxrlError, match="at least 4"):
        modality_gap(np.eye(3), np.eye(3))
