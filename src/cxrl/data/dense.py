"""Dense targets of a cache record in cache pixels: finding masks and boxes, mapped through the cache's letterbox.

Records carry annotations in source pixels: ``boxes`` (JSON list of ``{label, x, y, w, h}``; RSNA, NIH, VinDr,
Object-CXR, the phantom), ``masks`` (JSON ``{finding: RLE}``, the phantom's truth, Kaggle "absolute" RLE) and SIIM's
``mask_rle`` + ``mask_format`` (one Pneumothorax mask, ``|``-joined RLE strings). ``cxrl prepare`` letterboxes
each image and keeps its geometry (``orig_height``, ``orig_width``, ``scale``, ``pad_top``, ``pad_left``: a source
pixel ``(x, y)`` lands at ``(x * scale + pad_left, y * scale + pad_top)``); the functions here apply the same map to
the annotations, so a mask lies on its image pixel for pixel.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import pandas as pd

from cxrl.data import rle
from cxrl.errors import DataError

SIIM_FINDING = "Pneumothorax"  # what a SIIM ``mask_rle`` outlines


@dataclass(frozen=True)
class Box:
    """One box in cache pixels (``x0, y0`` top-left, ``x1, y1`` bottom-right, exclusive)."""

    label: str
    x0: float
    y0: float
    x1: float
    y1: float


def _present(value: Any) -> bool:
    return isinstance(value, str) and value.strip() not in ("", "[]", "{}")


def record_boxes(row: Mapping[str, Any]) -> list[Box]:
    """The boxes of one cache record (a ``records`` row), in cache pixels; ``[]`` without any."""
    text = row.get("boxes")
    if not _present(text):
        return []
    try:
        items = json.loads(text)
    except json.JSONDecodeError as err:
        raise DataError(f"{row.get('image_path')}: its boxes are not JSON ({err})") from err
    scale, top, left = float(row["scale"]), float(row["pad_top"]), float(row["pad_left"])
    return [Box(str(b["label"]), b["x"] * scale + left, b["y"] * scale + top, (b["x"] + b["w"]) * scale + left,
                (b["y"] + b["h"]) * scale + top) for b in items]


def source_mask(row: Mapping[str, Any], finding: str) -> np.ndarray | None:
    """The ``(orig_height, orig_width)`` mask of ``finding`` from the record's mask columns (``None``: the record
    has no mask annotation for it; an empty array: annotated and absent)."""
    siim = finding == SIIM_FINDING and isinstance(row.get("mask_rle"), str)
    if not (_present(row.get("masks")) or siim):
        return None
    height, width = int(row["orig_height"]), int(row["orig_width"])
    if siim:
        return rle.decode_masks(row["mask_rle"], height, width, str(row.get("mask_format") or rle.RELATIVE))
    found = json.loads(row["masks"]).get(finding)
    fmt = str(row.get("mask_format") or rle.ABSOLUTE)
    return rle.decode_masks(found, height, width, fmt) if found else np.zeros((height, width), bool)


def letterbox_mask(mask: np.ndarray, row: Mapping[str, Any], size: int) -> np.ndarray:
    """A source-pixel mask placed into the ``size x size`` cache frame as its image was (area-resized, >= half)."""
    scale = float(row["scale"])
    new_h, new_w = max(1, round(mask.shape[0] * scale)), max(1, round(mask.shape[1] * scale))
    resized = cv2.resize(mask.astype(np.float32), (new_w, new_h), interpolation=cv2.INTER_AREA) >= 0.5
    out = np.zeros((size, size), bool)
    top, left = int(row["pad_top"]), int(row["pad_left"])
    out[top:top + new_h, left:left + new_w] = resized[: size - top, : size - left]
    return out


def box_mask(boxes: Sequence[Box], size: int) -> np.ndarray:
    """The union of ``boxes`` as a ``size x size`` mask (RSNA's convention for segmenting with boxes)."""
    out = np.zeros((size, size), bool)
    for b in boxes:
        y0, x0 = max(int(np.floor(b.y0)), 0), max(int(np.floor(b.x0)), 0)
        out[y0:max(int(np.ceil(b.y1)), y0), x0:max(int(np.ceil(b.x1)), x0)] = True
    return out


def record_mask(row: Mapping[str, Any], finding: str, size: int) -> np.ndarray | None:
    """The cache-pixel mask of ``finding`` in one record: its mask annotation, else its boxes labelled ``finding``
    filled in, else ``None`` when the record annotates neither (a row with boxes of other labels is annotated:
    the finding is absent)."""
    mask = source_mask(row, finding)
    if mask is not None:
        return letterbox_mask(mask, row, size)
    if isinstance(row.get("boxes"), str):
        return box_mask([b for b in record_boxes(row) if b.label == finding], size)
    return None


def outlined_masks(records: pd.DataFrame, rows: np.ndarray, finding: str, size: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``rows`` whose cache-pixel mask of ``finding`` is not empty, and those masks ``(n, size, size)``."""
    kept, masks = [], []
    for r in np.asarray(rows, np.int64):
        mask = record_mask(records.iloc[int(r)].to_dict(), finding, size)
        if mask is not None and mask.any():
            kept.append(int(r))
            masks.append(mask)
    return np.array(kept, np.int64), np.array(masks, bool).reshape(-1, size, size)


def dense_findings(records: pd.DataFrame) -> list[str]:
    """The labels that some record outlines (a mask or a box), in first-seen order."""
    found: dict[str, None] = {}
    for text in records.get("masks", pd.Series(dtype=object)).dropna():
        if _present(text):
            found.update(dict.fromkeys(json.loads(text)))
    if "mask_rle" in records and records["mask_rle"].map(_present).any():
        found[SIIM_FINDING] = None
    for text in records.get("boxes", pd.Series(dtype=object)).dropna():
        if _present(text):
            found.update(dict.fromkeys(str(b["label"]) for b in json.loads(text)))
    return list(found)


def outlines(records: pd.DataFrame, finding: str) -> np.ndarray:
    """Which records outline ``finding`` with a non-empty mask or a box (read from the JSON, nothing decoded)."""
    found = np.zeros(len(records), bool)
    if "masks" in records:
        found |= records["masks"].map(lambda m: _present(m) and finding in json.loads(m)).to_numpy()
    if finding == SIIM_FINDING and "mask_rle" in records:
        found |= records["mask_rle"].map(lambda m: _present(m) and any(
            part.strip() not in ("", rle.EMPTY) for part in m.split(rle.SEPARATOR))).to_numpy()
    if "boxes" in records:
        found |= records["boxes"].map(lambda b: _present(b) and any(
            str(x["label"]) == finding for x in json.loads(b))).to_numpy()
    return found


def annotated(records: pd.DataFrame) -> np.ndarray:
    """Which records carry a dense annotation column at all (``masks``, ``mask_rle`` or ``boxes``, even empty)."""
    has = np.zeros(len(records), bool)
    for column in ("masks", "mask_rle", "boxes"):
        if column in records:
            has |= records[column].map(lambda v: isinstance(v, str)).to_numpy()
    return has


def mask_stack(records: pd.DataFrame, rows: np.ndarray, findings: Sequence[str], size: int) -> np.ndarray:
    """``(len(rows), len(findings), size, size)`` bool masks of ``rows``; a record without an annotation for a
    finding gets an empty mask (filter rows with :func:`annotated` first)."""
    out = np.zeros((len(rows), len(findings), size, size), bool)
    for i, r in enumerate(np.asarray(rows)):
        row = records.iloc[int(r)].to_dict()
        for k, finding in enumerate(findings):
            mask = record_mask(row, finding, size)
            if mask is not None:
                out[i, k] = mask
    return out
