"""Segment Anything (Kirillov et al. 2023) prompted with a pseudo-mask's box: MedCLIP-SAM's last step."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch

from cxrl.errors import ConfigError


def load_sam(checkpoint: str | Path, kind: str = "vit_b", device: torch.device | str = "cpu"):
    """A ``segment_anything.SamPredictor`` for SAM ``kind`` with the weights of ``checkpoint`` (read as tensors
    only: ``cxrl.models.weights``)."""
    from segment_anything import SamPredictor, sam_model_registry

    from cxrl.models.weights import load_state_into, read_state_dict

    if kind not in sam_model_registry:
        raise ConfigError(f"SAM model {kind!r}: expected one of {', '.join(sam_model_registry)}")
    sam = sam_model_registry[kind](checkpoint=None)
    load_state_into(sam, read_state_dict(Path(checkpoint)), str(checkpoint))
    return SamPredictor(sam.to(device).eval())


def largest_contour_box(mask: np.ndarray) -> np.ndarray | None:
    """``[x0, y0, x1, y1]`` (SAM's XYXY box) of the largest outer contour of ``mask``; ``None`` when empty."""
    contours, _ = cv2.findContours(np.asarray(mask, np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    if not contours:
        return None
    x, y, w, h = cv2.boundingRect(max(contours, key=cv2.contourArea))
    return np.array([x, y, x + w, y + h])


def sam_refine(predictor, image: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """MedCLIP-SAM's last step: SAM's mask ``(H, W)`` bool for the box of the pseudo-mask's largest contour on the
    gray uint8 ``image`` (replicated to RGB), and that box (``None`` and an empty mask for an empty pseudo-mask)."""
    box = largest_contour_box(mask)
    if box is None:
        return np.zeros(np.shape(mask), bool), None
    predictor.set_image(np.repeat(np.asarray(image, np.uint8)[..., None], 3, axis=-1))
    masks, _, _ = predictor.predict(box=box, multimask_output=False)
    return np.asarray(masks[0], bool), box
