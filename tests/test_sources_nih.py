"""NIH ChestX-ray14 reader: the real Data_Entry_2017_v2020 and BBox_List_2017 files, and small 2017-style files."""

from __future__ import annotations

import csv
import gzip
import json
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest

from cxrl.data.records import load_records
from cxrl.data.sources.nih import TOKENS

HEADER_2017 = (
    "Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position,"
    "OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y],"
)


@pytest.fixture(scope="module")
def real(txv_data, tmp_path_factory):
    root = tmp_path_factory.mktemp("nih_real")
    for name in ("Data_Entry_2017_v2020.csv.gz", "BBox_List_2017.csv.gz"):
        (root / name).symlink_to(txv_data / name)
    with gzip.open(root / "Data_Entry_2017_v2020.csv.gz", "rt") as f:
        rows = list(csv.reader(f))[1:]
    return rows, load_records("nih", root), root


@pytest.mark.slow
def test_real_counts_match_file_and_published_figures(real):
    rows, rec, root = real
    assert len(rec) == len(rows) == 112_120
    assert rec["patient_id"].nunique() == len({r[3] for r in rows}) == 30_805
    assert rec.attrs["skipped"] == []
    tokens = Counter(t for r in rows for t in r[1].split("|"))
    for token, name in TOKENS.items():
        assert (rec[name] == 1).sum() == tokens[token], token
        assert rec[name].isin([0, 1]).all()
    assert (rec["No Finding"] == 1).sum() == tokens["No Finding"] == 60_361
    assert (rec["Pleural Effusion"] == 1).sum() == 13_317 and (rec["Hernia"] == 1).sum() == 227
    assert rec[["Fracture", "Lung Opacity", "Support Devices"]].isna().all(axis=None)  # CheXpert-only: unknown
    assert rec["view"].value_counts().to_dict() == {"PA": 67_310, "AP": 44_810}
    assert (rec["sex"] == "M").sum() == 63_340 and rec["age"].max() <= 100
    assert rec["image_path"].str.startswith(f"{root.as_posix()}/images/000").all()
    assert rec["split"].isna().all()  # no official lists in this root


@pytest.mark.slow
def test_real_boxes(real):
    _, rec, _ = real
    boxes = rec["boxes"].dropna().map(json.loads)
    assert len(boxes) == 880 and boxes.map(len).sum() == 984
    labels = Counter(b["label"] for image in boxes for b in image)
    assert labels["Infiltration"] == 123 and labels["Pleural Effusion"] == 153 and labels["Atelectasis"] == 180
    assert "Infiltrate" not in labels and "Effusion" not in labels
    first = rec.loc[rec["image_path"].str.endswith("00013118_008.png"), "boxes"].iloc[0]
    assert json.loads(first)[0] == {"label": "Atelectasis", "x": 225.08, "y": 547.02, "w": 86.78, "h": 79.19}


@pytest.fixture
def small_root(tmp_path: Path) -> Path:
    """A 2017-style Data_Entry (trailing empty column, an impossible age), split lists, two image folders."""
    lines = [
        HEADER_2017,
        "00000001_000.png,Cardiomegaly|Effusion,0,1,57,M,PA,2682,2749,0.143,0.143,",
        "00000001_001.png,No Finding,1,1,414,M,PA,2682,2749,0.143,0.143,",
        "00000002_000.png,Pleural_Thickening | Mass,0,2,30,F,AP,2500,2048,0.168,0.168,",
        "00000003_000.png,Massive,0,3,30,F,AP,2500,2048,0.168,0.168,",
        "00000004_000.png,,0,4,30,F,AP,2500,2048,0.168,0.168,",
    ]
    (tmp_path / "Data_Entry_2017.csv").write_text("\n".join(lines) + "\n")
    (tmp_path / "train_val_list.txt").write_text("00000001_000.png\n00000001_001.png\n")
    (tmp_path / "test_list.txt").write_text("00000002_000.png\n")
    for folder, name in (("images_001/images", "00000001_000.png"), ("images_002/images", "00000002_000.png")):
        (tmp_path / folder).mkdir(parents=True)
        (tmp_path / folder / name).write_bytes(b"")
    return tmp_path


def test_small_2017_file(small_root):
    rec = load_records("nih", small_root).set_index("study_id")
    assert list(rec.index) == ["00000001_000", "00000001_001", "00000002_000"]
    assert rec.loc["00000001_000", ["Cardiomegaly", "Pleural Effusion", "No Finding", "Mass"]].tolist() == [1, 1, 0, 0]
    assert rec.loc["00000002_000", ["Pleural Thickening", "Mass", "Nodule"]].tolist() == [1, 1, 0]
    assert rec.loc["00000001_001", "No Finding"] == 1
    assert pd.isna(rec.loc["00000001_001", "age"]) and rec.loc["00000001_000", "age"] == 57
    assert rec["patient_id"].tolist() == ["00000001", "00000001", "00000002"]
    assert rec["split"].tolist() == ["train", "train", "test"]
    assert rec["follow_up"].tolist() == [0, 1, 0]


def test_image_paths_found_by_walking_else_default(small_root):
    paths = load_records("nih", small_root)["image_path"].tolist()
    assert paths == [
        f"{small_root.as_posix()}/images_001/images/00000001_000.png",
        f"{small_root.as_posix()}/images/00000001_001.png",  # not on disk: the default place
        f"{small_root.as_posix()}/images_002/images/00000002_000.png",
    ]


def test_unknown_or_empty_tokens_are_skipped_not_substring_matched(small_root):
    rec = load_records("nih", small_root)
    skipped = rec.attrs["skipped"]
    assert len(skipped) == 2
    assert skipped[0].startswith(f"{small_root / 'Data_Entry_2017.csv'}:5: Finding Labels 'Massive'")
    assert skipped[1].startswith(f"{small_root / 'Data_Entry_2017.csv'}:6: Finding Labels ''")
