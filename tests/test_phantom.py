"""The phantom: layouts read back by the real readers, determinism, masks and boxes, reports vs labels."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from cxrl.cli import main
from cxrl.data.labels import CHEXPERT_PATHOLOGIES
from cxrl.data.phantom import MASK_BITS, plan_dataset, render, truth_mask, write_dataset
from cxrl.data.phantom.render import mask_bit
from cxrl.data.records import load_records
from cxrl.errors import ConfigError, DataError

N, SIZE = 24, 96


@pytest.fixture(scope="module")
def chexpert_dir(tmp_path_factory) -> Path:
    return write_dataset(tmp_path_factory.mktemp("phantom") / "chexpert", N, size=SIZE, seed=3, workers=1)


@pytest.fixture(scope="module")
def mimic_dir(tmp_path_factory) -> Path:
    return write_dataset(tmp_path_factory.mktemp("phantom") / "mimic", N, size=SIZE, layout="mimic", seed=3,
                         patients=12, workers=1)


def test_chexpert_layout_reads_back(chexpert_dir):
    header = (chexpert_dir / "train.csv").read_text().splitlines()[0]
    assert header.split(",") == ["Path", "Sex", "Age", "Frontal/Lateral", "AP/PA", *CHEXPERT_PATHOLOGIES]
    records = load_records("chexpert", chexpert_dir)
    assert len(records) == N
    assert set(records["split"]) == {"train", "valid"}
    assert set(records["view"]) <= {"AP", "PA"}
    assert all(Path(p).is_file() for p in records["image_path"])
    assert all(re.search(r"/(train|valid)/patient\d{5}/study\d+/view1_frontal\.jpg$", p) for p in records["image_path"])
    valid = pd.read_csv(chexpert_dir / "valid.csv")
    assert set(np.unique(valid[list(CHEXPERT_PATHOLOGIES)].to_numpy())) <= {0.0, 1.0}
    train = pd.read_csv(chexpert_dir / "train.csv")
    assert set(np.unique(train[list(CHEXPERT_PATHOLOGIES)].fillna(9).to_numpy())) <= {-1.0, 0.0, 1.0, 9.0}
    image = cv2.imread(records["image_path"][0], cv2.IMREAD_UNCHANGED)
    assert image.shape == (SIZE, SIZE) and image.dtype == np.uint8


def test_mimic_layout_reads_back(mimic_dir):
    records = load_records("mimic", mimic_dir, reports=True)
    assert len(records) == N
    assert records["patient_id"].nunique() == 12
    for path in records["image_path"]:
        assert re.search(r"/files/p1\d/p1\d{7}/s5\d{7}/[0-9a-f]{8}(-[0-9a-f]{8}){4}\.jpg$", path), path
    labels = pd.read_csv(mimic_dir / "mimic-cxr-2.0.0-chexpert.csv.gz")
    assert list(labels.columns[2:]) == sorted(CHEXPERT_PATHOLOGIES)
    assert set(pd.read_csv(mimic_dir / "mimic-cxr-2.0.0-split.csv.gz")["split"]) <= {"train", "validate", "test"}
    for text in records["report_text"]:
        assert "FINDINGS:" in text and "IMPRESSION:" in text
    for report in (mimic_dir / "files").rglob("s*.txt"):
        assert max(len(line) for line in report.read_text().splitlines()) <= 79


def test_truth_files(chexpert_dir):
    truth = pd.read_parquet(chexpert_dir / "phantom_truth" / "truth.parquet")
    manifest = json.loads((chexpert_dir / "phantom_truth" / "manifest.json").read_text())
    assert manifest["findings"] == list(MASK_BITS) and len(truth) == N
    for row in truth.to_dict("records"):
        assert (chexpert_dir / row["image"]).is_file()
        drawn = {name for name in MASK_BITS if truth_mask(row, name, SIZE).any()}
        present = {name for name in MASK_BITS if row[name] == 1}
        assert drawn <= present
        assert {b["label"] for b in json.loads(row["boxes"])} == drawn
    spec = plan_dataset(N, seed=3)[0]
    row = truth.to_dict("records")[0]
    packed = render(spec, SIZE, seed=3).mask
    for bit, name in enumerate(MASK_BITS):
        assert np.array_equal(truth_mask(row, name, SIZE), ((packed >> bit) & 1).astype(bool)), name


@pytest.mark.slow
def test_same_seed_same_bytes_whatever_workers(tmp_path):
    one = write_dataset(tmp_path / "a", 20, size=48, seed=5, workers=1)
    two = write_dataset(tmp_path / "b", 20, size=48, seed=5, workers=2)  # two chunks, two processes
    files = sorted(p.relative_to(one) for p in one.rglob("*") if p.is_file() and p.suffix != ".parquet")
    assert files == sorted(p.relative_to(two) for p in two.rglob("*") if p.is_file() and p.suffix != ".parquet")
    for rel in files:
        assert (one / rel).read_bytes() == (two / rel).read_bytes(), rel
    pd.testing.assert_frame_equal(pd.read_parquet(one / "phantom_truth" / "truth.parquet"),
                                  pd.read_parquet(two / "phantom_truth" / "truth.parquet"))
    other = write_dataset(tmp_path / "c", 6, size=64, seed=6, workers=1)
    assert (other / "train.csv").read_bytes() != (one / "train.csv").read_bytes()


def _only(name: str, count: int, **match):
    """Specs holding ``name``, with every other finding removed (so the comparison isolates it)."""
    specs = [replace(s, findings={name: s.findings[name]}) for s in plan_dataset(600, seed=1)
             if name in s.findings and all(getattr(s, k) == v for k, v in match.items())]
    assert len(specs) >= count, f"too few {name} specs"
    return specs[:count]


@pytest.mark.parametrize("name", ["Pleural Effusion", "Consolidation", "Lung Lesion", "Cardiomegaly"])
def test_dense_findings_brighten_their_mask(name):
    bit = MASK_BITS.index(name)
    for spec in _only(name, 4, supine=False):
        sick, healthy = render(spec, 96, seed=1), render(spec, 96, seed=1, findings=False)
        region = mask_bit(sick.mask, bit)
        assert region.sum() > 10
        gain = sick.image[region].astype(float).mean() - healthy.image[region].astype(float).mean()
        assert gain > 8, (name, spec.findings[name], gain)


def test_pneumothorax_darkens_its_mask():
    bit = MASK_BITS.index("Pneumothorax")
    for spec in _only("Pneumothorax", 4):
        sick, healthy = render(spec, 128, seed=1), render(spec, 128, seed=1, findings=False)
        region = mask_bit(sick.mask, bit)
        assert region.sum() > 10
        assert sick.image[region].astype(float).mean() < healthy.image[region].astype(float).mean() - 3


def test_boxes_contain_their_masks():
    for spec in plan_dataset(40, seed=2)[:20]:
        result = render(spec, 96, seed=2)
        for bit, name in enumerate(MASK_BITS):
            region = mask_bit(result.mask, bit)
            if not region.any():
                continue
            covered = np.zeros_like(region)
            for b in (b for b in result.boxes if b["label"] == name):
                covered[b["y"] : b["y"] + b["h"], b["x"] : b["x"] + b["w"]] = 1
            assert (region & covered).sum() == region.sum(), name


def test_cli_writes_and_refuses_non_empty_out(tmp_path, capsys):
    assert main(["phantom", "--out", str(tmp_path / "d"), "--n", "3", "--size", "64", "--workers", "1"]) == 0
    assert (tmp_path / "d" / "train.csv").is_file()
    with pytest.raises(DataError, match="not empty"):
        write_dataset(tmp_path / "d", 3, size=64)
    with pytest.raises(ConfigError, match="layout"):
        write_dataset(tmp_path / "e", 3, layout="nih")
