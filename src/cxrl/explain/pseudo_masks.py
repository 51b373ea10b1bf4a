"""Pseudo-masks from a saliency map: Otsu's threshold and a fully connected CRF (Krähenbühl & Koltun 2011), the
post-processing of MedCLIP-SAM (Koleilat et al., MICCAI 2024) between saliency and SAM."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from skimage.filters import threshold_otsu

from cxrl.errors import ConfigError, CxrlError

EPS = 1e-3  # probabilities are clipped to [EPS, 1 - EPS] before the CRF's log


@dataclass(frozen=True)
class CrfSettings:
    """Mean-field dense CRF (Krähenbühl & Koltun 2011) on one gray image; defaults follow DeepLab's CRF
    (Chen et al. 2017: appearance θα = 80 px on ~500 px images, θβ = 13 gray levels; smoothness θγ = 3 px, weights
    scaled to this normalized form). ``appearance_sigma`` is a fraction of the image side; ``max_offsets`` caps the
    appearance kernel's sampled offsets per axis (its cost)."""

    iterations: int = 5
    appearance_weight: float = 5.0  # w1
    appearance_sigma: float = 0.15  # θα / image side
    intensity_sigma: float = 13.0  # θβ, gray levels
    smoothness_weight: float = 1.0  # w2
    smoothness_sigma: float = 1.0  # θγ, pixels
    max_offsets: int = 15


def _kernel_average(q: np.ndarray, gray: np.ndarray, spatial_sigma: float, intensity_sigma: float | None,
                    max_offsets: int) -> np.ndarray:
    """``sum_{j != i} k(i, j) q_j / sum_{j != i} k(i, j)`` per label plane of ``q`` ``(L, H, W)``, with
    ``k(i, j) = exp(-|p_i - p_j|^2 / 2 σs^2 - |I_i - I_j|^2 / 2 σi^2)`` (no intensity term for ``None``), truncated
    at 2 σs and sampled on a grid of at most ``max_offsets`` offsets per axis."""
    radius = max(1, int(np.ceil(2 * spatial_sigma)))
    step = max(1, int(np.ceil((2 * radius + 1) / max_offsets)))
    height, width = gray.shape
    pad = radius - radius % step
    q_pad = np.pad(q, ((0, 0), (pad, pad), (pad, pad)))
    gray_pad = np.pad(gray, pad, mode="edge")
    inside = np.pad(np.ones_like(gray), pad)
    total, norm = np.zeros_like(q), np.zeros_like(gray)
    for dy in range(-pad, pad + 1, step):
        for dx in range(-pad, pad + 1, step):
            if dy == 0 and dx == 0:
                continue
            window = np.s_[pad + dy: pad + dy + height, pad + dx: pad + dx + width]
            k = np.exp(-(dy * dy + dx * dx) / (2 * spatial_sigma**2)) * inside[window]
            if intensity_sigma is not None:
                k = k * np.exp(-((gray - gray_pad[window]) ** 2) / (2 * intensity_sigma**2))
            total += k * q_pad[(slice(None), *window)]
            norm += k
    return total / np.maximum(norm, 1e-12)


def dense_crf(foreground: np.ndarray, image: np.ndarray, settings: CrfSettings = CrfSettings()) -> np.ndarray:
    """The CRF's foreground marginal ``Q(fg)`` ``(H, W)`` for a foreground probability map and a gray image.

    Energy ``E(x) = sum_i ψu(x_i) + sum_{i<j} μ(x_i, x_j) [w1 k_a(i, j) + w2 k_s(i, j)]`` with the unary
    ``ψu(l) = -log P(l)``, the Potts compatibility ``μ = [x_i != x_j]``, the appearance kernel
    ``k_a = exp(-|p_i - p_j|^2 / 2θα^2 - |I_i - I_j|^2 / 2θβ^2)`` and the smoothness kernel
    ``k_s = exp(-|p_i - p_j|^2 / 2θγ^2)``. Mean-field update (Krähenbühl & Koltun 2011, Algorithm 1, with each
    kernel normalized to sum 1 over ``j``):
    ``Q_i(l) ∝ exp(-ψu(l) + w1 sum_j k_a Q_j(l) + w2 sum_j k_s Q_j(l))``. The message is an exact bilateral
    (resp. Gaussian) filter truncated at 2σ and sampled on a sparse offset grid instead of the permutohedral
    lattice of pydensecrf, which does not build here (its 1.0rc3 sdist fails under Cython 3)."""
    p = np.clip(np.asarray(foreground, np.float64), EPS, 1 - EPS)
    unary = np.log(np.stack([1 - p, p]))
    gray = np.asarray(image, np.float64)
    spatial = settings.appearance_sigma * max(gray.shape)
    q = np.stack([1 - p, p])
    for _ in range(settings.iterations):
        logits = unary + settings.appearance_weight * _kernel_average(
            q, gray, spatial, settings.intensity_sigma, settings.max_offsets)
        logits += settings.smoothness_weight * _kernel_average(
            q, gray, settings.smoothness_sigma, None, settings.max_offsets)
        q = np.exp(logits - logits.max(0))
        q /= q.sum(0)
    return q[1].astype(np.float32)


def otsu_threshold(saliency: np.ndarray) -> float:
    """Otsu's threshold (Otsu 1979) of a map: pixels above it are foreground."""
    return float(threshold_otsu(np.asarray(saliency, np.float32)))


def pseudo_mask(
    saliency: np.ndarray, image: np.ndarray | None = None, threshold: str | float = "otsu",
    crf: bool | CrfSettings = False,
) -> np.ndarray:
    """The boolean pseudo-mask ``(H, W)`` of a ``[0, 1]`` saliency map: ``saliency > t`` with ``t`` Otsu's
    threshold (``"otsu"``) or a number in ``[0, 1]``. With ``crf`` (``True``: default :class:`CrfSettings`) the
    saliency becomes a foreground probability that is 0.5 at ``t`` (linear on each side) and the mask is
    ``Q(fg) > 0.5`` after :func:`dense_crf` over ``image`` (gray uint8 ``(H, W)``); with zero CRF weights it is the
    thresholded mask itself."""
    s = np.asarray(saliency, np.float64)
    if threshold == "otsu":
        t = otsu_threshold(s)
    elif isinstance(threshold, (int, float)) and 0 <= threshold <= 1:
        t = float(threshold)
    else:
        raise ConfigError(f"pseudo-mask threshold {threshold!r}: expected 'otsu' or a number in [0, 1]")
    if crf is False:
        return s > t
    if image is None or np.shape(image) != s.shape:
        raise CxrlError(f"pseudo-mask CRF: needs the gray image of the saliency's shape {s.shape}")
    t = min(max(t, EPS), 1 - EPS)
    foreground = np.where(s > t, 0.5 + 0.5 * (s - t) / (1 - t), 0.5 * s / t)
    return dense_crf(foreground, image, CrfSettings() if crf is True else crf) > 0.5
