"""MIMIC ``labeler=cxrl``: every study labelled from its report text by cxrl's rule labeler, no label file needed."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from test_sources_mimic import write_layout

from cxrl.cli import main as cli_main
from cxrl.data.cache import open_cache
from cxrl.data.labels import CHEXPERT_PATHOLOGIES
from cxrl.data.records import load_records
from cxrl.errors import ConfigError

COMPETITION = ["Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Pleural Effusion"]
AGREEMENT_FLOOR = 0.95  # measured 1.000 on every finding (phantom seeds 1, 3, 7; 200-600 studies)


@pytest.mark.slow
def test_cli_labeler_cxrl_agrees_with_the_phantoms_label_file_it_does_not_read(tmp_path, capsys):
    from cxrl.data.phantom import write_dataset

    root = write_dataset(tmp_path / "mimic", 60, size=32, layout="mimic", seed=1, workers=1)
    label_file = root / "mimic-cxr-2.0.0-chexpert.csv.gz"
    reference = pd.read_csv(label_file, dtype={"study_id": str}).set_index("study_id")
    label_file.unlink()
    options = ["--reader-option", "reports=true", "--reader-option", "labeler=cxrl"]
    code = cli_main(["prepare", "mimic", "--root", str(root), "--out", str(tmp_path / "cache"), "--size", "16",
                     "--workers", "0", *options])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    records = open_cache(tmp_path / "cache").records
    assert len(records) == 60 and records["label_source"].eq("cxrl-labeler").all()
    values = records[list(CHEXPERT_PATHOLOGIES)].to_numpy()
    assert set(np.unique(values[~np.isnan(values)])) <= {1.0, 0.0, -1.0}
    expected = reference.loc[records["study_id"], COMPETITION].to_numpy()
    found = records[COMPETITION].to_numpy()
    agreement = ((found == expected) | (np.isnan(found) & np.isnan(expected))).mean(axis=0)
    assert (agreement >= AGREEMENT_FLOOR).all(), dict(zip(COMPETITION, agreement, strict=True))
    assert (~np.isnan(expected)).sum(axis=0).min() >= 5  # each finding is mentioned: agreement is not all blanks
    assert (expected == 1).sum() >= 10


def test_labeler_cxrl_labels_from_reports_and_radiologist_test_labels_still_win(tmp_path):
    root = write_layout(tmp_path)
    for labels in root.glob("mimic-cxr-2.0.0-*.csv*"):
        if "chexpert" in labels.name or "negbio" in labels.name:
            labels.unlink()
    records = load_records("mimic", root, reports=True, labeler="cxrl").set_index("study_id")
    reported = records.loc["50414267"].iloc[0]  # "Mild cardiomegaly. Small left pleural effusion. No pneumothorax."
    assert reported["label_source"] == "cxrl-labeler"
    assert (reported["Cardiomegaly"], reported["Pleural Effusion"], reported["Pneumothorax"]) == (1, 1, 0)
    assert np.isnan(reported["Fracture"]) and np.isnan(reported["No Finding"])
    assert records.loc["58971208", "label_source"] == "radiologist"  # the 2.1.0 test set file replaces any labeler
    unreported = records.loc["53189527"]  # no report file: no labels, no source
    assert np.isnan(unreported[list(CHEXPERT_PATHOLOGIES)].to_numpy(float)).all()
    assert pd.isna(unreported["label_source"])


def test_labeler_cxrl_without_reports_is_a_clear_error(tmp_path, capsys):
    root = write_layout(tmp_path)
    with pytest.raises(ConfigError, match="reports=true"):
        load_records("mimic", root, labeler="cxrl")
    code = cli_main(["prepare", "mimic", "--root", str(root), "--out", str(tmp_path / "cache"),
                     "--reader-option", "labeler=cxrl"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 1 and err.startswith("cxrl prepare: error: mimic labeler=cxrl") and "reports=true" in err
