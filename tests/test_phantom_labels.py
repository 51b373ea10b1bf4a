"""Phantom labels: real co-occurrence statistics, and reports that say what the labels say (no rendering)."""

from __future__ import annotations

import re

import numpy as np
import pytest

from cxrl.data.phantom import plan_dataset
from cxrl.data.phantom.report import write_report
from cxrl.data.phantom.sampling import FINDINGS, load_stats
from cxrl.data.sources.report_sections import findings_and_impression
from cxrl.data.text.labeler import label_report


@pytest.fixture(scope="module")
def specs():
    return plan_dataset(1500, seed=11)


def _matrix(specs) -> np.ndarray:
    return np.array([[s.csv_labels()[f] for f in FINDINGS] for s in specs], dtype=np.float32)


def test_prevalence_follows_real_chexpert(specs):
    stats = load_stats()["marginals"]
    labels = _matrix(specs)
    for k, name in enumerate(FINDINGS):
        assert abs(np.mean(labels[:, k] == 1) - stats[name]["positive"]) < 0.06, name
        assert abs(np.mean(labels[:, k] == -1) - stats[name]["uncertain"]) < 0.05, name
        assert abs(np.mean(np.isnan(labels[:, k])) - stats[name]["blank"]) < 0.08, name


def test_strongest_lifts_hold_qualitatively(specs):
    positive = _matrix(specs) == 1

    def lift(a: str, b: str) -> float:
        i, j = FINDINGS.index(a), FINDINGS.index(b)
        return (positive[:, i] & positive[:, j]).mean() / (positive[:, i].mean() * positive[:, j].mean())

    assert lift("Cardiomegaly", "Edema") > 1.2
    assert lift("Consolidation", "Pneumonia") > 1.3
    assert lift("Edema", "Pneumothorax") < 0.8


def test_no_finding_excludes_pathology(specs):
    for s in specs[:300]:
        labels = s.csv_labels()
        if labels["No Finding"] == 1:
            assert all(labels[f] not in (1, -1) for f in FINDINGS if f != "Support Devices")


def read_states(report: str) -> dict[str, float]:
    """A CheXpert-style reading of the FINDINGS and IMPRESSION: cxrl's rule labeler (1, 0, -1, NaN)."""
    return label_report(" ".join(findings_and_impression(report)))


def test_reports_agree_with_labels(specs):
    for s in specs[:400]:
        report = write_report(s, np.random.default_rng(s.index))
        read, labels = read_states(report), s.csv_labels()
        for name in FINDINGS:
            assert np.array_equal(read[name], labels[name], equal_nan=True), (name, s.mentions[name], report)


def test_follow_ups_compare_to_prior(specs):
    follow = [s for s in specs if s.prior is not None and any(s.mentions[f] == "positive" for f in s.findings)]
    assert follow
    texts = [write_report(s, np.random.default_rng(0)) for s in follow[:50]]
    assert all("COMPARISON:  ___" in t for t in texts)
    assert any(re.search(r"unchanged|new\.|increased|decreased", t, re.I) for t in texts)
