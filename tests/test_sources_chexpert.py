"""CheXpert reader: the real train.csv (223,414 rows) and small hand-written valid/test files with traps."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cxrl.data.labels import CHEXPERT_PATHOLOGIES
from cxrl.data.records import load_records
from cxrl.data.sources.chexpert import FINDINGS, no_finding
from cxrl.errors import ConfigError, DataError

HEADER = "Path,Sex,Age,Frontal/Lateral,AP/PA," + ",".join(CHEXPERT_PATHOLOGIES)
BLANK_LABELS = "," * (len(CHEXPERT_PATHOLOGIES) - 1)


def labels(**values: float) -> str:
    """A label row in CheXpert column order, blank except ``values`` (keys with spaces as underscores)."""
    given = {k.replace("_", " "): v for k, v in values.items()}
    return ",".join("" if p not in given else f"{given[p]:.1f}" for p in CHEXPERT_PATHOLOGIES)


@pytest.fixture(scope="module")
def real_train(txv_data, tmp_path_factory):
    """The real CheXpert train.csv laid out under its official name, and the records read from it."""
    root = tmp_path_factory.mktemp("chexpert_real")
    (root / "train.csv.gz").symlink_to(txv_data / "chexpert_train.csv.gz")
    return pd.read_csv(root / "train.csv.gz"), load_records("chexpert", root), root


@pytest.fixture
def small_root(tmp_path: Path) -> Path:
    """Full-size prefix, LL/RL/blank AP/PA, Age 0, Sex Unknown, a malformed path and two bad label values."""
    train = [
        HEADER,
        f"CheXpert-v1.0/train/patient00001/study1/view1_frontal.jpg,Female,68,Frontal,AP,{labels(Edema=-1)}",
        f"CheXpert-v1.0/train/patient00001/study1/view2_lateral.jpg,Female,68,Lateral,,{labels(Edema=-1)}",
        f"CheXpert-v1.0/train/patient00002/study1/view1_frontal.jpg,Male,0,Frontal,LL,{labels(Cardiomegaly=1)}",
        f"CheXpert-v1.0/train/patient00003/study2/view1_frontal.jpg,Unknown,50,Frontal,RL,{BLANK_LABELS}",
        f"CheXpert-v1.0/train/patient00004/study1/view1_frontal.jpg,Male,40,Frontal,,{BLANK_LABELS}",
        f"CheXpert-v1.0/train/broken/view1_frontal.jpg,Male,40,Frontal,PA,{BLANK_LABELS}",
        f"CheXpert-v1.0/train/patient00005/study1/view1_frontal.jpg,Male,40,Frontal,PA,{labels(Edema=2)}",
        f"CheXpert-v1.0/train/patient00006/study1/view1_frontal.jpg,Male,40,Frontal,PA,abc{BLANK_LABELS}",
    ]
    valid = [
        HEADER,
        f"CheXpert-v1.0-small/valid/patient64541/study1/view1_frontal.jpg,Male,73,Frontal,PA,{labels(No_Finding=1)}",
    ]
    test = [
        "Path," + ",".join(CHEXPERT_PATHOLOGIES),
        f"test/patient64741/study1/view1_frontal.jpg,{labels(Edema=1, Support_Devices=1)}",
        f"test/patient64741/study1/view2_lateral.jpg,{labels(Edema=1, Support_Devices=1)}",
    ]
    for name, lines in (("train.csv", train), ("valid.csv", valid), ("test_labels.csv", test)):
        (tmp_path / name).write_text("\n".join(lines) + "\n")
    return tmp_path


@pytest.mark.slow
def test_real_train_counts_match_file_and_published_figures(real_train):
    raw, rec, _ = real_train
    assert len(rec) == len(raw) == 223_414
    assert rec["patient_id"].nunique() == raw["Path"].str.extract(r"(patient\d+)")[0].nunique() == 64_540
    assert rec["study_id"].nunique() == 187_641
    assert rec["patient_id"].str.fullmatch(r"patient\d{5}").all()
    assert (rec["split"] == "train").all()
    assert rec.attrs["skipped"] == []


@pytest.mark.slow
def test_real_train_labels_are_kept_as_given(real_train):
    raw, rec, _ = real_train
    for name in CHEXPERT_PATHOLOGIES:
        np.testing.assert_array_equal(rec[name].to_numpy(), raw[name].to_numpy(dtype=np.float32), err_msg=name)
    assert int((rec["Pleural Effusion"] == -1).sum()) == 11_628


@pytest.mark.slow
def test_real_train_views_sex_age(real_train):
    raw, rec, _ = real_train
    counts = rec["view"].value_counts()
    assert counts["LATERAL"] == (raw["Frontal/Lateral"] == "Lateral").sum() == 32_387
    assert counts["AP"] == (raw["AP/PA"] == "AP").sum()
    assert counts["PA"] == (raw["AP/PA"] == "PA").sum()
    assert counts["LL"] == 16 and counts["OTHER"] == 1  # the frontal rows coded LL and RL
    assert (rec["sex"] == "M").sum() == (raw["Sex"] == "Male").sum() == 132_636
    assert (rec["sex"] == "F").sum() == (raw["Sex"] == "Female").sum()
    assert rec["sex"].isna().sum() == (raw["Sex"] == "Unknown").sum()
    assert rec["age"].isna().sum() == (raw["Age"] == 0).sum()
    assert rec["age"].max() == 90


@pytest.mark.slow
def test_real_train_no_finding_convention(real_train):
    _, rec, _ = real_train
    no_finding = rec["No Finding"] == 1
    findings = [p for p in CHEXPERT_PATHOLOGIES if p not in ("No Finding", "Support Devices")]
    assert no_finding.sum() == 22_381
    assert not (rec.loc[no_finding, findings] == 1).any(axis=None)
    assert (rec.loc[no_finding, "Support Devices"] == 1).sum() == 8_808


@pytest.mark.slow
def test_real_paths_are_absolute_and_prefix_free(real_train):
    _, rec, root = real_train
    paths = rec["image_path"]
    assert paths.str.startswith(root.as_posix() + "/train/patient").all()
    assert not paths.str.contains("CheXpert-v1.0").any()


def test_small_files_splits_views_and_demographics(small_root):
    rec = load_records("chexpert", small_root)
    by_path = rec.set_index(rec["image_path"].str.replace(small_root.as_posix() + "/", ""))
    assert list(rec["split"].value_counts().sort_index().items()) == [("test", 2), ("train", 5), ("valid", 1)]
    assert by_path.loc["train/patient00001/study1/view2_lateral.jpg", "view"] == "LATERAL"
    assert by_path.loc["train/patient00002/study1/view1_frontal.jpg", "view"] == "LL"
    assert by_path.loc["train/patient00003/study2/view1_frontal.jpg", "view"] == "OTHER"  # RL
    assert by_path.loc["train/patient00004/study1/view1_frontal.jpg", "view"] == "OTHER"  # blank AP/PA
    assert by_path.loc["test/patient64741/study1/view1_frontal.jpg", "view"] == "OTHER"  # no AP/PA column
    assert by_path.loc["test/patient64741/study1/view2_lateral.jpg", "view"] == "LATERAL"  # from the file name
    assert np.isnan(by_path.loc["train/patient00002/study1/view1_frontal.jpg", "age"])  # Age 0
    assert pd.isna(by_path.loc["train/patient00003/study2/view1_frontal.jpg", "sex"])  # Unknown
    assert by_path.loc["train/patient00001/study1/view1_frontal.jpg", "study_id"] == "patient00001/study1"
    assert by_path.loc["valid/patient64541/study1/view1_frontal.jpg", "No Finding"] == 1


def test_malformed_rows_are_skipped_and_listed_with_file_and_line(small_root):
    rec = load_records("chexpert", small_root)
    skipped = rec.attrs["skipped"]
    assert len(skipped) == 3
    train_csv = str(small_root / "train.csv")
    assert skipped[0].startswith(f"{train_csv}:7: Path")
    assert any(s.startswith(f"{train_csv}:8: Edema='2.0'") for s in skipped)
    assert any(s.startswith(f"{train_csv}:9: No Finding='abc") for s in skipped)
    assert not rec["patient_id"].isin(["patient00005", "patient00006"]).any()


def test_uncertainty_policy_and_view_filter(small_root):
    kept = load_records("chexpert", small_root)
    assert (kept["Edema"] == -1).sum() == 2
    zeros = load_records("chexpert", small_root, uncertainty="zeros")
    assert (zeros["Edema"] == -1).sum() == 0 and (zeros["Edema"] == 0).sum() == 2
    ignore = load_records("chexpert", small_root, uncertainty="ignore")
    assert ignore["Edema"].isna().sum() == kept["Edema"].isna().sum() + 2
    assert set(load_records("chexpert", small_root, views=["LATERAL"])["view"]) == {"LATERAL"}
    with pytest.raises(ConfigError, match="views"):
        load_records("chexpert", small_root, views=["Frontal"])
    with pytest.raises(ConfigError, match="policy"):
        load_records("chexpert", small_root, uncertainty="maybe")


def test_missing_files_and_columns_are_clear_errors(tmp_path):
    with pytest.raises(DataError, match="train.csv"):
        load_records("chexpert", tmp_path)
    (tmp_path / "valid.csv").write_text("Path,Sex\nx,Male\n")
    with pytest.raises(DataError, match=r"valid.csv: missing column"):
        load_records("chexpert", tmp_path)


def test_no_finding_rule():
    labels = pd.DataFrame(
        {
            "Edema": [1, 0, -1, np.nan, 0, np.nan],
            "Cardiomegaly": [0, 0, 0, np.nan, 1, np.nan],
            "Support Devices": [0, 0, 0, 0, 0, 1],
        }
    )
    result = no_finding(labels, FINDINGS)
    np.testing.assert_array_equal(result.to_numpy(), [0, 1, np.nan, 1, 0, 1])
    assert result.dtype == np.float32
    assert "Support Devices" not in FINDINGS and "No Finding" not in FINDINGS
