"""How well a saliency map localizes a finding against its mask: the pointing game and the IoU of the map's top
pixels, each beside what a uniform-random map scores.

Pointing game (Zhang et al. 2018, "Top-down neural attention by excitation backprop", IJCV, sec. 5.1): a hit when
the map's maximum falls inside the finding's mask grown by ``tolerance`` pixels (a disc; Zhang et al. use 15 px at
224 px). Where several pixels share the maximum, the hit is the share of them inside, i.e. the hit rate of breaking
the tie at random; so a constant map scores exactly the random baseline. The baseline: the maximum of a
uniform-random map is a uniformly random pixel, which hits with probability ``(grown) mask area / image area``.

IoU: the top ``top_fraction`` of the map's pixels (ties broken at random) against the mask; the random baseline is
the same for a uniform-random map, i.e. a uniformly random pixel subset of that size, averaged over ``draws``.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from cxrl.errors import ConfigError
from cxrl.evaluate.metrics import bootstrap_mean_ci

TOP_FRACTION = 0.1  # IoU: the top 10 % of the map's pixels
LEVEL = 0.95


def grow(mask: np.ndarray, tolerance: int) -> np.ndarray:
    """``mask`` dilated by a disc of radius ``tolerance`` pixels (unchanged at 0)."""
    if tolerance < 0:
        raise ConfigError(f"pointing-game tolerance: expected >= 0 pixels, found {tolerance}")
    if tolerance == 0:
        return mask.astype(bool)
    disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * tolerance + 1, 2 * tolerance + 1))
    return cv2.dilate(mask.astype(np.uint8), disc).astype(bool)


def pointing_hit(saliency: np.ndarray, mask: np.ndarray, tolerance: int = 0) -> float:
    """1 when the maximum of ``saliency`` lies in ``mask`` (grown by ``tolerance``), 0 when not; a tied maximum
    scores the share of its pixels inside."""
    if saliency.shape != mask.shape:
        raise ConfigError(f"pointing game: map {saliency.shape} and mask {mask.shape} differ in shape")
    peak = saliency == saliency.max()
    return float(grow(mask, tolerance)[peak].mean())


def random_pointing(mask: np.ndarray, tolerance: int = 0) -> float:
    """The expected hit of a uniform-random map's maximum: the (grown) mask's share of the image."""
    return float(grow(mask, tolerance).mean())


def top_pixels(saliency: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """The ``ceil(fraction * pixels)`` highest pixels of ``saliency`` as a mask, ties broken at random."""
    if not 0 < fraction <= 1:
        raise ConfigError(f"IoU top fraction: expected a share in (0, 1], found {fraction}")
    flat = saliency.ravel()
    k = int(np.ceil(fraction * flat.size))
    order = np.lexsort((rng.random(flat.size), -flat))  # by value, descending; random among equals
    out = np.zeros(flat.size, bool)
    out[order[:k]] = True
    return out.reshape(saliency.shape)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two masks (0 when both are empty)."""
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 0.0


def map_iou(saliency: np.ndarray, mask: np.ndarray, rng: np.random.Generator,
            top_fraction: float = TOP_FRACTION) -> float:
    """IoU of the top ``top_fraction`` of ``saliency``'s pixels with ``mask``."""
    return iou(top_pixels(saliency, top_fraction, rng), mask)


def random_map_iou(mask: np.ndarray, rng: np.random.Generator, top_fraction: float = TOP_FRACTION,
                   draws: int = 10) -> float:
    """Mean :func:`map_iou` of ``draws`` uniform-random maps with ``mask``."""
    return float(np.mean([map_iou(rng.random(mask.shape), mask, rng, top_fraction) for _ in range(draws)]))


def score_maps(saliency: np.ndarray, masks: np.ndarray, rng: np.random.Generator, tolerance: int = 0,
               top_fraction: float = TOP_FRACTION) -> dict[str, np.ndarray]:
    """Per image of ``saliency`` / ``masks`` ``(N, H, W)``: ``hit``, ``hit_random``, ``iou``, ``iou_random``."""
    rows = [(pointing_hit(s, m, tolerance), random_pointing(m, tolerance), map_iou(s, m, rng, top_fraction),
             random_map_iou(m, rng, top_fraction)) for s, m in zip(saliency, masks, strict=True)]
    values = np.array(rows, dtype=np.float64).reshape(-1, 4)
    return dict(zip(("hit", "hit_random", "iou", "iou_random"), values.T, strict=True))


def summarize(scores: dict[str, np.ndarray], groups: Sequence | None = None, n_boot: int = 1000,
              seed: int = 0) -> dict[str, float | int | list | None]:
    """Means over the images of :func:`score_maps`'s ``scores``: the pointing game and IoU, their random
    baselines and margins (map minus random), with percentile 95 % bootstrap intervals resampling ``groups``
    (patients; default images) for the map's scores and the margins."""
    n = len(scores["hit"])
    if not n:
        return {"n_images": 0}
    columns = {
        "pointing_game": scores["hit"],
        "pointing_game_random": scores["hit_random"],
        "pointing_game_margin": scores["hit"] - scores["hit_random"],
        "iou": scores["iou"],
        "iou_random": scores["iou_random"],
        "iou_margin": scores["iou"] - scores["iou_random"],
    }
    out: dict[str, float | int | list | None] = {"n_images": n}
    out |= {k: float(v.mean()) for k, v in columns.items()}
    if n_boot:  # one seed: every interval comes from the same replicates
        for key in ("pointing_game", "pointing_game_margin", "iou", "iou_margin"):
            out[f"{key}_ci"] = [float(c) for c in bootstrap_mean_ci(columns[key], groups, n_boot, seed, LEVEL)]
    return out
