"""The IU X-ray reports in torchxrayvision's wheel, their MeSH-derived labels, and the labeler scored on even ids."""

from __future__ import annotations

import numpy as np
import pytest

from cxrl.data.labels import CHEXPERT_PATHOLOGIES
from cxrl.data.text.iu_reports import (
    IU_REPORT_COUNT,
    evaluable,
    label_agreement,
    mesh_findings,
    mesh_label_matrix,
    read_iu_reports,
    report_text,
)
from cxrl.data.text.labeler import label_reports
from cxrl.errors import DataError

NEGATED_OFTEN = ("Pneumothorax", "Pleural Effusion", "Consolidation")
DEV_SLICE = 300  # even ids only: odd ids are held out for the final evaluation


@pytest.fixture(scope="module")
def iu_reports(txv_data):
    return read_iu_reports(txv_data / "NLMCXR_reports.tgz")


def test_reader_counts_and_fields(iu_reports):
    assert len(iu_reports) == IU_REPORT_COUNT == 3955 and iu_reports["id"].is_unique
    second = iu_reports.set_index("id").loc[2]
    assert second["findings"].startswith("Borderline cardiomegaly.")
    assert second["impression"] == "No acute pulmonary findings."
    assert second["mesh_major"] == ["Cardiomegaly/borderline", "Pulmonary Artery/enlarged"]
    assert second["mesh_automatic"] == ["sternotomy"]


def test_reader_bad_archive_is_a_data_error(tmp_path):
    bad = tmp_path / "reports.tgz"
    bad.write_bytes(b"not a tar file")
    with pytest.raises(DataError, match="reports.tgz"):
        read_iu_reports(bad)


def test_mesh_terms_map_by_head_and_qualifiers():
    assert mesh_findings("Cardiomegaly/mild") == ("Cardiomegaly",)
    assert mesh_findings("Thickening/pleura/apex/left") == ("Pleural Other",)
    assert mesh_findings("Thickening/bronchi") == ("Lung Opacity",)
    assert mesh_findings("Cardiac Shadow/borderline") == ()
    assert mesh_findings("Hydropneumothorax/right") == ("Pneumothorax", "Pleural Effusion")
    labels = mesh_label_matrix([["normal"], ["Calcified Granuloma/lung", "Pulmonary Atelectasis/base/left"]])
    column = list(CHEXPERT_PATHOLOGIES).index
    assert labels[0, column("No Finding")] == 1 and labels[0].sum() == 1
    assert labels[1, column("Atelectasis")] == 1 and labels[1].sum() == 1


def test_agreement_counts_uncertain_as_positive_only_when_asked():
    reference = np.zeros((4, len(CHEXPERT_PATHOLOGIES)), dtype=np.float32)
    reference[:2, 0] = 1
    predicted = np.full_like(reference, np.nan)
    predicted[:, 0] = [1, -1, 0, -1]
    strict, lenient = label_agreement(predicted, reference), label_agreement(predicted, reference, True)
    assert strict.loc["No Finding", ["precision", "recall", "support"]].tolist() == [1.0, 0.5, 2]
    assert lenient.loc["No Finding", ["precision", "recall"]].tolist() == [2 / 3, 1.0]


def test_labeler_beats_keyword_baseline_on_negated_findings_even_ids(iu_reports):
    """Findings that reports mostly mention to deny: without the negation rules F1 collapses."""
    dev = evaluable(iu_reports)
    dev = dev[dev["id"] % 2 == 0].head(DEV_SLICE)
    reference = mesh_label_matrix(dev["mesh_major"])
    labeler = label_agreement(label_reports(report_text(dev)), reference).loc[list(NEGATED_OFTEN), "f1"]
    keyword = label_agreement(label_reports(report_text(dev), cues=False), reference).loc[list(NEGATED_OFTEN), "f1"]
    assert (labeler > keyword).all()
    assert labeler.mean() > 0.6 > keyword.mean() + 0.3
