"""VinDr-CXR (Kaggle VinBigData) reader on the real train.csv and on a small file."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cxrl.data.records import load_records
from cxrl.data.sources.vindr import CANONICAL, EXTRAS

HEADER = "image_id,class_name,class_id,rad_id,x_min,y_min,x_max,y_max"


@pytest.fixture(scope="module")
def real(txv_data, tmp_path_factory):
    root = tmp_path_factory.mktemp("vindr_real")
    (root / "train.csv.gz").symlink_to(txv_data / "vinbigdata-train.csv.gz")
    return pd.read_csv(root / "train.csv.gz"), load_records("vindr", root), root


@pytest.mark.slow
def test_real_counts_and_labels_match_the_file(real):
    raw, rec, root = real
    assert len(raw) == 67_914
    assert len(rec) == raw["image_id"].nunique() == 15_000
    assert rec["patient_id"].is_unique and rec.attrs["skipped"] == []
    images_with = raw.groupby("class_name")["image_id"].nunique()
    for vindr_name, canonical in CANONICAL.items():
        assert (rec[canonical] == 1).sum() == images_with[vindr_name], vindr_name
    for name in EXTRAS:
        assert (rec[name] == 1).sum() == images_with[name], name
    only_no_finding = raw.groupby("image_id")["class_name"].agg(lambda c: set(c) == {"No finding"})
    assert (rec["No Finding"] == 1).sum() == only_no_finding.sum()
    assert rec["readers"].str.split(",").map(len).eq(3).all()  # every image read by 3 radiologists
    assert rec["image_path"].str.fullmatch(rf"{root.as_posix()}/train/[0-9a-f]{{32}}\.dicom").all()


@pytest.mark.slow
def test_real_boxes_and_nodule_mass_rule(real):
    raw, rec, _ = real
    boxes = rec["boxes"].map(json.loads)
    assert boxes.map(len).sum() == (raw["class_name"] != "No finding").sum() == 36_096
    assert {"rad_id", "label", "x", "y", "w", "h"} == set(boxes[boxes.map(len) > 0].iloc[0][0])
    nodule_mass = rec["Nodule/Mass"] == 1
    assert rec.loc[nodule_mass, ["Nodule", "Mass"]].isna().all(axis=None)
    assert (rec.loc[~nodule_mass, ["Nodule", "Mass"]] == 0).all(axis=None)


def test_small_file(tmp_path: Path):
    lines = [
        HEADER,
        "img1,No finding,14,R1,,,,",
        "img1,No finding,14,R2,,,,",
        "img1,Pleural effusion,10,R3,10,20,110,220",
        "img2,No finding,14,R1,,,,",
        "img2,No finding,14,R4,,,,",
        "img2,No finding,14,R5,,,,",
        "img3,Pulmonary fibrosis,13,R1,1,1,5,5",
        "img3,Nodule/Mass,8,R2,3,3,9,9",
        "img3,Mystery,15,R3,1,1,2,2",
        "img3,Cardiomegaly,3,R3,,,,",
    ]
    (tmp_path / "train.csv").write_text("\n".join(lines) + "\n")
    rec = load_records("vindr", tmp_path, extension=".png").set_index("patient_id")
    assert rec.loc["img1", ["Pleural Effusion", "No Finding", "Cardiomegaly"]].tolist() == [1, 0, 0]
    assert rec.loc["img2", "No Finding"] == 1 and rec.loc["img2", "boxes"] == "[]"
    assert rec.loc["img3", ["Fibrosis", "Nodule/Mass", "No Finding"]].tolist() == [1, 1, 0]
    assert np.isnan(rec.loc["img3", "Nodule"]) and rec.loc["img1", "Nodule"] == 0
    assert json.loads(rec.loc["img1", "boxes"]) == [
        {"label": "Pleural Effusion", "x": 10.0, "y": 20.0, "w": 100.0, "h": 200.0, "rad_id": "R3"}
    ]
    assert rec.loc["img1", "readers"] == "R1,R2,R3"
    assert rec["image_path"].str.endswith(".png").all()
    skipped = rec.attrs["skipped"]
    assert [s.split(": ")[0].rsplit(":", 1)[1] for s in skipped] == ["10", "11"]  # unknown class; finding with no box
