"""``cxrl phantom --reports iu``: real IU report texts (even ids) with phantoms drawn from their MeSH findings."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cxrl.cli import main
from cxrl.data.labels import CHEXPERT_PATHOLOGIES
from cxrl.data.phantom import write_dataset
from cxrl.data.phantom.iu_pairs import even_iu_reports, iu_report_text
from cxrl.data.records import load_records
from cxrl.data.sources.report_sections import findings_and_impression
from cxrl.data.text.iu_reports import mesh_label_matrix
from cxrl.errors import ConfigError

pytest.importorskip("torchxrayvision")
N, SIZE = 8, 64


@pytest.fixture(scope="module")
def iu_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("phantom") / "iu"
    args = ["phantom", "--reports", "iu", "--out", str(out), "--n", str(N), "--size", str(SIZE), "--seed", "4"]
    assert main([*args, "--workers", "1"]) == 0
    return out


def _clean(text: str) -> str | None:
    return re.sub(r"X{3,}", "___", " ".join(text.split())) or None


def test_mimic_reader_finds_every_even_iu_report_in_its_sections():
    reports = even_iu_reports()
    assert len(reports) > 1500 and (reports["id"] % 2 == 0).all()
    for _, row in reports.iterrows():
        got = findings_and_impression(iu_report_text(row, "PA", "Female"))
        assert got == (_clean(row["findings"]), _clean(row["impression"])), row["id"]


def test_iu_layout_pairs_even_reports_with_their_mesh_labels(iu_dir):
    ids = json.loads((iu_dir / "phantom_truth" / "manifest.json").read_text())["iu_ids"]
    assert len(set(ids)) == N and all(i % 2 == 0 for i in ids)
    iu = even_iu_reports().set_index("id").loc[ids]
    records = load_records("mimic", iu_dir, reports=True)
    assert len(records) == N
    got = set(zip(records["findings"].fillna(""), records["impression"].fillna(""), strict=True))
    assert got == {(_clean(f) or "", _clean(i) or "") for f, i in zip(iu["findings"], iu["impression"], strict=True)}
    mesh = mesh_label_matrix(iu["mesh_major"])
    labels = pd.read_csv(iu_dir / "mimic-cxr-2.0.0-chexpert.csv.gz")[list(CHEXPERT_PATHOLOGIES)].to_numpy() == 1
    opacity = CHEXPERT_PATHOLOGIES.index("Lung Opacity")
    mesh[:, opacity] = np.maximum(mesh[:, opacity], labels[:, opacity])  # opacities drawn for every opacity finding
    assert sorted(map(tuple, labels)) == sorted(map(tuple, mesh.astype(bool)))


def test_iu_findings_are_drawn(iu_dir):
    truth = pd.read_parquet(iu_dir / "phantom_truth" / "truth.parquet")
    for _, row in truth.iterrows():
        present = {p for p in CHEXPERT_PATHOLOGIES if p != "No Finding" and row[p] == 1}
        assert set(json.loads(row["masks"])) == present, row["report"]


def test_iu_reports_refuse_other_layouts_and_too_many_images(tmp_path):
    with pytest.raises(ConfigError, match="MIMIC layout"):
        write_dataset(tmp_path / "a", 4, size=64, layout="chexpert", reports="iu")
    with pytest.raises(ConfigError, match="even-id IU reports"):
        write_dataset(tmp_path / "b", 100_000, size=64, layout="mimic", reports="iu")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
