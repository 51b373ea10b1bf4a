"""One explained image as a PNG: the radiograph with the finding's mask outlined, beside the class activation map
blended over it (pytorch-grad-cam's ``show_cam_on_image``, jet colormap) with the same outline and a cross at the
map's maximum. Pixels are enlarged ``zoom`` times without smoothing, so each cache pixel stays visible."""

from __future__ import annotations

import errno
from pathlib import Path

import cv2
import numpy as np
from pytorch_grad_cam.utils.image import show_cam_on_image

MASK_COLOUR = (0, 255, 0)  # BGR green
PEAK_COLOUR = (255, 255, 255)


def write_overlay(image: np.ndarray, saliency: np.ndarray, mask: np.ndarray | None, path: Path, zoom: int = 3) -> Path:
    """Write the two panels of uint8 ``image`` ``(H, W)``, ``saliency`` in ``[0, 1]`` and ``mask`` (or none) to
    ``path``; returns it."""
    big = lambda a: cv2.resize(a, None, fx=zoom, fy=zoom, interpolation=cv2.INTER_NEAREST)  # noqa: E731
    gray = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_GRAY2BGR)
    blended = show_cam_on_image(gray.astype(np.float32) / 255, saliency.astype(np.float32), use_rgb=False)
    panels = [big(gray), big(blended)]
    if mask is not None and mask.any():
        contours, _ = cv2.findContours(big(mask.astype(np.uint8)), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        for panel in panels:
            cv2.drawContours(panel, contours, -1, MASK_COLOUR, 1)
    y, x = np.unravel_index(int(np.argmax(saliency)), saliency.shape)
    centre = (int(x * zoom + zoom // 2), int(y * zoom + zoom // 2))
    cv2.drawMarker(panels[1], centre, PEAK_COLOUR, cv2.MARKER_CROSS, markerSize=4 * zoom, thickness=1)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), np.concatenate([panels[0], np.full_like(panels[0][:, :4], 255), panels[1]], 1)):
        raise OSError(errno.EIO, "OpenCV could not encode or write the PNG", str(path))
    return path
