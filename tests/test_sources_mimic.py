"""MIMIC-CXR-JPG reader on a small layout written here with the official file names and column orders."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cxrl.data.labels import CHEXPERT_PATHOLOGIES
from cxrl.data.records import load_records
from cxrl.data.sources.report_sections import findings_and_impression, report_sections
from cxrl.errors import ConfigError, DataError

LABEL_ORDER = sorted(CHEXPERT_PATHOLOGIES)  # MIMIC's label files are alphabetical
REPORT = """                                 FINAL REPORT
 EXAMINATION:  CHEST (PA AND LAT)

 INDICATION:  ___ year old woman with cough.

 COMPARISON:  ___

 FINDINGS:

 Mild cardiomegaly.  Small left pleural effusion.
 No pneumothorax.

 IMPRESSION:

 Small left effusion.
"""
IMAGES = [  # dicom_id, subject_id, study_id, ViewPosition, split
    ("aaaaaaaa-00000001-00000002-00000003-00000004", "10000032", "50414267", "PA", "train"),
    ("aaaaaaaa-00000001-00000002-00000003-00000005", "10000032", "50414267", "LATERAL", "train"),
    ("bbbbbbbb-00000001-00000002-00000003-00000004", "10000032", "53189527", "AP", "train"),
    ("cccccccc-00000001-00000002-00000003-00000004", "11000011", "56699142", None, "validate"),
    ("dddddddd-00000001-00000002-00000003-00000004", "19999987", "58971208", "AP AXIAL", "test"),
    ("eeeeeeee-00000001-00000002-00000003-00000004", "19999987", "59999999", "LL", "test"),
]


def label_row(subject: str, study: str, **values: float) -> dict:
    row = {"subject_id": subject, "study_id": study}
    row.update({p: values.get(p.replace(" ", "_"), np.nan) for p in LABEL_ORDER})
    return row


def write_layout(root: Path) -> Path:
    """Metadata/split gzipped, label files plain (both are distributed), two reports, one empty, others missing."""
    meta = pd.DataFrame(IMAGES, columns=["dicom_id", "subject_id", "study_id", "ViewPosition", "split"])
    metadata = meta.drop(columns="split").assign(Rows=3056, Columns=2544)
    metadata.to_csv(root / "mimic-cxr-2.0.0-metadata.csv.gz", index=False)
    meta[["dicom_id", "study_id", "subject_id", "split"]].to_csv(root / "mimic-cxr-2.0.0-split.csv.gz", index=False)
    chexpert = [
        label_row("10000032", "50414267", Cardiomegaly=1, Pleural_Effusion=1, Edema=-1, Pneumothorax=0),
        label_row("10000032", "53189527", No_Finding=1),
        label_row("19999987", "58971208", Edema=1),
    ]  # study 56699142 and 59999999 have no label row
    pd.DataFrame(chexpert).to_csv(root / "mimic-cxr-2.0.0-chexpert.csv", index=False)
    negbio = [label_row(s, st, Edema=0) for s, st in {(i[1], i[2]) for i in IMAGES}]
    pd.DataFrame(negbio).to_csv(root / "mimic-cxr-2.0.0-negbio.csv.gz", index=False)
    test_labels = pd.DataFrame([label_row("", "58971208", Edema=0, Lung_Opacity=1)]).drop(columns="subject_id")
    test_labels = test_labels.rename(columns={"Lung Opacity": "Airspace Opacity"})  # as in the 2.1.0 file
    test_labels.to_csv(root / "mimic-cxr-2.1.0-test-set-labeled.csv", index=False)
    for subject, study, text in (("10000032", "50414267", REPORT), ("11000011", "56699142", "\n  \n")):
        folder = root / "files" / f"p{subject[:2]}" / f"p{subject}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"s{study}.txt").write_text(text)
    return root


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return write_layout(tmp_path)


def test_paths_ids_views_and_splits(root):
    rec = load_records("mimic", root)
    assert len(rec) == len(IMAGES)
    first = rec.iloc[0]
    assert first["image_path"] == (
        f"{root.as_posix()}/files/p10/p10000032/s50414267/aaaaaaaa-00000001-00000002-00000003-00000004.jpg"
    )
    assert first["report_path"] == f"{root.as_posix()}/files/p10/p10000032/s50414267.txt"
    assert (first["patient_id"], first["study_id"]) == ("10000032", "50414267")
    assert rec["view"].tolist() == ["PA", "LATERAL", "AP", "OTHER", "OTHER", "LL"]
    assert rec["split"].tolist() == ["train", "train", "train", "valid", "test", "test"]
    assert rec["sex"].isna().all() and rec["age"].isna().all()


def test_study_labels_fan_out_and_missing_rows_are_nan(root):
    rec = load_records("mimic", root).set_index("dicom_id")
    study = rec[rec["study_id"] == "50414267"]
    assert len(study) == 2
    assert (study["Cardiomegaly"] == 1).all() and (study["Edema"] == -1).all() and (study["Pneumothorax"] == 0).all()
    assert study["Fracture"].isna().all()
    unlabeled = rec[rec["study_id"].isin(["56699142", "59999999"])]
    assert unlabeled[list(CHEXPERT_PATHOLOGIES)].isna().all(axis=None)
    assert unlabeled["label_source"].isna().all()


def test_radiologist_test_labels_replace_the_labeler(root):
    rec = load_records("mimic", root)
    test_study = rec[rec["study_id"] == "58971208"].iloc[0]
    assert test_study["label_source"] == "radiologist"
    assert test_study["Edema"] == 0 and test_study["Lung Opacity"] == 1  # "Airspace Opacity" in that file
    assert (rec.loc[rec["study_id"] == "50414267", "label_source"] == "chexpert").all()


def test_negbio_labeler_and_uncertainty_policy(root):
    negbio = load_records("mimic", root, labeler="negbio")
    assert (negbio.loc[negbio["study_id"] != "58971208", "Edema"] == 0).all()
    assert set(negbio["label_source"].dropna()) == {"negbio", "radiologist"}
    ones = load_records("mimic", root, uncertainty="ones")
    assert (ones.loc[ones["study_id"] == "50414267", "Edema"] == 1).all()
    with pytest.raises(ConfigError, match="labeler"):
        load_records("mimic", root, labeler="chexbert")


def test_view_filter(root):
    assert load_records("mimic", root, views=["AP", "PA"])["view"].tolist() == ["PA", "AP"]


def test_reports_sections_and_skipped_list(root):
    rec = load_records("mimic", root, reports=True)
    first = rec.iloc[0]
    assert first["findings"] == "Mild cardiomegaly. Small left pleural effusion. No pneumothorax."
    assert first["impression"] == "Small left effusion."
    assert "INDICATION" in first["report_text"]
    assert rec.iloc[1]["impression"] == first["impression"]  # same study, same report
    skipped = rec.attrs["skipped"]
    assert any(s.endswith("s56699142.txt: report is empty") for s in skipped)
    assert sum("report file is missing" in s for s in skipped) == 3  # 53189527, 58971208, 59999999
    assert rec.loc[rec["study_id"] == "56699142", "report_text"].isna().all()
    assert "report_text" not in load_records("mimic", root)


def test_demographics_from_mimic_iv_patients(root):
    pd.DataFrame({"subject_id": ["10000032", "19999987"], "gender": ["F", "M"], "anchor_age": [52, 70]}).to_csv(
        root / "patients.csv.gz", index=False
    )
    rec = load_records("mimic", root)
    assert rec["sex"].tolist()[:3] == ["F", "F", "F"] and rec["sex"].iloc[-1] == "M"
    assert rec["age"].iloc[0] == 52 and np.isnan(rec["age"].iloc[3])


def test_bad_inputs(root):
    split = pd.read_csv(root / "mimic-cxr-2.0.0-split.csv.gz", dtype=str)
    split.loc[2, "split"] = "val"
    split.to_csv(root / "mimic-cxr-2.0.0-split.csv.gz", index=False)
    with pytest.raises(DataError, match=r"split.csv.gz:4: split 'val'"):
        load_records("mimic", root)
    (root / "mimic-cxr-2.0.0-metadata.csv.gz").unlink()
    with pytest.raises(DataError, match="metadata"):
        load_records("mimic", root)


def test_malformed_label_rows_are_listed(root):
    path = root / "mimic-cxr-2.0.0-chexpert.csv"
    path.write_text(path.read_text().replace("\n10000032,53189527,", "\n10000032,53189527,x", 1))
    rec = load_records("mimic", root)
    assert rec.loc[rec["study_id"] == "53189527", "No Finding"].isna().all()
    assert any(s.startswith(f"{path}:3: Atelectasis='x'") for s in rec.attrs["skipped"])


def test_report_section_parser():
    sections = report_sections(REPORT)
    assert {"examination", "indication", "comparison", "findings", "impression"} <= set(sections)
    assert sections["indication"] == "___ year old woman with cough."
    text = "FINAL REPORT\n FINDINGS:  Clear lungs.\n CONCLUSION:  Normal chest.\n"
    assert findings_and_impression(text) == ("Clear lungs.", "Normal chest.")
    assert findings_and_impression("FINAL REPORT\n FINDINGS AND IMPRESSION:  No change.\n") == (None, "No change.")
    no_headers = "Portable chest.\n\nLines and tubes unchanged.\nNo pneumothorax.\n"
    assert findings_and_impression(no_headers) == (None, "Lines and tubes unchanged. No pneumothorax.")


def test_test_set_columns_spelled_differently_are_mapped_or_listed(root):
    path = root / "mimic-cxr-2.1.0-test-set-labeled.csv"
    table = pd.read_csv(path, dtype={"study_id": str}).drop(columns=["Fracture"])
    table = table.rename(columns={"No Finding": "No Findings", "Edema": "edema "}).assign(**{"Lung Nodule": 1})
    table.loc[0, "No Findings"] = 1
    table.to_csv(path, index=False)
    rec = load_records("mimic", root)
    study = rec[rec["study_id"] == "58971208"].iloc[0]
    assert (study["No Finding"], study["Edema"], study["Lung Opacity"]) == (1, 0, 1)
    skipped = rec.attrs["skipped"]
    assert f"{path}:1: column(s) ['Lung Nodule'] are not CheXpert findings and are ignored" in skipped
    assert f"{path}:1: no column for ['Fracture']: the labeler's values stay for these studies" in skipped
