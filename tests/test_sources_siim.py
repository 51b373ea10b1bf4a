"""SIIM-ACR reader: the real train-rle.csv, the Kaggle leading-space variant, the stage-2 absolute variant."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cxrl.data.records import load_records
from cxrl.data.rle import ABSOLUTE, RELATIVE, decode_masks, decode_rle, encode_rle
from cxrl.errors import DataError


@pytest.fixture(scope="module")
def real(txv_data, tmp_path_factory):
    root = tmp_path_factory.mktemp("siim_real")
    (root / "train-rle.csv.gz").symlink_to(txv_data / "siim-pneumothorax-train-rle.csv.gz")
    raw = pd.read_csv(root / "train-rle.csv.gz")
    raw.columns = raw.columns.str.strip()
    return raw, load_records("siim", root), root


def test_real_counts_match_file_and_published_figures(real):
    raw, rec, root = real
    assert len(raw) == 12_954
    assert len(rec) == raw["ImageId"].nunique() == 12_047
    assert rec["patient_id"].is_unique
    positive_ids = set(raw.loc[raw["EncodedPixels"].str.strip() != "-1", "ImageId"])
    assert (rec["Pneumothorax"] == 1).sum() == len(positive_ids) == 2_669
    assert set(rec.loc[rec["Pneumothorax"] == 0, "mask_rle"]) == {"-1"}
    assert (rec["mask_format"] == RELATIVE).all()
    assert rec["image_path"].str.startswith(f"{root.as_posix()}/dicom-images-train/1.2.276").all()


def test_real_duplicates_are_or_ed_into_one_mask(real):
    raw, rec, _ = real
    counts = raw["ImageId"].value_counts()
    image_id = counts.index[0]
    assert counts.iloc[0] == 10
    row = rec.set_index("patient_id").loc[image_id]
    parts = row["mask_rle"].split("|")
    assert len(parts) == 10
    mask = decode_masks(row["mask_rle"], 1024, 1024, row["mask_format"])
    union = np.zeros((1024, 1024), bool)
    for part in parts:
        union |= decode_rle(part, 1024, 1024)
    np.testing.assert_array_equal(mask, union)
    assert mask.sum() >= max(decode_rle(p, 1024, 1024).sum() for p in parts)


def test_leading_spaces_in_header_and_values(tmp_path):
    rng = np.random.default_rng(0)
    rle = encode_rle(rng.random((1024, 1024)) < 0.001)
    (tmp_path / "train-rle.csv").write_text(f"ImageId, EncodedPixels\n1.2.3, -1\n1.2.4, {rle}\n1.2.4, {rle}\n")
    rec = load_records("siim", tmp_path)
    assert rec["patient_id"].tolist() == ["1.2.3", "1.2.4"]
    assert rec["Pneumothorax"].tolist() == [0, 1]
    assert rec["mask_rle"].iloc[1] == f"{rle}|{rle}"


def test_stage2_absolute_variant_is_detected(tmp_path):
    mask = np.zeros((1024, 1024), bool)
    mask[100:140, 200:260] = True
    rles = [encode_rle(mask, relative=False), "-1"]
    table = pd.DataFrame({"ImageId": ["1.2.5", "1.2.6"], "EncodedPixels": rles})
    table.to_csv(tmp_path / "stage_2_train.csv", index=False)
    rec = load_records("siim", tmp_path)
    assert (rec["mask_format"] == ABSOLUTE).all()
    np.testing.assert_array_equal(decode_masks(rec["mask_rle"].iloc[0], 1024, 1024, ABSOLUTE), mask)


def test_images_found_in_nested_folders(tmp_path):
    (tmp_path / "train-rle.csv").write_text("ImageId,EncodedPixels\n1.2.7,-1\n1.2.8,-1\n")
    nested = tmp_path / "dicom-images-train" / "1.2.study" / "1.2.series"
    nested.mkdir(parents=True)
    (nested / "1.2.7.dcm").write_bytes(b"")
    paths = load_records("siim", tmp_path)["image_path"].tolist()
    assert paths == [(nested / "1.2.7.dcm").as_posix(), f"{tmp_path.as_posix()}/dicom-images-train/1.2.8.dcm"]


def test_bad_rows_and_missing_file(tmp_path: Path):
    with pytest.raises(DataError, match="train-rle.csv"):
        load_records("siim", tmp_path)
    (tmp_path / "train-rle.csv").write_text("ImageId,EncodedPixels\n1.2.9,-1\n1.2.10,12 x\n,-1\n")
    rec = load_records("siim", tmp_path)
    assert rec["patient_id"].tolist() == ["1.2.9"]
    assert [s.split(": ", 1)[0].rsplit(":", 1)[1] for s in rec.attrs["skipped"]] == ["3", "4"]
