"""NIH ChestX-ray14 (Wang et al., CVPR 2017): ``Data_Entry_2017_v2020.csv`` (or ``Data_Entry_2017.csv``),
``BBox_List_2017.csv``, ``train_val_list.txt`` / ``test_list.txt``.

``Finding Labels`` holds ``|``-separated tokens. The 14 NIH classes are 1 when their token is present and 0
otherwise (NLP-mined: no uncertain labels); CheXpert-only labels stay NaN. Token names follow the canonical
vocabulary (Effusion -> Pleural Effusion, Pleural_Thickening -> Pleural Thickening); matching is by exact token,
never by substring. ``boxes`` is the JSON list of the image's BBox_List boxes (1024-px space) for the 880 boxed
images and None elsewhere (no box annotation, not "no finding").
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from cxrl.data.sources._common import (
    Skipped,
    boxes_json,
    csv_lines,
    find_file,
    found_or_default,
    index_images,
    paths_under,
    read_csv,
    read_text,
    require_columns,
    require_file,
    token_matrix,
)

DATA_ENTRY = ("Data_Entry_2017_v2020.csv", "Data_Entry_2017.csv")
ENTRY_COLUMNS = (
    "Image Index",
    "Finding Labels",
    "Follow-up #",
    "Patient ID",
    "Patient Age",
    "Patient Gender",
    "View Position",
)
BBOX = "BBox_List_2017.csv"
SPLIT_LISTS = {"train": "train_val_list.txt", "test": "test_list.txt"}
TOKENS: dict[str, str] = {
    "Atelectasis": "Atelectasis",
    "Cardiomegaly": "Cardiomegaly",
    "Consolidation": "Consolidation",
    "Edema": "Edema",
    "Effusion": "Pleural Effusion",
    "Emphysema": "Emphysema",
    "Fibrosis": "Fibrosis",
    "Hernia": "Hernia",
    "Infiltration": "Infiltration",
    "Mass": "Mass",
    "Nodule": "Nodule",
    "Pleural_Thickening": "Pleural Thickening",
    "Pneumonia": "Pneumonia",
    "Pneumothorax": "Pneumothorax",
}
NO_FINDING = "No Finding"
BOX_LABELS = {**TOKENS, "Infiltrate": "Infiltration"}
MAX_AGE = 100  # the 2017 CSV has a few impossible ages (e.g. 414); v2020 tops out at 95


def load(root: Path) -> pd.DataFrame:
    """One record per image of the Data_Entry CSV; rows with a malformed label string are skipped and listed."""
    path = require_file(root, "nih", *DATA_ENTRY)
    skipped = Skipped()
    table = read_entries(path, skipped)
    labels = finding_labels(table, path, skipped)
    table = table.loc[labels.index]
    names = table["Image Index"]
    age = pd.to_numeric(table["Patient Age"], errors="coerce")
    frame = pd.DataFrame(
        {
            "image_path": image_paths(root, names),
            "patient_id": table["Patient ID"],
            "study_id": names.str.slice(stop=-len(".png")),
            "view": table["View Position"].map({"PA": "PA", "AP": "AP"}).fillna("OTHER"),
            "sex": table["Patient Gender"].where(table["Patient Gender"].isin(["M", "F"])),
            "age": age.where(age <= MAX_AGE),
            "split": official_split(root, names),
            "follow_up": pd.to_numeric(table["Follow-up #"], errors="coerce"),
            "boxes": names.map(read_boxes(root, skipped)),
        }
    )
    return skipped.attach(pd.concat([frame, labels], axis=1).reset_index(drop=True), "nih")


def read_entries(path: Path, skipped: Skipped) -> pd.DataFrame:
    """The seven named columns of Data_Entry (the bracketed size/spacing headers are split by commas, and the
    2017 file has a trailing empty field, so columns are taken by position); rows without ids are skipped."""
    text_columns = ("Image Index", "Finding Labels", "Patient ID", "Patient Gender", "View Position")
    table = read_csv(path, usecols=range(len(ENTRY_COLUMNS)), index_col=False, dtype=dict.fromkeys(text_columns, str))
    require_columns(table, path, ENTRY_COLUMNS)
    for name in text_columns:
        table[name] = table[name].str.strip()
    table["Patient ID"] = table["Patient ID"].str.zfill(8)
    bad = ~(table["Image Index"].str.fullmatch(r"[\w.-]+\.png") & table["Patient ID"].str.fullmatch(r"\d+"))
    bad = bad.fillna(True).astype(bool)
    skipped.add_rows(path, csv_lines(table.index[bad]), "Image Index or Patient ID missing or malformed")
    return table[~bad]


def finding_labels(table: pd.DataFrame, path: Path, skipped: Skipped) -> pd.DataFrame:
    """0/1 columns for the 14 NIH classes and No Finding, from exact ``|``-separated tokens."""
    vocabulary = [*TOKENS, NO_FINDING]
    matrix, unknown = token_matrix(table["Finding Labels"], vocabulary)
    reasons = [
        f"Finding Labels {v!r} is empty or has a token outside the 14 classes + No Finding"
        for v in table["Finding Labels"][unknown].fillna("")
    ]
    skipped.add_rows(path, csv_lines(table.index[unknown]), reasons)
    names = [*TOKENS.values(), NO_FINDING]
    return pd.DataFrame(matrix[~unknown], index=table.index[~unknown], columns=names)


def official_split(root: Path, names: pd.Series) -> pd.Series:
    """train for ``train_val_list.txt``, test for ``test_list.txt``; None when the lists are absent or silent."""
    split = pd.Series(None, index=names.index, dtype=object)
    for name, file in SPLIT_LISTS.items():
        path = find_file(root, file)
        if path is not None:
            listed = set(read_text(path).split())
            split[names.isin(listed)] = name
    return split


def read_boxes(root: Path, skipped: Skipped) -> pd.Series:
    """Image name -> JSON list of ``{label, x, y, w, h}`` from BBox_List_2017 (empty when the file is absent)."""
    path = find_file(root, BBOX)
    if path is None:
        return pd.Series(dtype=object)
    table = read_csv(path, usecols=range(6), index_col=False)
    table.columns = ["image", "label", "x", "y", "w", "h"]
    coords = table[["x", "y", "w", "h"]].apply(pd.to_numeric, errors="coerce")
    label = table["label"].str.strip().map(BOX_LABELS)
    bad = label.isna() | coords.isna().any(axis=1) | (coords[["w", "h"]] <= 0).any(axis=1)
    skipped.add_rows(path, csv_lines(table.index[bad]), "unknown finding label or missing/non-positive box size")
    boxes = pd.concat([label.rename("label"), coords], axis=1)[~bad]
    return boxes_json(table["image"][~bad].str.strip(), boxes)


def image_paths(root: Path, names: pd.Series) -> pd.Series:
    """Where each image is: found in ``root``, or under ``images_*/images/`` or ``images/`` when those folders
    exist, else ``root/images/<name>`` (records never need the images)."""
    found = {p.name: p for p in root.glob("*.png")}
    found.update(index_images([root / "images", *sorted(root.glob("images_*"))], (".png",)))
    return found_or_default(names, found, paths_under(root / "images", names))
