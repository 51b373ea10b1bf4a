"""Precomputed noise banks: generated once per process, then randomly cropped and flipped per image."""

from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np


@lru_cache(maxsize=2)
def texture_bank(size: int) -> np.ndarray:
    """Four smooth noise fields (2*size square, zero mean, unit sd), generated once per process."""
    rng = np.random.default_rng(12345)
    fields = []
    for sigma in (0.012, 0.02, 0.03, 0.05):
        f = cv2.GaussianBlur(rng.standard_normal((2 * size, 2 * size)).astype(np.float32), (0, 0), sigma * size)
        fields.append((f - f.mean()) / f.std())
    return np.stack(fields)


def texture(size: int, rng: np.random.Generator, scale: int | None = None) -> np.ndarray:
    """A random crop (and flip) of a bank field: cheap, seeded, varied."""
    bank = texture_bank(size)
    k = int(rng.integers(len(bank))) if scale is None else scale
    oy, ox = rng.integers(0, size, 2)
    crop = bank[k, oy : oy + size, ox : ox + size]
    return crop[:, ::-1] if rng.random() < 0.5 else crop
