"""Normal chest anatomy as an attenuation map (bright = dense), drawn with vectorized numpy and cv2.

Image coordinates: x to the right, y down, in pixels of a square canvas of ``size``; the patient faces the
viewer, so the patient's right lung is on the image's left. Soft tissue is a chord-length body profile; lungs
are parametric polygons (apex, curved lateral wall, domed hemidiaphragms with the right higher, costophrenic
angles); vessels are branching trees tapering from the hila; ribs are curved cortical bands; the heart is an
ellipse left of the midline whose width sets the cardiothoracic ratio.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

from cxrl.data.phantom.sampling import Anatomy

SHIFT = 4  # cv2 sub-pixel bits
ONE = 1 << SHIFT


@lru_cache(maxsize=4)
def grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Normalized coordinates (x, y) in [0, 1], float32, shape (size, size)."""
    t = (np.arange(size, dtype=np.float32) + 0.5) / size
    return np.meshgrid(t, t)


def polyline(layer: np.ndarray, pts: np.ndarray, value: float, thickness: float, closed: bool = False) -> None:
    """Draw normalized points ``(k, 2)`` onto ``layer`` in place, anti-aliased, sub-pixel."""
    size = layer.shape[0]
    p = np.round(pts * size * ONE).astype(np.int32).reshape(-1, 1, 2)
    cv2.polylines(layer, [p], closed, value, max(1, int(round(thickness * size))), cv2.LINE_AA, SHIFT)


def fill(layer: np.ndarray, pts: np.ndarray, value: float = 1.0) -> None:
    size = layer.shape[0]
    cv2.fillPoly(layer, [np.round(pts * size * ONE).astype(np.int32)], value, cv2.LINE_AA, SHIFT)


def ellipse(layer: np.ndarray, center, axes, angle: float = 0.0, value: float = 1.0, thickness: int = -1) -> None:
    size = layer.shape[0]
    c = tuple(int(round(v * size * ONE)) for v in center)
    a = tuple(max(1, int(round(v * size * ONE))) for v in axes)
    cv2.ellipse(layer, c, a, angle, 0, 360, value, thickness, cv2.LINE_AA, SHIFT)


@dataclass
class Geometry:
    """Landmarks of one rendered chest, normalized; findings place themselves with these."""

    size: int
    mid: float
    apex: float
    dome: tuple[float, float]  # right, left hemidiaphragm dome height
    wall: tuple[float, float]  # right, left inner chest wall x
    heart: tuple[float, float, float, float]  # cx, cy, half-width, half-height
    hila: tuple[tuple[float, float], tuple[float, float]]
    carina: tuple[float, float]
    lungs: np.ndarray  # float mask of both lungs (1 inside)
    sides: np.ndarray  # +1 on the patient's right lung half, -1 on the left
    ribs: list[np.ndarray]  # posterior rib centre lines (normalized points), right side first
    rib_width: float


def lung_outline(g: Anatomy, side: int, mid: float, dome: float, mediastinum: float) -> np.ndarray:
    """Polygon of one lung; ``side`` +1 = patient's right (image left)."""
    wall = mid - side * g.thorax_half_width
    medial = mid - side * (mediastinum + 0.01 * (side < 0))
    t = np.linspace(0, 1, 24, dtype=np.float32)
    apex_x = medial + (wall - medial) * 0.35
    lateral = np.stack([apex_x + (wall - apex_x) * np.sin(t * np.pi / 2) ** 0.6,
                        g.apex + (dome + 0.07 - g.apex) * t ** 1.15], 1)
    cp = lateral[-1]
    u = np.linspace(0, 1, 20, dtype=np.float32)
    x_dia = cp[0] + (medial - cp[0]) * u
    y_dia = cp[1] - 0.075 * np.clip(np.sin(np.pi * np.clip(u * 1.15, 0, 1)), 0, 1) ** 0.7 - 0.02 * u
    medial_y = np.linspace(y_dia[-1], g.apex + 0.03, 12, dtype=np.float32)
    medial_x = medial + side * 0.015 * np.sin(np.linspace(0, np.pi, 12))
    pts = np.concatenate([lateral, np.stack([x_dia, y_dia], 1), np.stack([medial_x, medial_y], 1)])
    return pts.astype(np.float32)


def rib_lines(g: Anatomy, mid: float, dome: float, rng: np.random.Generator) -> tuple[list[np.ndarray], float]:
    """Posterior ribs: from the spine they rise briefly, then sweep laterally and down."""
    n = 10
    spacing = (dome + 0.06 - g.apex) / (n - 0.5)
    t = np.linspace(0, 1, 16, dtype=np.float32)
    ribs = []
    for side in (1, -1):
        for k in range(n):
            y0 = g.apex - 0.03 + k * spacing + rng.normal(0, 0.003)
            reach = g.thorax_half_width * (0.75 + 0.3 * np.sin(np.pi * min(1.0, (k + 1.5) / n)))
            x = mid - side * (0.025 + reach * t)
            y = y0 - 0.03 * np.sin(np.pi * t * 0.9) + (0.04 + 0.012 * k) * t**2
            ribs.append(np.stack([x, y], 1))
    return ribs, spacing * 0.42


def vessel_tree(layer: np.ndarray, hilum, direction: float, rng: np.random.Generator, depth: int = 5) -> None:
    """Branching vessels from a hilum: each segment forks in two, thinner and shorter (tapering)."""
    size = layer.shape[0]
    stack = [(np.array(hilum, np.float32), direction, 0.09, 0.010, depth)]
    while stack:
        p, ang, length, width, d = stack.pop()
        q = p + length * np.array([np.cos(ang), np.sin(ang)], np.float32)
        a = tuple(int(v) for v in np.round(p * size * ONE))
        b = tuple(int(v) for v in np.round(q * size * ONE))
        cv2.line(layer, a, b, 0.4 + width * 60, max(1, int(round(width * size))), cv2.LINE_AA, SHIFT)
        if d > 0:
            for turn in (-1, 1):
                spread = turn * rng.uniform(0.25, 0.6)
                stack.append((q, ang + spread, length * rng.uniform(0.7, 0.85), width * 0.72, d - 1))


def draw_anatomy(g: Anatomy, size: int, rng: np.random.Generator, heart_scale: float = 1.0,
                 mediastinum_scale: float = 1.0, inspiration: float = 0.0) -> tuple[np.ndarray, Geometry, dict]:
    """Attenuation map of a normal chest, its geometry, and named layers findings may reuse."""
    x, y = grid(size)
    mid = 0.5
    dome_r = g.diaphragm + inspiration
    dome = (dome_r, dome_r + 0.025)
    body_a = g.thorax_half_width + 0.07 + 0.05 * g.fat
    r2 = ((x - mid) / body_a) ** 2 + ((y - 0.62) / 0.75) ** 4
    torso = np.sqrt(np.clip(1 - r2, 0, 1))
    neck = np.exp(-(((x - mid) / 0.085) ** 6)) * (y < 0.2) * np.clip((0.2 - y) / 0.05, 0, 1)
    shoulders = np.sqrt(np.clip(1 - ((x - mid) / (body_a + 0.05)) ** 2 - ((y - 0.1) / 0.12) ** 2, 0, 1))
    soft = np.maximum(np.maximum(torso, neck * 0.8), shoulders * 0.9) * (0.6 + 0.25 * g.fat)
    lungs = np.zeros((size, size), np.float32)
    for side in (1, -1):
        fill(lungs, lung_outline(g, side, mid, dome[0] if side > 0 else dome[1], g.mediastinum * mediastinum_scale))
    lungs = cv2.GaussianBlur(lungs, (0, 0), size * 0.006)
    depth = 0.55 + 0.45 * np.sqrt(np.clip(1 - ((x - mid) / (g.thorax_half_width + 0.02)) ** 2, 0, 1))
    heart_hw = g.heart_ratio * g.thorax_half_width * heart_scale
    heart = (mid + 0.18 * heart_hw, dome[0] - 0.1, heart_hw, 0.12 + 0.25 * heart_hw)
    heart_layer = np.zeros_like(lungs)
    ellipse(heart_layer, heart[:2], heart[2:], angle=-12)
    heart_layer = cv2.GaussianBlur(heart_layer, (0, 0), size * 0.005)
    air = lungs * depth * (1 - 0.8 * heart_layer)
    hila = ((mid - 0.09, dome[0] - 0.27), (mid + 0.085, dome[0] - 0.26))
    vessels = np.zeros_like(lungs)
    for side, hilum in zip((1, -1), hila, strict=True):
        base = np.pi if side > 0 else 0.0
        for ang in (-0.9, -0.35, 0.3, 0.85):
            vessel_tree(vessels, hilum, base - side * ang + rng.normal(0, 0.1), rng)
    fade = np.exp(-(((x - mid) / 0.3) ** 2 + ((y - hila[0][1]) / 0.35) ** 2))
    vessels = cv2.GaussianBlur(vessels, (0, 0), size * 0.0035) * lungs * (0.35 + 0.65 * fade)
    ribs, rib_w = rib_lines(g, mid, dome[0], rng)
    bones = np.zeros_like(lungs)
    for rib in ribs:
        polyline(bones, rib, 1.0, rib_w)
        polyline(bones, rib, -0.45, rib_w * 0.45)
    for side in (1, -1):
        clav = np.array([[mid - side * 0.04, g.apex + 0.02], [mid - side * 0.16, g.apex - 0.02],
                         [mid - side * 0.3, g.apex - 0.05]], np.float32)
        polyline(bones, clav, 1.2, 0.028)
    bones = cv2.GaussianBlur(bones, (0, 0), size * 0.003)
    spine = np.exp(-(((x - mid) / 0.03) ** 4)) * (0.8 + 0.2 * np.cos(y * 2 * np.pi / 0.045) ** 2)
    trachea = np.exp(-(((x - mid) / 0.018) ** 2)) * (y < hila[0][1] - 0.02) * (y > 0.02)
    geometry = Geometry(
        size=size, mid=mid, apex=g.apex, dome=dome,
        wall=(mid - g.thorax_half_width, mid + g.thorax_half_width), heart=heart, hila=hila,
        carina=(mid, hila[0][1] - 0.02), lungs=lungs, sides=np.where(x < mid, 1.0, -1.0).astype(np.float32),
        ribs=ribs, rib_width=rib_w,
    )
    attenuation = soft + 0.3 * heart_layer - 0.55 * air + 0.5 * vessels + 0.16 * bones * (0.4 + 0.6 * lungs)
    attenuation += 0.25 * spine * (1 - 0.5 * lungs) - 0.12 * trachea
    if g.female:
        for side in (1, -1):
            breast = np.zeros_like(lungs)
            ellipse(breast, (mid - side * 0.22, dome[0] - 0.02), (0.16, 0.1))
            attenuation += 0.12 * cv2.GaussianBlur(breast, (0, 0), size * 0.03)
    layers = {"air": air, "vessels": vessels, "heart": heart_layer, "soft": soft}
    return attenuation.astype(np.float32), geometry, layers
