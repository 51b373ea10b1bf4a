"""COVIDx reader on small list files in the official format (binary and 3-class releases, malformed lines)."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from cxrl.data.records import load_records


@pytest.fixture
def root(tmp_path: Path) -> Path:
    (tmp_path / "train.txt").write_text(
        "5 ARDSSevere.png negative cohen\n"
        "ANON56 CR.1.2.840.113654.2.png positive actmed\n"
        "313b 313b-a.png COVID-19 sirm\n"
        "313b 313b-b.png pneumonia sirm\n"
        "5 normal-5.png normal rsna\n"
        "\n"
        "7 three-fields.png negative\n"
        "8 too many fields here\n"
        "9 x.png maybe cohen\n"
    )
    (tmp_path / "test.txt").write_text("1 t1.png positive bimcv\n")
    (tmp_path / "val.txt").write_text("2 v1.png negative ricord\n")
    return tmp_path


def test_records_labels_and_splits(root):
    rec = load_records("covidx", root)
    assert rec["study_id"].tolist() == [
        "ARDSSevere.png",
        "CR.1.2.840.113654.2.png",
        "313b-a.png",
        "313b-b.png",
        "normal-5.png",
        "v1.png",
        "t1.png",
    ]
    assert rec["covid"].tolist() == [0, 1, 1, 0, 0, 0, 1]
    pneumonia = rec["Pneumonia"].to_numpy()
    np.testing.assert_array_equal(pneumonia, [np.nan, np.nan, 1, 1, 0, np.nan, np.nan])
    assert rec["label_raw"].tolist()[:3] == ["negative", "positive", "COVID-19"]
    assert rec["source"].tolist()[:2] == ["cohen", "actmed"]
    assert rec["split"].tolist() == ["train"] * 5 + ["valid", "test"]
    assert rec["image_path"].iloc[0] == f"{root.as_posix()}/train/ARDSSevere.png"
    assert rec["image_path"].iloc[5] == f"{root.as_posix()}/val/v1.png"


def test_patient_ids_are_strings_scoped_by_source(root):
    rec = load_records("covidx", root)
    assert rec["patient_id"].tolist()[:5] == ["cohen/5", "actmed/ANON56", "sirm/313b", "sirm/313b", "rsna/5"]


def test_malformed_lines_are_skipped_with_file_and_line(root):
    skipped = load_records("covidx", root).attrs["skipped"]
    train = root / "train.txt"
    assert len(skipped) == 3
    assert skipped[0] == f"{train}:7: expected 4 fields <patient> <file> <label> <source>, got 3"
    assert skipped[1].startswith(f"{train}:8: expected 4 fields")
    assert skipped[2].startswith(f"{train}:9: label 'maybe'")


def test_gzipped_list_files(tmp_path):
    with gzip.open(tmp_path / "train.txt.gz", "wt") as f:
        f.write("5 a.png negative cohen\n6 b.png positive cohen\n")
    assert load_records("covidx", tmp_path)["covid"].tolist() == [0, 1]
