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
        '00006.jpg,"0 10 10 50 60;2 7 7 9 9;1 1 1 5 5"\n'
    )
    (tmp_path / "dev.csv").write_text("image_path,annotation\ndev/08001.jpg,0 1 2 3 4\n")
    return tmp_path


def test_records_boxes_and_splits(root):
    rec = load_records("object-cxr", root)
    assert rec["patient_id"].tolist() == ["00001", "00002", "00003", "00005", "00006", "08001"]
    assert rec["split"].tolist() == ["train"] * 5 + ["valid"]
    assert rec["foreign_object"].tolist() == [1, 1, 0, 1, 1, 1]
    assert rec["image_path"].tolist()[0] == f"{root.as_posix()}/train/00001.jpg"
    assert rec["image_path"].tolist()[5] == f"{root.as_posix()}/dev/08001.jpg"
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
    assert len(skipped) == 3
    assert skipped[0].startswith(f"{train}:5: annotation '3 1 2 3 4': object type '3'")
    assert skipped[1] == f"{train}:6: object '2 1 1 2 2' left out: a polygon needs 3 or more x y points"
    assert skipped[2] == f"{train}:7: object '2 7 7 9 9' left out: a polygon needs 3 or more x y points"


def test_a_flat_polygon_loses_only_itself(root):
    rec = load_records("object-cxr", root).set_index("patient_id")
    assert rec.loc["00005", "foreign_object"] == 1 and rec.loc["00005", "boxes"] == "[]"
    shapes = [box["shape"] for box in json.loads(rec.loc["00006", "boxes"])]
    assert shapes == ["rectangle", "ellipse"]


def test_the_labelled_test_split_of_the_kaggle_copy(root):
    (root / "test.csv").write_text('image_path,annotation\ntest/09001.jpg,"0 1 2 3 4"\ntest/09002.jpg,\n')
    rec = load_records("object-cxr", root)
    test = rec[rec["split"] == "test"]
    assert test["image_path"].tolist() == [f"{root.as_posix()}/test/09001.jpg", f"{root.as_posix()}/test/09002.jpg"]
    assert test["foreign_object"].tolist() == [1, 0]


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
