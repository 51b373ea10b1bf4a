"""The X-ray acquisition: projection geometry, exposure, quantum noise, detector blur, display, collimation, marker.

The attenuation map is projected onto a detector ``SUPERSAMPLE`` times finer than the written image. There the
transmitted intensity ``exp(-mu * att)`` gets signal-dependent quantum noise (variance proportional to the
intensity, Poisson-like) plus a little electronic noise, then the detector blur; the result is area-downsampled
as ``cxrl prepare`` does. Display is the log of the intensity (bright = dense), windowed between percentiles and
passed through a soft-knee curve with headroom below white, so nothing is hard-clipped. Collimated borders are
unexposed (white); the film's shape (landscape or portrait) follows the width/height of real films and is
letterboxed into the square image with 0, as the cache stores real films. Nuisance (exposure, gamma, noise,
blur, scatter, window) stays varied so that a probe on raw pixels cannot read findings off global intensity.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from cxrl.data.phantom.anatomy import grid
from cxrl.data.phantom.textures import white_noise

SUPERSAMPLE = 2
SCATTER_GRID = 32
# Film width / height deciles of real frontal chest films: NIH ChestX-ray14 (OriginalImage[Width,Height] of
# 112,120 images) and IU-Xray (Columns / Rows of 7,469 DICOM headers), both in the torchxrayvision wheel.
ASPECT_DECILES = (
    (0.8, 0.832, 0.978, 1.0, 1.0, 1.074, 1.201, 1.221, 1.221, 1.221, 1.25),
    (0.8, 0.82, 0.82, 0.823, 0.961, 1.0, 1.0, 1.002, 1.218, 1.219, 1.25),
)
FONTS = (cv2.FONT_HERSHEY_SIMPLEX, cv2.FONT_HERSHEY_DUPLEX, cv2.FONT_HERSHEY_COMPLEX, cv2.FONT_HERSHEY_TRIPLEX,
         cv2.FONT_HERSHEY_PLAIN)


@dataclass(frozen=True)
class Marker:
    """The laterality marker (and an optional technique word) burnt into the image."""

    text: str
    font: int
    scale: float
    corner: tuple[float, float]  # normalized top-left of the text
    value: float  # display level, below white
    note: str  # "" or AP / PORTABLE / SUPINE / UPRIGHT

    @classmethod
    def sample(cls, rng: np.random.Generator, view: str, supine: bool) -> Marker | None:
        if rng.random() < 0.15:
            return None
        left = rng.random() < 0.5
        x = rng.uniform(0.03, 0.15) if not left else rng.uniform(0.78, 0.9)
        words = ["AP", "PORTABLE", "SUPINE" if supine else "UPRIGHT"] if view == "AP" else ["PA"]
        note = str(rng.choice(words)) if rng.random() < 0.35 else ""
        return cls("L" if left else "R", int(rng.choice(FONTS)), float(rng.uniform(0.45, 0.95)),
                   (x, float(rng.choice([rng.uniform(0.05, 0.14), rng.uniform(0.86, 0.95)]))),
                   float(rng.uniform(0.7, 0.95)), note)


@dataclass(frozen=True)
class Acquisition:
    """One exposure's settings."""

    angle: float
    zoom: float
    shift: tuple[float, float]
    aspect: float  # film width / height
    mu: float
    gamma: float
    dose: float  # photons per unit transmitted intensity per detector pixel: quantum noise sd = sqrt(I / dose)
    electronic: float
    blur: float
    scatter: float
    collimation: tuple[float, float, float, float]
    headroom: float
    marker: Marker | None

    @classmethod
    def sample(cls, rng: np.random.Generator, view: str, supine: bool = False) -> Acquisition:
        ap = view == "AP"
        collimate = rng.random() < 0.5
        deciles = ASPECT_DECILES[int(rng.integers(2))]
        return cls(
            angle=float(rng.normal(0, 2.0 if ap else 1.2)),
            zoom=float(rng.uniform(0.95, 1.15)),
            shift=(float(rng.normal(0, 0.015)), float(rng.normal(0.0, 0.04))),
            aspect=float(np.interp(rng.random(), np.linspace(0, 1, 11), deciles)),
            mu=float(rng.uniform(1.6, 3.2)),
            gamma=float(rng.uniform(0.55, 1.0)),
            dose=float(np.exp(rng.uniform(np.log(150), np.log(1200)))),
            electronic=float(rng.uniform(0.001, 0.004)),
            blur=float(rng.uniform(0.4, 1.0)),
            scatter=float(rng.uniform(0.0, 0.2)),
            collimation=tuple(float(v) for v in rng.uniform(0, 0.06, 4) * collimate),
            headroom=float(rng.uniform(0.88, 0.97)),
            marker=Marker.sample(rng, view, supine),
        )

    def film(self, size: int) -> tuple[int, int, int, int]:
        """The film's rectangle ``(top, left, height, width)`` letterboxed into the ``size`` square."""
        h, w = (size, round(size * self.aspect)) if self.aspect < 1 else (round(size / self.aspect), size)
        return (size - h) // 2, (size - w) // 2, h, w

    def matrix(self, size: int) -> np.ndarray:
        """The 2x3 affine (rotation about the centre, zoom, shift, fit into the film) in pixels."""
        fit = min(self.aspect, 1 / self.aspect)  # the canvas fits the film; neck, abdomen or air fill the rest
        m = cv2.getRotationMatrix2D((size / 2, size / 2), self.angle, self.zoom * fit)
        m[:, 2] += np.array(self.shift) * size * fit
        return m


def project(attenuation: np.ndarray, masks: np.ndarray, acq: Acquisition) -> tuple[np.ndarray, np.ndarray]:
    """Apply the geometry to the attenuation map (linear, onto the ``SUPERSAMPLE`` x finer detector; above and below
    the canvas the neck and abdomen continue, beside it is air) and the label mask (nearest, at the written size,
    zero outside the film)."""
    size = attenuation.shape[0]
    m = acq.matrix(size)
    pad = size // 4
    fine = m * SUPERSAMPLE
    fine[:, 2] -= fine[:, 1] * pad
    att = cv2.warpAffine(np.pad(attenuation, ((pad, pad), (0, 0)), mode="edge"), fine,
                         (size * SUPERSAMPLE,) * 2, flags=cv2.INTER_LINEAR, borderValue=0.0)
    lab = cv2.warpAffine(masks, m, (size, size), flags=cv2.INTER_NEAREST, borderValue=0)
    top, left, h, w = acq.film(size)
    outside = np.ones((size, size), bool)
    outside[top : top + h, left : left + w] = False
    lab[outside] = 0
    return att, lab


def detect(att: np.ndarray, acq: Acquisition, rng: np.random.Generator) -> np.ndarray:
    """Transmitted intensity with scatter, quantum and electronic noise and detector blur, area-downsampled."""
    fine = att.shape[0]
    x, y = grid(SCATTER_GRID)
    scatter = acq.scatter * (0.6 + 0.4 * np.cos(np.pi * y * rng.uniform(0.5, 1.2)) * (1 - (2 * x - 1) ** 2))
    intensity = np.exp(-acq.mu * att) * 0.9 + cv2.resize(scatter.astype(np.float32), (fine, fine)) * 0.1
    intensity += np.sqrt(intensity / acq.dose) * white_noise(fine, rng) + acq.electronic * white_noise(fine, rng)
    intensity = cv2.GaussianBlur(intensity, (0, 0), acq.blur * fine / 256)
    size = fine // SUPERSAMPLE
    return cv2.resize(intensity, (size, size), interpolation=cv2.INTER_AREA)


def display(intensity: np.ndarray, acq: Acquisition, rng: np.random.Generator) -> np.ndarray:
    """Log intensity (bright = dense), windowed between percentiles, soft knee with headroom, in [0, 1)."""
    density = -np.log(np.maximum(intensity, 1e-4))
    lo, hi = np.percentile(density[::4, ::4], (rng.uniform(0.2, 4), rng.uniform(97, 99.8)))
    v = np.maximum((density - lo) / max(hi - lo, 1e-3), 0) ** acq.gamma
    knee = 0.8
    soft = np.where(v < knee, v, knee + (1 - knee) * -np.expm1(-(v - knee) / (1 - knee)))
    return (0.02 + (acq.headroom - 0.02) * soft).astype(np.float32)


def expose(att: np.ndarray, acq: Acquisition, rng: np.random.Generator) -> np.ndarray:
    """Detector image as uint8: detection, display, white collimation, film letterbox, marker."""
    img = display(detect(att, acq, rng), acq, rng)
    size = img.shape[0]
    top, left, h, w = acq.film(size)
    t, b, lf, r = (int(v * s) for v, s in zip(acq.collimation, (h, h, w, w), strict=True))
    white = acq.headroom * 0.985
    img[:top + t], img[top + h - b :], img[:, : left + lf], img[:, left + w - r :] = white, white, white, white
    out = (img * 255 + 0.5).astype(np.uint8)
    if acq.marker is not None:
        draw_marker(out, acq.marker, (top, left, h, w))
    out[:top], out[top + h :], out[:, :left], out[:, left + w :] = 0, 0, 0, 0
    return out


def draw_marker(out: np.ndarray, marker: Marker, film: tuple[int, int, int, int]) -> None:
    """Burn the marker (and its note, smaller, below it) into ``out`` inside the film."""
    top, left, h, w = film
    scale = out.shape[0] / 256 * marker.scale
    org = (left + int(marker.corner[0] * w), top + int(marker.corner[1] * h))
    value = int(255 * marker.value)
    cv2.putText(out, marker.text, org, marker.font, scale, value, max(1, int(2 * scale)), cv2.LINE_AA)
    if marker.note:
        (width, height), _ = cv2.getTextSize(marker.note, marker.font, scale * 0.5, 1)
        x = max(left, min(org[0], left + w - width - 2))
        y = org[1] + 2 * height if org[1] < top + h / 2 else org[1] - int(24 * scale)
        cv2.putText(out, marker.note, (x, y), marker.font, scale * 0.5, value, 1, cv2.LINE_AA)
