"""SIIM-ACR Pneumothorax Segmentation (Kaggle 2019): ``train-rle.csv`` or the stage-2 ``stage_2_train.csv``.

The CSV has one row per annotated region (``-1`` when there is none), so an ImageId can appear up to ten times;
rows are grouped into one record per image whose ``mask_rle`` joins the RLE strings with ``|`` (decode with
:func:`cxrl.data.rle.decode_masks`, which ORs them) and whose ``mask_format`` names the RLE variant. Headers and
values are stripped (the original header is ``ImageId, EncodedPixels`` with a leading space).
Images are ``dicom-images-train/<StudyUID>/<SeriesUID>/<ImageId>.dcm``, found by walking that folder if it exists.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from cxrl.data import rle
from cxrl.data.sources._common import (
    Skipped,
    csv_lines,
    find_file,
    found_or_default,
    index_images,
    paths_under,
    read_csv,
    require_columns,
)
from cxrl.errors import DataError

FILES: dict[str, str] = {"train-rle.csv": rle.RELATIVE, "stage_2_train.csv": rle.ABSOLUTE}
IMAGE_DIR = "dicom-images-train"
MASK_SIZE = 1024  # every SIIM mask (and image) is 1024 x 1024


def load(root: Path) -> pd.DataFrame:
    """One record per ImageId with ``Pneumothorax`` 1/0, ``mask_rle`` and ``mask_format``."""
    path = find_file(root, *FILES)
    if path is None:
        raise DataError(f"siim: neither of {', '.join(FILES)} (plain, .gz or .zip) is in {root}")
    skipped = Skipped()
    table = read_rle_table(path, skipped)
    positive = table["EncodedPixels"] != rle.EMPTY
    named = next(fmt for name, fmt in FILES.items() if path.name.startswith(name))
    fmt = rle.detect_format(table["EncodedPixels"][positive], default=named)
    masks = table[positive].groupby("ImageId", sort=False)["EncodedPixels"].agg(rle.SEPARATOR.join)
    ids = pd.Series(table["ImageId"].unique())
    frame = pd.DataFrame(
        {
            "image_path": image_paths(root, ids),
            "patient_id": ids,
            "study_id": ids,
            "view": None,
            "split": None,
            "Pneumothorax": ids.isin(masks.index).astype("float32"),
            "mask_rle": ids.map(masks).fillna(rle.EMPTY),
            "mask_format": fmt,
            "mask_height": MASK_SIZE,
            "mask_width": MASK_SIZE,
        }
    )
    return skipped.attach(frame, "siim")


def read_rle_table(path: Path, skipped: Skipped) -> pd.DataFrame:
    """``ImageId, EncodedPixels`` with header and values stripped; rows lacking either are skipped."""
    table = read_csv(path, dtype=str, skipinitialspace=True)
    table.columns = table.columns.str.strip()
    require_columns(table, path, ("ImageId", "EncodedPixels"))
    table = pd.DataFrame({name: table[name].str.strip() for name in ("ImageId", "EncodedPixels")})
    blank = table["ImageId"].fillna("").eq("") | table["EncodedPixels"].isna()
    malformed = ~blank & ~table["EncodedPixels"].fillna("").str.fullmatch(r"-1|\d+( \d+)*")
    reasons = np.where(blank, "ImageId or EncodedPixels is blank", "EncodedPixels is not -1 or a list of integers")
    skipped.add_rows(path, csv_lines(table.index[blank | malformed]), reasons[blank | malformed])
    return table[~(blank | malformed)]


def image_paths(root: Path, ids: pd.Series) -> pd.Series:
    """Path of each ImageId's DICOM: found by walking ``dicom-images-train`` when it exists, else the flat default."""
    names = ids + ".dcm"
    return found_or_default(names, index_images([root / IMAGE_DIR], (".dcm",)), paths_under(root / IMAGE_DIR, names))
