"""Normal chest anatomy as an attenuation map (bright = dense), drawn with vectorized numpy and cv2.

Image coordinates: x to the right, y down, in pixels of a square canvas of ``size``; the patient faces the
viewer, so the patient's right lung is on the image's left. Soft tissue is a chord-length body profile with
neck, shoulders and arms; lungs are real lung outlines (per patient, fitted between the mediastinum, chest
wall, apex and hemidiaphragms, the right higher) whose air thickness rolls off toward their edges; vessels
are branching trees tapering from the hila; ribs are curved bands with a cortical shell; clavicles, scapulae
and humeri form the shoulder girdle; the heart is an ellipsoid (projected thickness) left of the midline
whose width sets the cardiothoracic ratio.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

from cxrl.data.phantom.sampling import Anatomy
from cxrl.data.phantom.textures import texture

SHIFT = 4  # cv2 sub-pixel bits
ONE = 1 << SHIFT


@lru_cache(maxsize=4)
def grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Normalized coordinates (x, y) in [0, 1], float32, shape (size, size)."""
    t = (np.arange(size, dtype=np.float32) + 0.5) / size
    return np.meshgrid(t, t)


def polyline(layer: np.ndarray, pts, value: float, thickness: float, closed: bool = False,
             smooth: bool = True) -> None:
    """Draw normalized points ``(k, 2)`` (or a stack/list of curves, in one call) onto ``layer``.

    ``smooth=False`` skips anti-aliasing, for layers that are blurred afterwards (much faster)."""
    size = layer.shape[0]
    curves = np.asarray(pts)[None] if isinstance(pts, np.ndarray) and pts.ndim == 2 else pts
    p = [np.round(np.asarray(c) * size * ONE).astype(np.int32) for c in curves]
    line = cv2.LINE_AA if smooth else cv2.LINE_8
    cv2.polylines(layer, p, closed, value, max(1, int(round(thickness * size))), line, SHIFT)


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
    ribs: np.ndarray  # posterior rib centre lines (ribs, points, xy), right side first
    rib_width: float

    def wall_x(self, side: int) -> float:
        """Inner chest wall x of ``side`` (+1 patient's right, -1 left)."""
        return self.wall[0] if side > 0 else self.wall[1]

    def dome_y(self, side: int) -> float:
        """Hemidiaphragm dome height of ``side`` (+1 patient's right, -1 left)."""
        return self.dome[0] if side > 0 else self.dome[1]


@lru_cache(maxsize=1)
def lung_shapes() -> np.ndarray:
    """Outlines of 435 pairs of real lungs ``(pairs, 2, points, 2)``, each normalized to its bounding box, the
    patient's right lung first (derived once from the torchxrayvision masks by scripts/derive_lung_shapes.py)."""
    with np.load(Path(__file__).with_name("lung_shapes.npz")) as data:
        return data["shapes"].astype(np.float32)


def lung_outline(g: Anatomy, side: int, mid: float, dome: float, mediastinum: float,
                 shape: np.ndarray) -> np.ndarray:
    """Polygon of one lung: a real lung's outline (``shape``, normalized) fitted between the mediastinum and the
    chest wall, from the apex to the costophrenic angle; ``side`` +1 = patient's right (image left)."""
    wall = mid - side * g.thorax_half_width
    medial = mid - side * (mediastinum + 0.01 * (side < 0))
    x0, x1 = min(wall, medial), max(wall, medial)
    return np.stack([x0 + (x1 - x0) * shape[:, 0], g.apex + (dome + 0.07 - g.apex) * shape[:, 1]], 1)


def patient_lungs(rng: np.random.Generator) -> np.ndarray:
    """One patient's pair of lung outlines: a real pair warped toward another (a random blend of the two)."""
    shapes = lung_shapes()
    first, second = shapes[rng.integers(len(shapes), size=2)]
    return first + rng.uniform(0, 0.5) * (second - first)


def rib_lines(g: Anatomy, mid: float, dome: float, rng: np.random.Generator) -> tuple[np.ndarray, float]:
    """Posterior ribs ``(2n, 16, 2)``, right side first: from the spine they rise, then sweep laterally and down."""
    n = 10
    spacing = (dome + 0.06 - g.apex) / (n - 0.5)
    t = np.linspace(0, 1, 16, dtype=np.float32)[None]
    k = np.tile(np.arange(n, dtype=np.float32), 2)[:, None]
    side = np.repeat([1.0, -1.0], n).astype(np.float32)[:, None]
    y0 = g.apex - 0.03 + k * spacing + rng.normal(0, 0.003, (2 * n, 1))
    reach = g.thorax_half_width * (0.75 + 0.3 * np.sin(np.pi * np.minimum(1.0, (k + 1.5) / n)))
    x = mid - side * (0.025 + reach * t)
    y = y0 - 0.025 * np.sin(np.pi * t * 0.8) + (0.07 + 0.01 * k) * t**2.2
    return np.stack([x, y], 2).astype(np.float32), spacing * 0.42


def vessel_tree(layer: np.ndarray, hilum, directions, rng: np.random.Generator, depth: int = 5,
                length: float = 0.09, width: float = 0.010, value: float = 1.0) -> None:
    """Branching vessels from a hilum, one cv2 call per generation: each segment forks in two, thinner and
    shorter (tapering), so vessels fade toward the periphery."""
    size = layer.shape[0]
    ang = np.asarray(directions, np.float64)
    start = np.tile(np.asarray(hilum, np.float64), (len(ang), 1))
    lengths = np.full(len(ang), length)
    for level in range(depth + 1):
        end = start + lengths[:, None] * np.stack([np.cos(ang), np.sin(ang)], 1)
        segments = np.round(np.stack([start, end], 1) * size * ONE).astype(np.int32)
        thickness = max(1, int(round(width * 0.72**level * size)))
        cv2.polylines(layer, list(segments), False, value * (1 - 0.1 * level), thickness, cv2.LINE_8, SHIFT)
        m = len(ang)
        start = np.repeat(end, 2, axis=0)
        ang = np.repeat(ang, 2) + np.tile([-1.0, 1.0], m) * rng.uniform(0.25, 0.6, 2 * m)
        lengths = np.repeat(lengths, 2) * rng.uniform(0.7, 0.85, 2 * m)


@lru_cache(maxsize=4)
def sides(size: int) -> np.ndarray:
    """+1 on the image's left half (the patient's right), -1 on the right half."""
    return np.where(grid(size)[0] < 0.5, 1.0, -1.0).astype(np.float32)


def smooth_fields(g: Anatomy, size: int, mid: float, dome: float, hilum_y: float) -> tuple[np.ndarray, ...]:
    """Soft-tissue thickness (body, shoulders, spine, breasts, minus the tracheal air), lung depth and the
    hilar fade of vessel markings: smooth, so computed at quarter resolution and upsampled."""
    low = max(16, size // 4)
    x, y = grid(low)
    body_a = g.thorax_half_width + 0.035 + 0.05 * g.fat
    shoulder = np.clip((y - g.apex + 0.12) / 0.14, 0, 1) ** 0.6
    half_width = 0.1 + (body_a + 0.04 - 0.1) * shoulder - 0.03 * np.clip((y - 0.75) / 0.25, 0, 1)
    u = ((x - mid) / half_width) ** 2
    torso = np.sqrt(np.clip(1 - u, 0, 1)) * (0.55 + 0.35 * shoulder)
    arms = np.exp(-(((np.abs(x - mid) - g.thorax_half_width - 0.13) / 0.05) ** 2)) * np.clip(
        (y - g.apex + 0.1) / 0.06, 0, 1) * np.clip(np.minimum(x, 1 - x) / 0.04, 0, 1)
    torso = np.maximum(torso, 0.7 * arms)
    spine = np.exp(-(((x - mid) / 0.032) ** 4)) * np.clip((y - 0.02) / 0.05, 0, 1)
    soft = torso * (0.62 + 0.3 * g.fat) + 0.12 * spine
    if g.female:
        for side in (1, -1):
            soft += 0.1 * np.exp(-(((x - mid + side * 0.2) / 0.14) ** 2 + ((y - dome) / 0.09) ** 2))
    soft -= 0.1 * np.exp(-(((x - mid) / 0.016) ** 2)) * np.clip((hilum_y - 0.02 - y) / 0.03, 0, 1) * (y > 0.01)
    depth = 0.6 + 0.4 * np.sqrt(np.clip(1 - ((x - mid) / (g.thorax_half_width + 0.02)) ** 2, 0, 1))
    fade = np.exp(-(((x - mid) / 0.28) ** 2 + ((y - hilum_y) / 0.32) ** 2))
    return tuple(cv2.resize(f.astype(np.float32), (size, size), interpolation=cv2.INTER_LINEAR)
                 for f in (soft, depth, fade))


def shoulder_girdle(g: Anatomy, mid: float) -> tuple[list, list, list]:
    """Clavicles (S-curves from the sternal notch to the acromion), scapulae (triangles over the upper lateral
    chest, glenoid, superior and inferior angles) and humeri (head centre, then the shaft), per side."""
    clavicles, scapulae, humeri = [], [], []
    for side in (1, -1):
        out = g.thorax_half_width
        clavicles.append(np.array([[mid - side * 0.03, g.apex + 0.075], [mid - side * 0.12, g.apex + 0.055],
                                   [mid - side * (out - 0.06), g.apex + 0.035], [mid - side * (out + 0.07),
                                   g.apex - 0.02]], np.float32))
        scapulae.append(np.array([[mid - side * (out + 0.03), g.apex + 0.03],
                                  [mid - side * (out - 0.13), g.apex - 0.02],
                                  [mid - side * (out - 0.07), g.apex + 0.33]], np.float32))
        humeri.append(np.array([[mid - side * (out + 0.09), g.apex + 0.02], [mid - side * (out + 0.15),
                                g.apex + 0.4]], np.float32))
    return clavicles, scapulae, humeri


def draw_bones(g: Anatomy, size: int, mid: float, dome: float, rng: np.random.Generator):
    """Ribs (posterior bands and faint anterior arcs, each a bright cortical shell around fainter marrow),
    clavicles, scapulae, humeral heads and shafts, vertebral end plates.

    Drawn at half resolution (they are blurred anyway) and upsampled."""
    ribs, rib_w = rib_lines(g, mid, dome, rng)
    half = max(16, size // 2)
    bones = np.zeros((half, half), np.float32)
    polyline(bones, ribs, 1.0, rib_w, smooth=False)
    polyline(bones, ribs, 0.6, rib_w * 0.55, smooth=False)
    anterior = []
    for k in range(5):
        for side in (1, -1):
            y0 = g.apex + 0.06 + k * 0.085
            anterior.append(np.array([[mid - side * g.thorax_half_width * 0.95, y0],
                                      [mid - side * g.thorax_half_width * 0.55, y0 + 0.03],
                                      [mid - side * 0.08, y0 + 0.085]], np.float32))
    polyline(bones, anterior, 0.35, rib_w * 0.8, smooth=False)
    clavicles, scapulae, humeri = shoulder_girdle(g, mid)
    for blade in scapulae:
        fill(bones, blade, 0.6)
    polyline(bones, scapulae, 1.3, 0.01, closed=True, smooth=False)
    polyline(bones, humeri, 1.4, 0.07, smooth=False)
    for shaft in humeri:
        ellipse(bones, shaft[0], (0.065, 0.07), value=2.0)
    polyline(bones, clavicles, 2.4, 0.026, smooth=False)
    polyline(bones, clavicles, 1.7, 0.013, smooth=False)
    plates = [np.array([[mid - 0.03, yy], [mid + 0.03, yy]], np.float32) for yy in np.arange(0.02, 1.0, 0.045)]
    polyline(bones, plates, 0.5, 0.006, smooth=False)
    bones = cv2.GaussianBlur(bones, (0, 0), half * 0.003)
    return cv2.resize(bones, (size, size), interpolation=cv2.INTER_LINEAR), ribs, rib_w


def ellipsoid(size: int, center, axes, angle: float = 0.0) -> np.ndarray:
    """Projected thickness (0-1) of an ellipsoid seen along its short axis: smooth edges, thickest centre.

    Computed at quarter resolution and upsampled (it is smooth)."""
    low = max(16, size // 4)
    x, y = grid(low)
    c, s = np.cos(np.radians(angle)), np.sin(np.radians(angle))
    u, v = (x - center[0]) * c + (y - center[1]) * s, -(x - center[0]) * s + (y - center[1]) * c
    thick = np.sqrt(np.clip(1 - (u / axes[0]) ** 2 - (v / axes[1]) ** 2, 0, 1))
    return cv2.resize(thick.astype(np.float32), (size, size), interpolation=cv2.INTER_LINEAR)


def lung_depth(lungs: np.ndarray) -> np.ndarray:
    """Air thickness rolls off toward each lung's edge (a projected curved surface, not a stencil)."""
    dist = cv2.distanceTransform((lungs > 0.5).astype(np.uint8), cv2.DIST_L2, 3)
    return np.sqrt(np.clip(dist / (0.02 * lungs.shape[0]), 0, 1))


def draw_anatomy(g: Anatomy, size: int, rng: np.random.Generator, heart_scale: float = 1.0,
                 mediastinum_scale: float = 1.0, inspiration: float = 0.0) -> tuple[np.ndarray, Geometry, dict]:
    """Attenuation map of a normal chest, its geometry, and named layers findings may reuse."""
    mid = 0.5
    dome = (g.diaphragm + inspiration, g.diaphragm + inspiration + 0.025)
    hila = ((mid - 0.09, dome[0] - 0.27), (mid + 0.085, dome[0] - 0.26))
    soft, depth, fade = smooth_fields(g, size, mid, dome[0], hila[0][1])
    lungs = np.zeros((size, size), np.float32)
    pair = patient_lungs(rng)
    for side, side_dome, shape in zip((1, -1), dome, pair, strict=True):
        fill(lungs, lung_outline(g, side, mid, side_dome, g.mediastinum * mediastinum_scale, shape))
    lungs = cv2.GaussianBlur(lungs, (0, 0), size * 0.005)
    heart_hw = g.heart_ratio * g.thorax_half_width * heart_scale
    heart = (mid + 0.3 * heart_hw, dome[0] - 0.1, heart_hw, 0.11 + 0.3 * heart_hw)
    heart_layer = np.zeros_like(lungs)
    ellipse(heart_layer, heart[:2], heart[2:], angle=-25)
    knob = (mid + g.mediastinum * mediastinum_scale - 0.005, dome[0] - 0.36)
    ellipse(heart_layer, knob, (0.03, 0.035))
    heart_layer = cv2.GaussianBlur(heart_layer, (0, 0), size * 0.004)
    heart_thickness = ellipsoid(size, heart[:2], heart[2:], -25)
    air = lung_depth(lungs) * depth * (1 - 0.7 * np.sqrt(np.maximum(heart_thickness, heart_layer * 0.3)))
    vessels = np.zeros_like(lungs)
    for side, hilum in zip((1, -1), hila, strict=True):
        base = np.pi if side > 0 else 0.0
        angles = base - side * np.array([-1.1, -0.5, 0.05, 0.55, 1.0]) + rng.normal(0, 0.1, 5)
        vessel_tree(vessels, hilum, angles, rng, length=0.07, width=0.008)
    vessels = cv2.GaussianBlur(vessels, (0, 0), size * 0.003) * lungs * (0.25 + 0.75 * fade)
    vessels += 0.1 * lungs * texture(size, rng, scale=0)
    bones, ribs, rib_w = draw_bones(g, size, mid, dome[0], rng)
    geometry = Geometry(
        size=size, mid=mid, apex=g.apex, dome=dome,
        wall=(mid - g.thorax_half_width, mid + g.thorax_half_width), heart=heart, hila=hila,
        carina=(mid, hila[0][1] - 0.02), lungs=lungs, sides=sides(size),
        ribs=ribs, rib_width=rib_w,
    )
    attenuation = soft + 0.08 * heart_thickness - 0.5 * air + 0.16 * vessels
    attenuation += 0.1 * bones * (0.6 + 0.4 * lungs)
    layers = {"vessels": vessels, "heart": heart_layer}
    return attenuation.astype(np.float32), geometry, layers
