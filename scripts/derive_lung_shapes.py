"""Derive ``src/cxrl/data/phantom/lung_shapes.npz``: outlines of real lungs for the phantom's anatomy.

Reads the 517 binary lung masks shipped in the torchxrayvision wheel (``semantic_masks_v7labs_lungs.zip``,
Apache-2.0 package), keeps the masks with two lungs (the two largest regions, each at least a quarter of the
other), and stores each lung's outline as ``POINTS`` points evenly spaced along its contour, starting at its
apex, normalized to the lung's bounding box: ``shapes`` is ``(masks, 2, POINTS, 2)`` float16, the image-left
lung (the patient's right) first. Run once; the phantom loads the result.

    .venv/bin/python scripts/derive_lung_shapes.py [--out src/cxrl/data/phantom/lung_shapes.npz]
"""

from __future__ import annotations

import argparse
import zipfile
from pathlib import Path

import cv2
import numpy as np

POINTS = 48


def outline(region: np.ndarray) -> np.ndarray:
    """``POINTS`` points along the region's outer contour, from its apex, normalized to its bounding box."""
    contours, _ = cv2.findContours(region, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    c = max(contours, key=cv2.contourArea)[:, 0].astype(np.float64)
    c = np.roll(c, -int(np.argmin(c[:, 1])), axis=0)
    arc = np.r_[0, np.cumsum(np.hypot(*np.diff(np.vstack([c, c[:1]]), axis=0).T))]
    t = np.linspace(0, arc[-1], POINTS, endpoint=False)
    closed = np.vstack([c, c[:1]])
    pts = np.stack([np.interp(t, arc, closed[:, 0]), np.interp(t, arc, closed[:, 1])], 1)
    lo, hi = pts.min(0), pts.max(0)
    return (pts - lo) / np.maximum(hi - lo, 1)


def lungs(data: bytes) -> np.ndarray | None:
    """The two lungs' outlines ``(2, POINTS, 2)`` of one mask file, or None when it does not hold two lungs."""
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_REDUCED_GRAYSCALE_4)
    if image is None:
        return None
    count, labels, stats, centroids = cv2.connectedComponentsWithStats((image > 127).astype(np.uint8))
    if count < 3:
        return None
    first, second = np.argsort(stats[1:, cv2.CC_STAT_AREA])[::-1][:2] + 1
    if stats[second, cv2.CC_STAT_AREA] < 0.25 * stats[first, cv2.CC_STAT_AREA]:
        return None
    pair = sorted((first, second), key=lambda k: centroids[k][0])
    return np.stack([outline((labels == k).astype(np.uint8)) for k in pair])


def main() -> None:
    import torchxrayvision

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("src/cxrl/data/phantom/lung_shapes.npz"))
    args = parser.parse_args()
    source = Path(torchxrayvision.__file__).parent / "data" / "semantic_masks_v7labs_lungs.zip"
    with zipfile.ZipFile(source) as archive:
        names = sorted(n for n in archive.namelist() if not n.endswith("/"))
        shapes = [s for s in (lungs(archive.read(n)) for n in names) if s is not None]
    np.savez_compressed(args.out, shapes=np.stack(shapes).astype(np.float16))
    print(f"{len(shapes)} of {len(names)} masks hold two lungs; wrote {args.out}")


if __name__ == "__main__":
    main()
