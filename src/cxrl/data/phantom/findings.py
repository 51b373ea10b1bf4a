"""Findings drawn into the attenuation map, each returning its ground-truth mask.

Every painter takes ``(attenuation, geometry, layers, finding, rng)``, edits ``attenuation`` in place and
returns a float mask (> 0.5 = the finding's region). Looks follow the radiographic signs: effusion = dependent
density with a meniscus (a basal veil when supine); pneumothorax = a thin pleural line with no markings beyond
it; consolidation = dense patchy opacity with air bronchograms; edema = bilateral perihilar haze with septal
lines; atelectasis = plate-like basal bands; lesion = sharp round nodule or mass; fracture = a cortical break.
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np

from cxrl.data.phantom.anatomy import Geometry, ellipse, grid, polyline, vessel_tree
from cxrl.data.phantom.sampling import Finding
from cxrl.data.phantom.textures import texture

AMOUNT = {"mild": 0.0, "moderate": 0.5, "severe": 1.0}
SIDE_SIGN = {"right": (1,), "left": (-1,), "bilateral": (1, -1), "midline": (1,)}
ZONE_Y = {"upper": 0.25, "middle": 0.5, "lower": 0.78}


def side_region(geo: Geometry, side: int) -> np.ndarray:
    return geo.lungs * (geo.sides == side)


def _lung_distance(geo: Geometry, side: int) -> tuple[np.ndarray, np.ndarray]:
    """One lung's binary mask (uint8) and each pixel's distance to its edge, in fractions of the image."""
    lung = (side_region(geo, side) > 0.5).astype(np.uint8)
    return lung, cv2.distanceTransform(lung, cv2.DIST_L2, 3) / geo.size


def effusion(att, geo: Geometry, layers, f: Finding, rng, supine: bool = False) -> np.ndarray:
    """Blunted costophrenic angle rising to a meniscus; supine: a graded veil over the hemithorax."""
    x, y = grid(geo.size)
    a = AMOUNT[f.severity]
    mask = np.zeros_like(att)
    for side in SIDE_SIGN[f.side]:
        dome = geo.dome_y(side)
        hemi = side_region(geo, side)
        if supine:
            level = dome - 0.1 - 0.25 * a
            region = hemi * np.clip((y - level) / 0.2, 0, 1)
            att += (0.18 + 0.2 * a) * region
        else:
            wall = geo.wall_x(side)
            lateral = np.clip(1 - np.abs(x - wall) / 0.25, 0, 1)
            level = dome - 0.02 - (0.05 + 0.25 * a) + (0.07 + 0.05 * a) * (1 - lateral) ** 1.5
            region = hemi * np.clip((y - level) / 0.03, 0, 1)
            att += (0.42 + 0.1 * a) * region * (0.6 + 0.4 * np.clip((y - level) / 0.12, 0, 1))
        mask = np.maximum(mask, region)
    return mask


def pneumothorax(att, geo: Geometry, layers, f: Finding, rng) -> np.ndarray:
    """Apical/lateral air beyond a thin visceral pleural line; the collapsed lung keeps its markings."""
    x, y = grid(geo.size)
    side = SIDE_SIGN[f.side][0]
    lung, dist = _lung_distance(geo, side)
    wall = geo.wall_x(side)
    hilum_y = geo.hila[0][1]
    reach = (0.025 + 0.07 * AMOUNT[f.severity]) * np.clip(
        1.2 - np.abs(x - wall) / 0.3 - np.clip((y - hilum_y) / 0.35, 0, 1), 0, 1
    )
    space = (lung > 0) & (dist < reach)
    line = (lung > 0) & (dist >= reach) & (dist < reach + 1.3 / geo.size) & (reach > 0.01)
    space_f = space.astype(np.float32)
    att -= space_f * (layers["vessels"] * 0.5 + 0.05)
    att += line * 0.18
    return space_f


def _patch(geo: Geometry, f: Finding, rng, spread: float, threshold: float) -> np.ndarray:
    """Ill-defined airspace opacity: thresholded smooth noise inside a lung zone, soft-edged."""
    x, y = grid(geo.size)
    out = np.zeros((geo.size, geo.size), np.float32)
    for side in SIDE_SIGN[f.side]:
        wall = geo.wall_x(side)
        cx = geo.mid + (wall - geo.mid) * rng.uniform(0.45, 0.75)
        top, bottom = geo.apex + 0.05, geo.dome_y(side) - 0.03
        cy = top + (bottom - top) * ZONE_Y[f.zone] + rng.normal(0, 0.02)
        r = spread * (0.6 + 0.6 * AMOUNT[f.severity])
        blob = np.exp(-(((x - cx) / r) ** 2 + ((y - cy) / (0.8 * r)) ** 2))
        field = blob + 0.5 * texture(geo.size, rng, scale=1) + 0.3 * texture(geo.size, rng, scale=0)
        out = np.maximum(out, np.clip((field - threshold) / 0.3, 0, 1) * side_region(geo, side))
    return cv2.GaussianBlur(out, (0, 0), geo.size * 0.006)


def air_bronchograms(geo: Geometry, region: np.ndarray, rng) -> np.ndarray:
    """Dark branching tubes inside an opacity."""
    tubes = np.zeros_like(region)
    for side, hilum in zip((1, -1), geo.hila, strict=True):
        if (region * (geo.sides == side)).max() > 0.5:
            vessel_tree(tubes, hilum, [np.pi * (side > 0) - side * rng.uniform(-0.6, 0.9)], rng, depth=3)
    return tubes * (region > 0.6)


def consolidation(att, geo: Geometry, layers, f: Finding, rng) -> np.ndarray:
    region = _patch(geo, f, rng, spread=0.11, threshold=0.45)
    att += region * (0.42 + 0.15 * AMOUNT[f.severity]) - 0.15 * air_bronchograms(geo, region, rng)
    return region


def pneumonia(att, geo: Geometry, layers, f: Finding, rng) -> np.ndarray:
    """Patchy airspace opacity, less confluent than consolidation."""
    region = _patch(geo, f, rng, spread=0.1, threshold=0.55)
    att += region * (0.3 + 0.15 * AMOUNT[f.severity])
    return region


def lung_opacity(att, geo: Geometry, layers, f: Finding, rng) -> np.ndarray:
    """Non-specific hazy opacity (the umbrella label when no specific opacity is drawn)."""
    region = _patch(geo, f, rng, spread=0.09, threshold=0.5)
    att += region * (0.22 + 0.1 * AMOUNT[f.severity])
    return region


def edema(att, geo: Geometry, layers, f: Finding, rng) -> np.ndarray:
    """Bat-wing perihilar haze, indistinct vessels, Kerley B lines at the bases."""
    x, y = grid(geo.size)
    a = AMOUNT[f.severity]
    haze = np.zeros_like(att)
    for hx, hy in geo.hila:
        haze = np.maximum(haze, np.exp(-(((x - hx) / (0.13 + 0.05 * a)) ** 2 + ((y - hy) / (0.15 + 0.05 * a)) ** 2)))
    haze = haze * (0.9 + 0.1 * texture(geo.size, rng, scale=2)) * geo.lungs
    att += (0.07 + 0.1 * a) * haze + 0.2 * cv2.GaussianBlur(layers["vessels"], (0, 0), geo.size * 0.006)
    lines = np.zeros_like(att)
    for side in (1, -1):
        wall = geo.wall_x(side)
        dome = geo.dome_y(side)
        for _ in range(3 + int(4 * a)):
            yy = dome - rng.uniform(0.01, 0.12)
            x0 = wall + side * rng.uniform(0.005, 0.02)
            polyline(lines, np.array([[x0, yy], [x0 + side * rng.uniform(0.03, 0.05), yy]]), 1.0, 0.006)
    att += 0.2 * lines * geo.lungs
    return np.maximum(haze > 0.35, lines * geo.lungs > 0.3).astype(np.float32)


def atelectasis(att, geo: Geometry, layers, f: Finding, rng) -> np.ndarray:
    """Plate-like (discoid) bands at the bases; severe: retrocardiac lower-lobe collapse."""
    bands = np.zeros_like(att)
    for side in SIDE_SIGN[f.side]:
        wall = geo.wall_x(side)
        dome = geo.dome_y(side)
        for _ in range(1 + int(2 * AMOUNT[f.severity])):
            yy = dome - rng.uniform(0.06, 0.16)
            x0 = geo.mid + (wall - geo.mid) * rng.uniform(0.25, 0.45)
            x1 = geo.mid + (wall - geo.mid) * rng.uniform(0.75, 0.95)
            tilt = rng.normal(0, 0.015)
            polyline(bands, np.array([[x0, yy - tilt], [x1, yy + tilt]]), 1.0, 0.014 + 0.01 * AMOUNT[f.severity])
        if f.severity == "severe":
            cx = geo.heart[0] if side < 0 else geo.mid - 0.08
            ellipse(bands, (cx - side * 0.03, dome - 0.07), (0.06, 0.07), angle=side * 30)
    bands = cv2.GaussianBlur(bands, (0, 0), geo.size * 0.004) * geo.lungs
    att += 0.4 * bands
    return bands


def lung_lesion(att, geo: Geometry, layers, f: Finding, rng) -> np.ndarray:
    """Sharp round nodule(s) or a mass (severe)."""
    mask = np.zeros_like(att)
    count = 1 if f.severity != "mild" else int(rng.integers(1, 4))
    radius = {"mild": 0.026, "moderate": 0.035, "severe": 0.065}[f.severity]
    wall = geo.wall_x(SIDE_SIGN[f.side][0])
    for _ in range(count):
        cx = geo.mid + (wall - geo.mid) * rng.uniform(0.4, 0.75)
        cy = geo.apex + rng.uniform(0.1, 0.4)
        ellipse(mask, (cx, cy), (radius * rng.uniform(0.9, 1.1), radius * rng.uniform(0.9, 1.1)), rng.uniform(0, 180))
    att += 0.42 * cv2.GaussianBlur(mask, (0, 0), geo.size * 0.0015)
    return mask


def pleural_other(att, geo: Geometry, layers, f: Finding, rng) -> np.ndarray:
    """Pleural thickening along the lateral wall, with bright calcified plaques."""
    side = SIDE_SIGN[f.side][0]
    lung, dist = _lung_distance(geo, side)
    x, y = grid(geo.size)
    wall = geo.wall_x(side)
    lateral = np.abs(x - wall) < 0.12
    band = ((dist < 0.012 + 0.012 * AMOUNT[f.severity]) & (lung > 0) & lateral & (y > geo.apex + 0.12)).astype(
        np.float32
    )
    plaques = np.zeros_like(att)
    for _ in range(2):
        ellipse(plaques, (wall - side * 0.02, geo.apex + rng.uniform(0.2, 0.45)), (0.008, 0.03))
    att += 0.3 * band + 0.5 * plaques * lateral
    return np.maximum(band, plaques * lateral)


def fracture(att, geo: Geometry, layers, f: Finding, rng) -> np.ndarray:
    """A rib cortex break (a lucent gap across the rib) with callus, on one or two adjacent ribs."""
    mask, change = np.zeros_like(att), np.zeros_like(att)
    side = SIDE_SIGN[f.side][0]
    first = int(rng.integers(3, 8)) + (0 if side > 0 else len(geo.ribs) // 2)
    t = int(rng.integers(9, 14))
    for rib in geo.ribs[first : first + (1 if f.severity == "mild" else 2)]:
        p, q = rib[t - 1], rib[t]
        normal = np.array([q[1] - p[1], p[0] - q[0]])
        normal = normal / (np.linalg.norm(normal) + 1e-6) * geo.rib_width * 0.9
        ellipse(change, tuple(q), (0.012, 0.018), value=0.5)
        polyline(change, np.stack([p - normal, p + normal]), -1.0, 0.006)
        ellipse(mask, tuple((p + q) / 2), (0.025, 0.025))
    att += 0.14 * change * (change < 0) + 0.1 * change * (change > 0)
    return mask


def support_devices(att, geo: Geometry, kit: tuple[str, ...], rng) -> np.ndarray:
    """Radio-opaque lines, tubes, leads and wires drawn as near-metal density."""
    layer = np.zeros_like(att)
    mid, (_, cyr), dome = geo.mid, geo.carina, geo.dome[0]
    for device in kit:
        if device == "et_tube":
            tip = cyr - rng.uniform(0.03, 0.07)
            for dx in (-0.008, 0.008):
                polyline(layer, np.array([[mid + dx, 0.0], [mid + dx, tip]]), 0.9, 0.004)
        elif device == "central_line":
            s = rng.choice([1, -1])
            polyline(layer, np.array([[mid - s * 0.22, 0.02], [mid - s * 0.17, geo.apex + 0.02],
                                      [mid - s * 0.06, geo.apex + 0.06], [mid - 0.03, cyr + rng.uniform(0, 0.08)]]),
                     1.0, 0.004)
        elif device == "ng_tube":
            polyline(layer, np.array([[mid - 0.01, 0.0], [mid + 0.01, cyr], [mid + 0.03, dome],
                                      [mid + 0.12, dome + 0.08], [mid + 0.16, dome + 0.1]]), 0.9, 0.005)
        elif device == "pacemaker":
            box = np.zeros_like(att)
            ellipse(box, (mid + 0.25, geo.apex + 0.08), (0.05, 0.035))
            layer = np.maximum(layer, 1.4 * box)
            polyline(layer, np.array([[mid + 0.22, geo.apex + 0.08], [mid + 0.04, cyr],
                                      [geo.heart[0], geo.heart[1] + 0.05]]), 1.0, 0.005)
        elif device == "ecg_leads":
            for _ in range(int(rng.integers(3, 6))):
                c = (rng.uniform(0.15, 0.85), rng.uniform(0.1, 0.75))
                ellipse(layer, c, (0.018, 0.018), value=0.9, thickness=2)
                polyline(layer, np.array([c, [c[0] + rng.normal(0, 0.2), 1.0]]), 0.5, 0.003)
        elif device == "sternotomy":
            for k in range(6):
                ellipse(layer, (mid + rng.normal(0, 0.005), cyr - 0.1 + k * 0.05), (0.012, 0.007),
                        value=1.3, thickness=2)
    att += layer
    return (layer > 0.3).astype(np.float32)


PAINTERS: dict[str, Callable] = {
    "Pleural Effusion": effusion,
    "Pneumothorax": pneumothorax,
    "Consolidation": consolidation,
    "Pneumonia": pneumonia,
    "Lung Opacity": lung_opacity,
    "Edema": edema,
    "Atelectasis": atelectasis,
    "Lung Lesion": lung_lesion,
    "Pleural Other": pleural_other,
    "Fracture": fracture,
}
