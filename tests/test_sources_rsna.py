"""RSNA Pneumonia reader: the real stage-2 labels (zipped as distributed in torchxrayvision) and small files."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from cxrl.data.records import load_records
from cxrl.errors import ConfigError

HEADER = "patientId,x,y,width,height,Target"


@pytest.fixture(scope="module")
def real(txv_data, tmp_path_factory):
    root = tmp_path_factory.mktemp("rsna_real")
    (root / "stage_2_train_labels.csv.zip").symlink_to(txv_data / "kaggle_stage_2_train_labels.csv.zip")
    return pd.read_csv(root / "stage_2_train_labels.csv.zip"), load_records("rsna", root), root


def test_real_counts_match_file_and_published_figures(real):
    raw, rec, root = real
    assert len(raw) == 30_227
    assert len(rec) == raw["patientId"].nunique() == 26_684
    assert rec["patient_id"].is_unique
    positive = raw.groupby("patientId")["Target"].max()
    assert (rec["Pneumonia"] == 1).sum() == (positive == 1).sum() == 6_012
    assert (rec["Lung Opacity"] == rec["Pneumonia"]).all()
    boxes = rec["boxes"].map(json.loads)
    assert boxes.map(len).sum() == (raw["Target"] == 1).sum() == 9_555
    assert boxes.map(len).max() == 4
    assert ((boxes.map(len) > 0) == (rec["Pneumonia"] == 1)).all()
    assert rec["split"].isna().all() and rec.attrs["skipped"] == []
    assert rec["image_path"].str.fullmatch(rf"{root.as_posix()}/stage_2_train_images/[0-9a-f-]{{36}}\.dcm").all()


def test_real_boxes_keep_source_coordinates(real):
    raw, rec, _ = real
    row = raw[raw["Target"] == 1].iloc[0]
    boxes = json.loads(rec.loc[rec["patient_id"] == row["patientId"], "boxes"].iloc[0])
    assert {"label": "Lung Opacity", "x": row["x"], "y": row["y"], "w": row["width"], "h": row["height"]} in boxes


@pytest.fixture
def small_root(tmp_path: Path) -> Path:
    lines = [HEADER, "p1,,,,,0", "p2,10,20,30,40,1", "p2,50,60,70,80,1", "p3,,,,,0", "p4,,,,,1", "p5,,,,,7"]
    (tmp_path / "stage_2_train_labels.csv").write_text("\n".join(lines) + "\n")
    classes = ["patientId,class", "p1,Normal", "p2,Lung Opacity", "p2,Lung Opacity", "p3,No Lung Opacity / Not Normal"]
    (tmp_path / "stage_2_detailed_class_info.csv").write_text("\n".join(classes) + "\n")
    return tmp_path


def test_class_file_and_no_finding(small_root):
    rec = load_records("rsna", small_root).set_index("patient_id")
    assert rec["class"].to_dict() == {"p1": "Normal", "p2": "Lung Opacity", "p3": "No Lung Opacity / Not Normal"}
    assert rec["No Finding"].tolist() == [1, 0, 0]
    assert json.loads(rec.loc["p2", "boxes"])[1] == {"label": "Lung Opacity", "x": 50, "y": 60, "w": 70, "h": 80}
    assert rec.loc["p1", "boxes"] == "[]"


def test_bad_rows_are_skipped_and_listed(small_root):
    skipped = load_records("rsna", small_root).attrs["skipped"]
    assert [s.split(": ")[0] for s in skipped] == [
        f"{small_root / 'stage_2_train_labels.csv'}:6",  # positive without a box
        f"{small_root / 'stage_2_train_labels.csv'}:7",  # Target 7
    ]


def test_extension_option(small_root):
    rec = load_records("rsna", small_root, extension=".png")
    assert rec["image_path"].str.endswith(".png").all()
    with pytest.raises(ConfigError, match="extension"):
        load_records("rsna", small_root, extension="png")
