"""Precomputed noise banks: generated once per process, then randomly cropped (and flipped) per image."""

from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np


@lru_cache(maxsize=2)
def texture_bank(size: int) -> np.ndarray:
    """Three smooth noise fields (2*size square, zero mean, unit sd), generated once per process."""
    rng = np.random.default_rng(12345)
    fields = []
    for sigma in (0.012, 0.02, 0.03):
        f = cv2.GaussianBlur(rng.standard_normal((2 * size, 2 * size)).astype(np.float32), (0, 0), sigma * size)
        fields.append((f - f.mean()) / f.std())
    return np.stack(fields)


@lru_cache(maxsize=2)
def white_noise_bank(size: int) -> np.ndarray:
    """One white noise field (2*size square, unit sd), generated once per process."""
    return np.random.default_rng(54321).standard_normal((2 * size, 2 * size)).astype(np.float32)


def crop(field: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """A random ``size`` square of a 2*size ``field`` (a view, not a copy)."""
    oy, ox = rng.integers(0, size, 2)
    return field[oy : oy + size, ox : ox + size]


def texture(size: int, rng: np.random.Generator, scale: int) -> np.ndarray:
    """A random crop (and flip) of bank field ``scale`` (0 fine to 2 coarse): cheap, seeded, varied."""
    field = crop(texture_bank(size)[scale], size, rng)
    return field[:, ::-1] if rng.random() < 0.5 else field


def white_noise(size: int, rng: np.random.Generator) -> np.ndarray:
    """A random crop of the white noise bank (the detector noise)."""
    return crop(white_noise_bank(size), size, rng)
