"""The X-ray acquisition: projection geometry, exposure, detector blur and noise, collimation, side marker.

Nuisance variation is deliberately strong (rotation, shift, zoom, exposure, gamma, noise, blur, scatter), so
that a probe on raw pixels cannot read findings off global intensity.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from cxrl.data.phantom.anatomy import grid

ATTENUATION_MAX = 3.0
LUT_SIZE = 4096  # exposure curve as a lookup table (exp and pow per pixel are slow)
SCATTER_GRID = 32


@dataclass(frozen=True)
class Acquisition:
    """One exposure's settings."""

    angle: float
    zoom: float
    shift: tuple[float, float]
    mu: float
    gamma: float
    noise: float
    blur: float
    scatter: float
    collimation: tuple[float, float, float, float]
    marker_left: bool

    @classmethod
    def sample(cls, rng: np.random.Generator, view: str) -> Acquisition:
        ap = view == "AP"
        collimate = rng.random() < 0.5
        return cls(
            angle=float(rng.normal(0, 5.0 if ap else 3.0)),
            zoom=float(rng.uniform(0.82, 1.12)),
            shift=(float(rng.normal(0, 0.06)), float(rng.normal(0.0, 0.06))),
            mu=float(rng.uniform(1.6, 3.2)),
            gamma=float(rng.uniform(0.6, 1.6)),
            noise=float(rng.uniform(0.008, 0.04)),
            blur=float(rng.uniform(0.3, 1.3)),
            scatter=float(rng.uniform(0.0, 0.25)),
            collimation=tuple(float(v) for v in rng.uniform(0, 0.06, 4) * collimate),
            marker_left=bool(rng.random() < 0.5),
        )

    def matrix(self, size: int) -> np.ndarray:
        """The 2x3 affine (rotation about the centre, zoom, shift) in pixels."""
        m = cv2.getRotationMatrix2D((size / 2, size / 2), self.angle, self.zoom)
        m[:, 2] += np.array(self.shift) * size
        return m


def project(attenuation: np.ndarray, masks: np.ndarray, acq: Acquisition) -> tuple[np.ndarray, np.ndarray]:
    """Apply the geometry to the attenuation map (linear) and the label mask (nearest)."""
    size = attenuation.shape[0]
    m = acq.matrix(size)
    att = cv2.warpAffine(attenuation, m, (size, size), flags=cv2.INTER_LINEAR, borderValue=0.0)
    lab = cv2.warpAffine(masks, m, (size, size), flags=cv2.INTER_NEAREST, borderValue=0)
    return att, lab


def expose(att: np.ndarray, acq: Acquisition, rng: np.random.Generator, noise_field: np.ndarray) -> np.ndarray:
    """Detector image as uint8: absorbed fraction, gamma, scatter gradient, blur, noise, collimation, marker."""
    size = att.shape[0]
    levels = np.linspace(0, ATTENUATION_MAX, LUT_SIZE, dtype=np.float32)
    lut = (1.0 - np.exp(-acq.mu * levels)) ** acq.gamma
    index = np.clip(att * ((LUT_SIZE - 1) / ATTENUATION_MAX), 0, LUT_SIZE - 1).astype(np.int32)
    x, y = grid(SCATTER_GRID)
    scatter = acq.scatter * (0.5 + 0.5 * np.cos(np.pi * (x * rng.uniform(0.5, 1.5) + y)))
    img = lut[index] + cv2.resize(scatter, (size, size), interpolation=cv2.INTER_LINEAR)
    img = cv2.GaussianBlur(img, (0, 0), acq.blur * size / 256)
    img = img + acq.noise * noise_field
    top, bottom, left, right = (int(v * size) for v in acq.collimation)
    shade = 0.65 + 0.1 * rng.random()
    img[:top], img[size - bottom :], img[:, :left], img[:, size - right :] = shade, shade, shade, shade
    lo, hi = np.percentile(img[::4, ::4], (rng.uniform(0.5, 12), rng.uniform(90, 99.8)))
    out = (np.clip((img - lo) / max(hi - lo, 1e-3), 0, 1) * 255 + 0.5).astype(np.uint8)
    scale = size / 256
    org = (int((size - 30 * scale) if acq.marker_left else 12 * scale), int(28 * scale))
    cv2.putText(out, "L" if acq.marker_left else "R", org, cv2.FONT_HERSHEY_SIMPLEX, 0.8 * scale, 255,
                max(1, int(2 * scale)), cv2.LINE_AA)
    return out
