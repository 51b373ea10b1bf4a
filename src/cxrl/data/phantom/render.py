"""One phantom radiograph from its spec: anatomy, findings, devices, then acquisition.

Randomness comes from three seeded streams so that parts can be switched off without moving the others:
anatomy from ``(seed, patient)`` (a patient's vessels and ribs persist across studies), acquisition from
``(seed, image, 1)`` and findings from ``(seed, image, 2)``. ``render(spec, findings=False)`` therefore gives
the same patient, pose and exposure without disease (used to test masks).

In memory, masks are bit-packed: bit ``k`` of the uint16 label mask is finding ``MASK_BITS[k]``; on disk each
finding's mask is an RLE string (``Rendering.masks_json``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import cv2
import numpy as np

from cxrl.data.phantom import findings as paint
from cxrl.data.phantom.acquisition import Acquisition, expose, project
from cxrl.data.phantom.anatomy import draw_anatomy, grid
from cxrl.data.phantom.sampling import FINDINGS, OPACITIES, ImageSpec
from cxrl.data.rle import encode_rle

MASK_BITS: tuple[str, ...] = FINDINGS
CTR = {"mild": 0.54, "moderate": 0.6, "severe": 0.67}


@dataclass
class Rendering:
    """The written image (uint8), its bit-packed label mask (uint16) and boxes per finding."""

    image: np.ndarray
    mask: np.ndarray
    boxes: list[dict]

    def boxes_json(self) -> str:
        return json.dumps(self.boxes)

    def masks_json(self) -> str:
        """``{finding: RLE}`` of every drawn finding (Kaggle "absolute" RLE, see ``cxrl.data.rle``)."""
        return json.dumps({name: encode_rle(region, relative=False)
                           for bit, name in enumerate(MASK_BITS) if (region := mask_bit(self.mask, bit)).any()})


def mask_bit(packed: np.ndarray, bit: int) -> np.ndarray:
    """The boolean region of finding ``MASK_BITS[bit]`` in a bit-packed label mask."""
    return ((packed >> bit) & 1).astype(bool)


def _mediastinum_mask(geo, width: float) -> np.ndarray:
    x, y = grid(geo.size)
    top = geo.heart[1] - geo.heart[3]
    return ((np.abs(x - geo.mid) < width) & (y > geo.apex) & (y < top + 0.03)).astype(np.float32)


def _cardiomediastinal_scales(present: dict, view: str, heart_ratio: float) -> tuple[float, float]:
    """Heart width scale (AP magnification, cardiomegaly to its CTR) and upper-mediastinum widening."""
    heart = (1.1 if view == "AP" else 1.0) * (
        CTR[present["Cardiomegaly"].severity] / heart_ratio if "Cardiomegaly" in present else 1.0
    )
    ecm = present.get("Enlarged Cardiomediastinum")
    return heart, (1.3 + 0.3 * paint.AMOUNT[ecm.severity]) if ecm else 1.0


def _paint_findings(att, geo, layers, spec: ImageSpec, present: dict, widen: float, rng) -> dict[str, np.ndarray]:
    """Draw every present finding into ``att``; returns each finding's soft mask."""
    masks: dict[str, np.ndarray] = {}
    if "Cardiomegaly" in present:
        masks["Cardiomegaly"] = layers["heart"]
    if "Enlarged Cardiomediastinum" in present:
        masks["Enlarged Cardiomediastinum"] = _mediastinum_mask(geo, spec.anatomy.mediastinum * widen)
        att += 0.15 * cv2.GaussianBlur(masks["Enlarged Cardiomediastinum"], (0, 0), geo.size * 0.02)
    for name, painter in paint.PAINTERS.items():
        if name in present and not (name == "Lung Opacity" and present.keys() & set(OPACITIES)):
            extra = {"supine": spec.supine} if name == "Pleural Effusion" else {}
            masks[name] = painter(att, geo, layers, present[name], rng, **extra)
    if "Lung Opacity" in present:
        masks["Lung Opacity"] = np.maximum.reduce([masks[k] for k in (*OPACITIES, "Lung Opacity") if k in masks])
    if "Support Devices" in present:
        masks["Support Devices"] = paint.support_devices(att, geo, spec.anatomy.devices, rng)
    return masks


def render(spec: ImageSpec, size: int = 256, seed: int = 0, findings: bool = True) -> Rendering:
    """Render ``spec`` at ``size`` pixels; ``findings=False`` draws the same exposure without disease."""
    present = dict(spec.findings) if findings else {}
    rng_anatomy = np.random.default_rng([seed, spec.patient, 0])
    rng_acq = np.random.default_rng([seed, spec.index, 1])
    rng_find = np.random.default_rng([seed, spec.index, 2])
    acq = Acquisition.sample(rng_acq, spec.view, spec.supine)
    heart_scale, widen = _cardiomediastinal_scales(present, spec.view, spec.anatomy.heart_ratio)
    inspiration = float(rng_acq.normal(0, 0.02)) + (0.03 if spec.supine else 0.0)
    att, geo, layers = draw_anatomy(spec.anatomy, size, rng_anatomy, heart_scale, widen, inspiration)
    masks = _paint_findings(att, geo, layers, spec, present, widen, rng_find)
    packed = np.zeros((size, size), np.uint16)
    for bit, name in enumerate(MASK_BITS):
        if name in masks:
            packed |= (masks[name] > 0.5).astype(np.uint16) << bit
    att, packed = project(att, packed, acq)
    return Rendering(expose(att, acq, rng_acq), packed, boxes_from_mask(packed))


def boxes_from_mask(packed: np.ndarray) -> list[dict]:
    """One box per region of each finding (fragments closer than ~2% of the image merged), in pixels of the
    written image; together a finding's boxes contain all of its mask."""
    boxes = []
    kernel = np.ones((3, 3), np.uint8)
    merge = max(1, packed.shape[0] // 100)
    for bit, name in enumerate(MASK_BITS):
        binary = mask_bit(packed, bit).astype(np.uint8)
        if not binary.any():
            continue
        grown = cv2.dilate(binary, kernel, iterations=merge)
        count, labels = cv2.connectedComponents(grown, connectivity=8)
        for region in range(1, count):
            x, y, w, h = cv2.boundingRect(binary * (labels == region).astype(np.uint8))
            boxes.append({"label": name, "x": int(x), "y": int(y), "w": int(w), "h": int(h)})
    return boxes
