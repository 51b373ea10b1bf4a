"""COVIDx reader on small list files in the official format (binary and 3-class releases, malformed lines)."""

from __future__ import annotations

import gzip
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from cxrl.cli import main as cli_main
from cxrl.data.cache import open_cache
from cxrl.data.records import load_records
from cxrl.data.splits import OFFICIAL_LEAKAGE, check_no_leakage
from cxrl.errors import ConfigError, LeakageError


@pytest.fixture
def root(tmp_path: Path) -> Path:
    (tmp_path / "train.txt").write_text(
        "5 ARDSSevere.png negative cohen\n"
        "ANON56 CR.1.2.840.113654.2.png positive actmed\n"
        "313b 313b-a.png COVID-19 sirm\n"
        "313b 313b-b.png pneumonia sirm\n"
        "5 normal-5.png normal rsna\n"
        "\n"
        "7 two-fields.png\n"
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
    rec = load_records("covidx", root)
    skipped = rec.attrs["skipped"]
    train = root / "train.txt"
    assert len(skipped) == 3
    assert skipped[0] == f"{train}:7: expected <patient> <file> <label> [<source>], got 2 field(s)"
    assert skipped[1] == f"{train}:8: label 'fields' is not one of positive, negative, covid-19, pneumonia, normal"
    assert skipped[2].startswith(f"{train}:9: label 'maybe'")


def test_gzipped_list_files(tmp_path):
    with gzip.open(tmp_path / "train.txt.gz", "wt") as f:
        f.write("5 a.png negative cohen\n6 b.png positive cohen\n")
    assert load_records("covidx", tmp_path)["covid"].tolist() == [0, 1]


# One line of every shape each COVID-Net release (labels/{train,test}_COVIDx<v>.txt) has, written as in the real
# lists: v1-v2 have no source; v3-v5 tests list RSNA without source; v7A-v8B's sirm patient ids hold a space;
# v9 spells one source "rnsa". Counted on the real lists: see the module docstring of cxrl.data.sources.covidx.
SHAPES = {
    "cohen3": "3 SARS-10.1148rg.242035193-g04mr34g0-Fig8a-day0.jpeg pneumonia",
    "cohen4": "3 SARS-10.1148rg.242035193-g04mr34g0-Fig8b-day5.jpeg pneumonia cohen",
    "cohenB": "5 ARDSSevere.png negative cohen",
    "rsna3": "47c78742-4998-4878-aec4-37b11b1354ac 47c78742-4998-4878-aec4-37b11b1354ac.png normal",
    "sirmA": "COVID 1 COVID(1).png COVID-19 sirm",
    "sirmB": "COVID 1 COVID(1).png positive sirm",
    "sirmAt": "COVID 70 COVID(70).png COVID-19 sirm",
    "sirmBt": "COVID 70 COVID(70).png positive sirm",
    "rsna4": "47c78742-4998-4878-aec4-37b11b1354ac 47c78742-4998-4878-aec4-37b11b1354ac.png normal rsna",
    "rnsaA": "fe267737-99e1-42b0-ac7f-ffb6f235037a fe267737-99e1-42b0-ac7f-ffb6f235037a.png normal rnsa",
    "rnsa": "fe267737-99e1-42b0-ac7f-ffb6f235037a fe267737-99e1-42b0-ac7f-ffb6f235037a.png negative rnsa",
    "fig1": "COVID-00003b COVID-00003b.jpg COVID-19 fig1",
    "actmed": "ANON56 CR.1.2.840.113654.2.png positive actmed",
}
VERSIONS = {  # version: (train shapes, test shapes)
    "1": (["cohen3"], ["rsna3"]),
    "2": (["cohen3"], ["rsna3"]),
    "3": (["cohen4"], ["rsna3", "fig1"]),
    "4": (["cohen4"], ["rsna3", "fig1"]),
    "5": (["cohen4"], ["rsna3", "fig1"]),
    "6": (["cohenB"], ["actmed"]),
    "7A": (["cohen4", "sirmA"], ["rsna3", "sirmAt"]),
    "7B": (["cohenB", "sirmB"], ["sirmBt"]),
    "8A": (["cohen4", "sirmA"], ["fig1"]),
    "8B": (["cohenB", "sirmB"], ["actmed"]),
    "9A": (["cohen4", "rnsaA"], ["rsna4"]),
    "9B": (["cohenB", "rnsa"], ["actmed"]),
}


def repo_lists(root: Path, version: str) -> Path:
    """``labels/train_COVIDx<v>.txt`` and ``test_...`` as the COVID-Net repository names them (v1: no number)."""
    (root / "labels").mkdir(exist_ok=True)
    number = "" if version == "1" else version
    for split, shapes in zip(("train", "test"), VERSIONS[version], strict=True):
        (root / "labels" / f"{split}_COVIDx{number}.txt").write_text("".join(SHAPES[s] + "\n" for s in shapes))
    return root


@pytest.mark.parametrize("version", VERSIONS)
def test_every_repository_version_is_read_whole(tmp_path, version):
    rec = load_records("covidx", repo_lists(tmp_path, version))
    train, test = VERSIONS[version]
    assert rec.attrs["skipped"] == []
    assert rec["split"].tolist() == ["train"] * len(train) + ["test"] * len(test)
    assert rec["image_path"].iloc[0].startswith(f"{tmp_path.as_posix()}/train/")
    assert rec["image_path"].iloc[-1].startswith(f"{tmp_path.as_posix()}/test/")
    shapes = dict(zip(train + test, rec.to_dict("records"), strict=False))
    if "sirmA" in shapes or "sirmB" in shapes:
        sirm = shapes.get("sirmA") or shapes["sirmB"]
        assert (sirm["patient_id"], sirm["study_id"], sirm["covid"]) == ("sirm/COVID 1", "COVID(1).png", 1)
    if "rsna3" in shapes:
        assert shapes["rsna3"]["patient_id"] == "47c78742-4998-4878-aec4-37b11b1354ac"
        assert shapes["rsna3"]["source"] is None or np.isnan(shapes["rsna3"]["source"])
    for rnsa in ("rnsa", "rnsaA"):
        if rnsa in shapes:
            assert shapes[rnsa]["patient_id"] == "rsna/fe267737-99e1-42b0-ac7f-ffb6f235037a"


def test_a_version_is_chosen_when_several_are_present(tmp_path):
    repo_lists(repo_lists(tmp_path, "8A"), "8B")
    with pytest.raises(ConfigError, match="versions 8A, 8B; choose one with version="):
        load_records("covidx", tmp_path)
    assert load_records("covidx", tmp_path, version="8B")["label_raw"].tolist() == ["negative", "positive", "positive"]
    with pytest.raises(ConfigError, match="covidx version '9B'"):
        load_records("covidx", tmp_path, version="9B")


def v6_leak(root: Path) -> Path:
    """The real v6/v7B leak: actmed/ANON191 in both lists."""
    root.mkdir(exist_ok=True)
    (root / "train.txt").write_text("ANON191 CR.1.2.840.1.png negative actmed\n5 ARDSSevere.png negative cohen\n")
    (root / "test.txt").write_text(
        "ANON191 CR.1.2.840.2.png positive actmed\nANON56 CR.1.2.840.3.png positive actmed\n"
    )
    for split, name in (("train", "CR.1.2.840.1.png"), ("train", "ARDSSevere.png"), ("test", "CR.1.2.840.2.png"),
                        ("test", "CR.1.2.840.3.png")):  # fmt: skip
        (root / split).mkdir(exist_ok=True)
        Image.fromarray(np.full((20, 16), 99, np.uint8)).save(root / split / name)
    return root


def test_official_leakage_is_dropped_from_train_by_default_with_a_warning(tmp_path, caplog):
    root = v6_leak(tmp_path)
    with caplog.at_level(logging.WARNING):
        rec = load_records("covidx", root)
    assert rec["study_id"].tolist() == ["ARDSSevere.png", "CR.1.2.840.2.png", "CR.1.2.840.3.png"]
    assert rec.attrs["skipped"] == [
        f"{root.as_posix()}/train.txt: patient actmed/ANON191 is also in test in the official lists; "
        "its 1 train row(s) dropped (leakage=drop)"
    ]
    assert "actmed/ANON191 in test, train" in caplog.text and "dropped" in caplog.text


def test_prepare_accepts_official_leakage_by_choice_but_not_its_own(tmp_path, capsys):
    root = v6_leak(tmp_path / "root")
    args = ["prepare", "covidx", "--root", str(root), "--size", "16", "--workers", "0"]
    assert cli_main([*args, "--out", str(tmp_path / "drop")]) == 0
    assert open_cache(tmp_path / "drop").manifest["counts"]["images"] == 3
    assert cli_main([*args, "--out", str(tmp_path / "keep"), "--reader-option", "leakage=keep"]) == 0
    kept = open_cache(tmp_path / "keep")
    assert kept.manifest["counts"]["images"] == 4
    assert kept.records.attrs[OFFICIAL_LEAKAGE] == ["actmed/ANON191"]
    check_no_leakage(kept.records)  # the evaluators' check lets the chosen leak through
    cohen = kept.records[kept.records["patient_id"] == "cohen/5"]
    records = pd.concat([kept.records, cohen.assign(split="test")])  # a leak nobody chose
    assert records.attrs[OFFICIAL_LEAKAGE] == ["actmed/ANON191"]
    with pytest.raises(LeakageError, match="cohen/5 in test, train"):
        check_no_leakage(records)
