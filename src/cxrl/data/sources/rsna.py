"""RSNA Pneumonia Detection Challenge (Kaggle 2018, stage 2): ``stage_2_train_labels.csv`` and, when present,
``stage_2_detailed_class_info.csv``.

The labels CSV has one row per box (``Target`` 1) or one empty row (``Target`` 0) per patientId; one patientId is
one image (``stage_2_train_images/<patientId>.dcm``). ``Target`` becomes both "Pneumonia" and "Lung Opacity"
(the challenge's positive class is "Lung Opacity" suggestive of pneumonia). ``boxes`` lists the image's boxes
(1024-px space; "[]" for negatives). With the class file, ``class`` holds its value and "No Finding" is 1 for
"Normal", 0 otherwise. The stage-2 train set has no official split (split stays None).
Leakage: RSNA images are a re-annotated subset of NIH ChestX-ray14.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from cxrl.data.sources._common import (
    Skipped,
    boxes_json,
    csv_lines,
    find_file,
    paths_under,
    read_csv,
    require_columns,
    require_file,
)
from cxrl.errors import ConfigError

LABELS = "stage_2_train_labels.csv"
CLASSES = "stage_2_detailed_class_info.csv"
IMAGE_DIR = "stage_2_train_images"
EXTENSIONS = (".dcm", ".jpg", ".png")
POSITIVE_LABEL = "Lung Opacity"


def load(root: Path, extension: str = ".dcm") -> pd.DataFrame:
    """One record per patientId; ``extension`` picks the image files (".dcm" as distributed, or converted
    ".jpg"/".png" named the same)."""
    if extension not in EXTENSIONS:
        raise ConfigError(f"rsna extension {extension!r}: expected one of {', '.join(EXTENSIONS)}")
    path = require_file(root, "rsna", LABELS)
    skipped = Skipped()
    rows = read_label_rows(path, skipped)
    target = rows.groupby("patientId", sort=False)["Target"].max()
    ids = pd.Series(target.index, index=target.index)
    boxed = rows[rows["Target"] == 1].rename(columns={"width": "w", "height": "h"})
    boxes = boxes_json(boxed["patientId"], boxed.assign(label=POSITIVE_LABEL)[["label", "x", "y", "w", "h"]])
    frame = pd.DataFrame(
        {
            "image_path": paths_under(root / IMAGE_DIR, ids + extension),
            "patient_id": ids,
            "study_id": ids,
            "split": None,
            "Pneumonia": target.astype("float32"),
            "Lung Opacity": target.astype("float32"),
            "boxes": ids.map(boxes).fillna("[]"),
        }
    )
    frame = add_classes(frame, root)
    return skipped.attach(frame.reset_index(drop=True), "rsna")


def read_label_rows(path: Path, skipped: Skipped) -> pd.DataFrame:
    """The label rows; a Target outside 0/1, or a positive row without a complete box, is skipped."""
    table = read_csv(path, dtype={"patientId": str})
    require_columns(table, path, ("patientId", "x", "y", "width", "height", "Target"))
    table["Target"] = pd.to_numeric(table["Target"], errors="coerce")
    coords = table[["x", "y", "width", "height"]].apply(pd.to_numeric, errors="coerce")
    bad = (
        table["patientId"].isna()
        | ~table["Target"].isin([0, 1])
        | ((table["Target"] == 1) & (coords.isna().any(axis=1) | (coords[["width", "height"]] <= 0).any(axis=1)))
    )
    skipped.add_rows(path, csv_lines(table.index[bad]), "patientId missing, Target not 0/1, or positive without a box")
    return pd.concat([table[["patientId", "Target"]], coords], axis=1)[~bad]


def add_classes(frame: pd.DataFrame, root: Path) -> pd.DataFrame:
    """``class`` and "No Finding" from the detailed class file, when present."""
    path = find_file(root, CLASSES)
    if path is None:
        return frame
    table = read_csv(path, dtype=str)
    require_columns(table, path, ("patientId", "class"))
    classes = table.drop_duplicates("patientId").set_index("patientId")["class"].str.strip()
    cls = frame["patient_id"].map(classes)
    no_finding = (cls == "Normal").astype("float32").where(cls.notna())
    return frame.assign(**{"class": cls, "No Finding": no_finding})
