"""Object-CXR reader on small train/dev CSVs in both header variants, with every object type and bad rows."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cxrl.data.records import load_records
from cxrl.data.sources.object_cxr import parse_annotation
from cxrl.errors import DataError


@pytest.fixture
def root(tmp_path: Path) -> Path:
    (tmp_path / "train.csv").write_text(
        "image_name,annotation\n"
        "00001.jpg,0 100 200 300 450\n"
        '00002.jpg,"1 10 20 30 40;2 5 5 25 5 15 35"\n'
        "00003.jpg,\n"
        "00004.jpg,3 1 2 3 4\n"
        "00005.jpg,2 1 1 2 2\n"
    )
    (tmp_path / "dev.csv").write_text("image_path,annotation\ndev/08001.jpg,0 1 2 3 4\n")
    return tmp_path


def test_records_boxes_and_splits(root):
    rec = load_records("object-cxr", root)
    assert rec["patient_id"].tolist() == ["00001", "00002", "00003", "08001"]
    assert rec["split"].tolist() == ["train", "train", "train", "valid"]
    assert rec["foreign_object"].tolist() == [1, 1, 0, 1]
    assert rec["image_path"].tolist()[0] == f"{root.as_posix()}/train/00001.jpg"
    assert rec["image_path"].tolist()[3] == f"{root.as_posix()}/dev/08001.jpg"
    first = json.loads(rec["boxes"].iloc[0])
    assert first == [{"label": "Foreign Object", "x": 100, "y": 200, "w": 200, "h": 250, "shape": "rectangle"}]
    ellipse, polygon = json.loads(rec["boxes"].iloc[1])
    assert ellipse["shape"] == "ellipse" and (ellipse["w"], ellipse["h"]) == (20, 20)
    assert (polygon["x"], polygon["y"], polygon["w"], polygon["h"]) == (5, 5, 20, 30)
    assert polygon["points"] == [[5, 5], [25, 5], [15, 35]]
    assert rec["boxes"].iloc[2] == "[]"


def test_malformed_annotations_are_skipped_and_listed(root):
    skipped = load_records("object-cxr", root).attrs["skipped"]
    train = root / "train.csv"
    assert len(skipped) == 2
    assert skipped[0].startswith(f"{train}:5: annotation '3 1 2 3 4': object type '3'")
    assert skipped[1].startswith(f"{train}:6: annotation '2 1 1 2 2': a polygon needs 3 or more")


@pytest.mark.parametrize(
    "text",
    ["0 1 2 3", "x 1 2 3 4", "0 1 2 3 a", "1 1 2 3 4 5", "0 nan 1 2 3"],
    ids=["short", "type", "letter", "long", "nan"],
)
def test_parse_annotation_rejects(text):
    with pytest.raises(ValueError):
        parse_annotation(text)


def test_missing_columns(tmp_path):
    (tmp_path / "train.csv").write_text("name,boxes\na.jpg,\n")
    with pytest.raises(DataError, match="image_name"):
        load_records("object-cxr", tmp_path)
