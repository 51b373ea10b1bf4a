"""The phantom's annotations beside any reader: a folder written by ``cxrl phantom`` holds
``phantom_truth/truth.parquet`` (one row per image: boxes and per-finding masks in pixels of the written image),
and :func:`cxrl.data.records.load_records` joins its ``boxes`` and ``masks`` onto the records by image path, as
the SIIM and RSNA readers carry their masks and boxes. Real datasets have no such folder and are left unchanged."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from cxrl.errors import DataError

TRUTH = Path("phantom_truth") / "truth.parquet"


def attach_phantom_truth(frame: pd.DataFrame, root: Path) -> pd.DataFrame:
    """``frame`` with ``boxes``, ``masks`` and ``mask_format`` from ``root``'s phantom truth (unchanged without
    one); a record the truth does not list keeps no annotation."""
    path = root / TRUTH
    if not path.is_file() or "masks" in frame:
        return frame
    try:
        truth = pd.read_parquet(path, columns=["image", "boxes", "masks"])
    except (OSError, ValueError, KeyError) as err:
        raise DataError(f"{path}: unreadable phantom truth ({err})") from err
    manifest = path.with_name("manifest.json")
    fmt = json.loads(manifest.read_text()).get("mask_format", "absolute") if manifest.is_file() else "absolute"
    keyed = truth.set_index(root.as_posix() + "/" + truth["image"].astype(str))
    paths = frame["image_path"].astype(str)
    out = frame.copy()
    if "boxes" not in out:
        out["boxes"] = paths.map(keyed["boxes"])
    out["masks"] = paths.map(keyed["masks"])
    out["mask_format"] = out["masks"].map(lambda m: fmt if isinstance(m, str) else None)
    return out
