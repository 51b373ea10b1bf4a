"""VinDr-CXR as released for the VinBigData Kaggle challenge (Nguyen et al., Sci. Data 2022): ``train.csv``.

``train.csv`` has one row per box (``image_id, class_name, class_id, rad_id, x_min, y_min, x_max, y_max``), and
one box-less "No finding" row per reader who saw nothing; every image was read by 3 of 17 radiologists.
A finding is 1 when at least one reader marked it, else 0. Names map to the canonical vocabulary (Pleural
effusion -> Pleural Effusion, Pleural thickening -> Pleural Thickening, Pulmonary fibrosis -> Fibrosis);
VinDr-only findings keep their names as extra columns (Aortic enlargement, Calcification, ILD, Nodule/Mass,
Other lesion).
Nodule/Mass is one class in VinDr, so the canonical "Nodule" and "Mass" are 0 when it is 0 but NaN (unknown
which) when it is 1; the combined 1/0 stays in "Nodule/Mass". "No Finding" is 1 when no reader marked any
finding. ``boxes`` lists every reader's boxes (original DICOM pixels) with ``rad_id``; ``readers`` the rad_ids.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from cxrl.data.sources._common import (
    Skipped,
    boxes_json,
    csv_lines,
    group_lists,
    paths_under,
    read_csv,
    require_columns,
    require_file,
)
from cxrl.data.sources.chexpert import no_finding
from cxrl.errors import ConfigError

CANONICAL: dict[str, str] = {
    "Atelectasis": "Atelectasis",
    "Cardiomegaly": "Cardiomegaly",
    "Consolidation": "Consolidation",
    "Infiltration": "Infiltration",
    "Lung Opacity": "Lung Opacity",
    "Pleural effusion": "Pleural Effusion",
    "Pleural thickening": "Pleural Thickening",
    "Pneumothorax": "Pneumothorax",
    "Pulmonary fibrosis": "Fibrosis",
}
EXTRAS: tuple[str, ...] = ("Aortic enlargement", "Calcification", "ILD", "Nodule/Mass", "Other lesion")
NODULE_MASS = "Nodule/Mass"
NO_FINDING_CLASS = "No finding"
IMAGE_DIR = "train"
EXTENSIONS = (".dicom", ".dcm", ".png", ".jpg")


def load(root: Path, extension: str = ".dicom") -> pd.DataFrame:
    """One record per image_id; ``extension`` picks the image files (".dicom" as distributed on Kaggle)."""
    if extension not in EXTENSIONS:
        raise ConfigError(f"vindr extension {extension!r}: expected one of {', '.join(EXTENSIONS)}")
    path = require_file(root, "vindr", "train.csv")
    skipped = Skipped()
    rows = read_rows(path, skipped)
    labels = image_labels(rows)
    ids = pd.Series(labels.index, index=labels.index)
    boxed = rows[rows["class_name"] != NO_FINDING_CLASS]
    boxes = boxes_json(boxed["image_id"], box_table(boxed))
    readers = {key: ",".join(sorted(set(ids))) for key, ids in group_lists(rows["image_id"], rows["rad_id"]).items()}
    frame = pd.DataFrame(
        {
            "image_path": paths_under(root / IMAGE_DIR, ids + extension),
            "patient_id": ids,
            "study_id": ids,
            "split": None,
            "boxes": ids.map(boxes).fillna("[]"),
            "readers": ids.map(readers),
        }
    )
    return skipped.attach(pd.concat([frame, labels], axis=1).reset_index(drop=True), "vindr")


def read_rows(path: Path, skipped: Skipped) -> pd.DataFrame:
    """Annotation rows; an unknown class, or a finding without a valid box, is skipped and listed."""
    table = read_csv(path, dtype={"image_id": str, "class_name": str, "rad_id": str})
    require_columns(table, path, ("image_id", "class_name", "rad_id", "x_min", "y_min", "x_max", "y_max"))
    coords = table[["x_min", "y_min", "x_max", "y_max"]].apply(pd.to_numeric, errors="coerce")
    known = table["class_name"].isin([*CANONICAL, *EXTRAS, NO_FINDING_CLASS])
    finding = table["class_name"] != NO_FINDING_CLASS
    no_box = coords.isna().any(axis=1) | (coords["x_max"] <= coords["x_min"]) | (coords["y_max"] <= coords["y_min"])
    bad = table["image_id"].isna() | ~known | (finding & no_box)
    skipped.add_rows(path, csv_lines(table.index[bad]), "unknown class_name, or a finding without a valid box")
    return pd.concat([table[["image_id", "class_name", "rad_id"]], coords], axis=1)[~bad]


def image_labels(rows: pd.DataFrame) -> pd.DataFrame:
    """Per image: 1/0 per class (marked by at least one reader), mapped names, Nodule/Mass rule, No Finding."""
    marked = pd.get_dummies(rows["class_name"]).groupby(rows["image_id"].to_numpy(), sort=False).any()
    marked = marked.astype("float32")
    marked = marked.reindex(columns=[*CANONICAL, *EXTRAS], fill_value=0.0).rename(columns=CANONICAL)
    unknown_which = np.where(marked[NODULE_MASS] == 1, np.nan, 0.0).astype("float32")
    marked["Nodule"] = unknown_which
    marked["Mass"] = unknown_which
    findings = [*CANONICAL.values(), *EXTRAS]
    marked["No Finding"] = no_finding(marked, findings)
    return marked


def box_table(rows: pd.DataFrame) -> pd.DataFrame:
    """``label, x, y, w, h, rad_id`` per finding row (label in the canonical vocabulary where there is one)."""
    return pd.DataFrame(
        {
            "label": rows["class_name"].map(lambda name: CANONICAL.get(name, name)),
            "x": rows["x_min"],
            "y": rows["y_min"],
            "w": rows["x_max"] - rows["x_min"],
            "h": rows["y_max"] - rows["y_min"],
            "rad_id": rows["rad_id"],
        }
    )
