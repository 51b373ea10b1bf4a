"""Phantom reports worth learning from: side and size as drawn, varied phrasing, sections, labeler read-back."""

from __future__ import annotations

import re

import numpy as np
import pytest

from cxrl.data.labels import CHEXPERT_PATHOLOGIES
from cxrl.data.phantom import plan_dataset
from cxrl.data.phantom.report import (
    GRADE_WORDS,
    NORMAL_IMPRESSIONS,
    SIZE_WORDS,
    SIZED,
    dataset_report,
    positive_sentence,
)
from cxrl.data.phantom.sampling import FINDINGS, SEVERITIES, SIDED, Finding
from cxrl.data.sources.report_sections import findings_and_impression
from cxrl.data.text.iu_reports import label_agreement
from cxrl.data.text.labeler import label_reports

SEED = 21
F1_FLOOR = 0.95


@pytest.fixture(scope="module")
def reports():
    specs = plan_dataset(600, seed=SEED)
    return specs, [dataset_report(s, SEED) for s in specs]


@pytest.mark.parametrize("name", [n for n in FINDINGS if n not in ("Support Devices", "Fracture")])
def test_positive_sentence_states_drawn_side_and_size(name):
    sides = ("right", "left", "bilateral") if name in SIDED else ("midline",)
    words = SIZE_WORDS if name in SIZED else GRADE_WORDS
    for k, (severity, side) in enumerate((v, s) for v in SEVERITIES for s in sides):
        for trial in range(8):
            sentence = positive_sentence(name, Finding(severity, side), np.random.default_rng([k, trial])).lower()
            assert any(re.search(rf"\b{w}\b", sentence) for w in words[severity]), (severity, sentence)
            if side != "midline":
                assert re.search(rf"\b{side}\b", sentence), (side, sentence)


def test_every_report_has_findings_and_impression(reports):
    _, texts = reports
    missing = [t for t in texts if None in findings_and_impression(t)]
    assert not missing, missing[:2]


def test_labeler_reads_back_the_phantom_labels(reports):
    specs, texts = reports
    predicted = label_reports([" ".join(s or "" for s in findings_and_impression(t)) for t in texts])
    reference = np.array([[s.csv_labels()[p] == 1 for p in CHEXPERT_PATHOLOGIES] for s in specs], np.float32)
    scores = label_agreement(predicted, reference)
    scored = scores[scores["support"] >= 5]
    assert len(scored) >= 12
    assert (scored["f1"] >= F1_FLOOR).all(), scored


def test_normal_organs_negations_and_comparisons_are_phrased_many_ways(reports):
    _, texts = reports
    flat = [" ".join(t.split()) for t in texts]
    impressions = {findings_and_impression(t)[1] for t in texts}
    assert len(impressions & set(NORMAL_IMPRESSIONS)) == len(NORMAL_IMPRESSIONS)
    lungs = {m.group() for t in flat for m in re.finditer(r"[^.]*\blungs?\b[^.]*(?:clear|aerated)[^.]*\.", t)}
    assert len(lungs) >= 3, lungs
    negations = {m.group(1) for t in flat for m in re.finditer(r"(No evidence of|There is no|No) \w", t)}
    negations |= {"is not seen"} if any("is not seen." in t for t in flat) else set()
    assert len(negations) >= 4, negations
    assert any("Heart size is normal." in t or "cardiac silhouette is not enlarged" in t for t in flat)
    changes = {m.group() for t in flat for m in re.finditer(r"compared to (?:the )?prior\b|new since|unchanged", t,
                                                            re.IGNORECASE)}
    assert {"compared to prior", "New since"} <= changes, changes
