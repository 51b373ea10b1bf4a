"""Simple image statistics that tell a radiograph from a drawing: noise, intensity, edges, symmetry, spectrum.

Computed on a uint8 cache image (letterboxed as ``cxrl prepare`` stores films) inside its exposed field, on a
0-1 scale; ``scripts/phantom_realism.py`` compares them between phantoms and real films.
"""

from __future__ import annotations

import cv2
import numpy as np

STATS = ("mean", "sd", "p05", "p50", "p95", "p99", "white>=253 %", "black<=2 %", "noise |lap| median",
         "sobel mean", "symmetry", "spectrum slope", "bars %")


def exposed_field(image: np.ndarray) -> tuple[slice, slice]:
    """Rows and columns inside letterbox bars and uniform collimation bands (those that vary at all)."""
    rows = np.flatnonzero(image.std(axis=1) > 2.0)
    cols = np.flatnonzero(image.std(axis=0) > 2.0)
    if len(rows) < 16 or len(cols) < 16:
        return slice(None), slice(None)
    return slice(rows[0] + 2, rows[-1] - 1), slice(cols[0] + 2, cols[-1] - 1)


def spectrum_slope(x: np.ndarray) -> float:
    """Slope of log power against log spatial frequency, radially averaged (natural images ~ -2)."""
    f = np.abs(np.fft.fftshift(np.fft.fft2((x - x.mean()) * np.outer(np.hanning(x.shape[0]),
                                                                   np.hanning(x.shape[1]))))) ** 2
    yy, xx = np.indices(f.shape)
    r = np.hypot((yy - f.shape[0] / 2) / f.shape[0], (xx - f.shape[1] / 2) / f.shape[1])
    edges = np.geomspace(0.02, 0.45, 16)
    which = np.digitize(r.ravel(), edges)
    power = np.array([f.ravel()[which == k].mean() for k in range(1, len(edges))])
    centres = np.sqrt(edges[1:] * edges[:-1])
    return float(np.polyfit(np.log(centres), np.log(power + 1e-12), 1)[0])


def statistics(image: np.ndarray) -> np.ndarray:
    """The ``STATS`` of one uint8 cache image."""
    rows, cols = exposed_field(image)
    field = image[rows, cols]
    x = field.astype(np.float32) / 255
    lap = np.abs(cv2.Laplacian(x, cv2.CV_32F, ksize=1))[1:-1, 1:-1]
    sobel = np.hypot(cv2.Sobel(x, cv2.CV_32F, 1, 0), cv2.Sobel(x, cv2.CV_32F, 0, 1))[1:-1, 1:-1]
    mirror = np.corrcoef(x.ravel(), x[:, ::-1].ravel())[0, 1]
    p05, p50, p95, p99 = np.percentile(x, (5, 50, 95, 99))
    return np.array([x.mean(), x.std(), p05, p50, p95, p99, 100 * (field >= 253).mean(), 100 * (field <= 2).mean(),
                     np.median(lap), sobel.mean(), mirror, spectrum_slope(x), 100 * (1 - field.size / image.size)])


