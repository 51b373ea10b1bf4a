"""``cxrl phantom --reports iu``: real IU X-ray report texts paired with phantoms drawn from their MeSH findings.

Only reports with an even IU id are used (odd ids are reserved for evaluating report labelers), and only those a
labeler can be scored on (``iu_reports.evaluable``). A report's MeSH major terms map to CheXpert findings
(``iu_reports.mesh_findings``); the qualifiers of the term give the drawn side (right, left, bilateral), size
(mild/small, moderate, severe/large) and lung zone (upper lobe/apex, middle lobe/lingula, base/lower lobe); what
they leave open is drawn at random. One report is one patient's only study. Its labels are the MeSH ones (1 for
a mapped finding, blank otherwise; "No Finding" 1 only for a report indexed "normal") and its text keeps IU's
FINDINGS and IMPRESSION (the ``XXXX`` of de-identification written as MIMIC's ``___``) in MIMIC's report layout.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from functools import lru_cache

import numpy as np
import pandas as pd

from cxrl.data.phantom.report import mimic_report
from cxrl.data.phantom.sampling import (
    FINDINGS,
    OPACITIES,
    SIDED,
    Finding,
    ImageSpec,
    load_stats,
    new_finding,
    sample_anatomy,
)
from cxrl.data.text.iu_reports import evaluable, mesh_findings, read_iu_reports
from cxrl.errors import ConfigError

SEVERITY_QUALIFIERS = {"mild": "mild", "small": "mild", "moderate": "moderate", "severe": "severe", "large": "severe"}
ZONE_QUALIFIERS = {"upper lobe": "upper", "apex": "upper", "middle lobe": "middle", "lingula": "middle",
                   "base": "lower", "lower lobe": "lower"}
ONE_SIDED = frozenset({"Pneumothorax", "Lung Lesion", "Pleural Other", "Fracture"})  # drawn on one side only
PHI = re.compile(r"X{3,}")


@dataclass
class IUSpec(ImageSpec):
    """A spec whose "No Finding" is MeSH's "normal" (a report indexed only with, say, a calcified granuloma is not
    normal although none of the 13 findings is drawn)."""

    normal: bool = False

    def csv_labels(self) -> dict[str, float]:
        return {**super().csv_labels(), "No Finding": 1.0 if self.normal else float("nan")}

    def true_labels(self) -> dict[str, float]:
        return {**super().true_labels(), "No Finding": float(self.normal)}


@lru_cache(maxsize=1)
def even_iu_reports() -> pd.DataFrame:
    """The evaluable IU reports with an even id, sorted by id."""
    reports = evaluable(read_iu_reports())
    return reports[reports["id"] % 2 == 0].reset_index(drop=True)


def qualified_finding(name: str, qualifiers: list[str], rng: np.random.Generator) -> Finding:
    """Finding ``name`` with the side, size and zone its MeSH qualifiers state; the rest drawn at random."""
    finding = new_finding(name, rng)
    words = [q.lower() for q in qualifiers]
    severity = next((SEVERITY_QUALIFIERS[w] for w in words if w in SEVERITY_QUALIFIERS), finding.severity)
    zone = next((ZONE_QUALIFIERS[w] for w in words if w in ZONE_QUALIFIERS), finding.zone)
    sides = [w for w in words if w in ("right", "left", "bilateral")]
    side = sides[0] if name in SIDED and sides and not (sides[0] == "bilateral" and name in ONE_SIDED) \
        else finding.side
    return replace(finding, severity=severity, side=side, zone=zone)


def mesh_drawn_findings(terms: list[str], rng: np.random.Generator) -> dict[str, Finding]:
    """The findings to draw for one report's MeSH major terms (the first term naming a finding sets its look)."""
    found: dict[str, Finding] = {}
    for term in terms:
        qualifiers = term.split("/")[1:]
        for name in mesh_findings(term):
            if name != "No Finding" and name not in found:
                found[name] = qualified_finding(name, qualifiers, rng)
    if found.keys() & set(OPACITIES) and "Lung Opacity" not in found:
        found["Lung Opacity"] = new_finding("Lung Opacity", rng)
    return found


def iu_report_text(row: pd.Series, view: str, sex: str) -> str:
    """One IU report's FINDINGS and IMPRESSION in MIMIC's layout."""
    def clean(text: str) -> str:
        return PHI.sub("___", " ".join(text.split()))

    return mimic_report(view, sex, "___", "None.", clean(row["findings"]), clean(row["impression"]))


def plan_iu_dataset(n: int, seed: int = 0, valid_fraction: float = 0.05,
                    test_fraction: float = 0.05) -> tuple[list[ImageSpec], list[int]]:
    """``n`` specs, one per even-id IU report drawn with ``seed``, and those reports' ids."""
    reports = even_iu_reports()
    if n > len(reports):
        raise ConfigError(f"--reports iu: only {len(reports)} even-id IU reports, cannot write n={n}")
    stats, rng = load_stats(), np.random.default_rng([seed, 0x1E])
    chosen = reports.iloc[np.sort(rng.choice(len(reports), n, replace=False))]
    n_valid, n_test = round(n * valid_fraction), round(n * test_fraction)
    splits = ["train"] * (n - n_valid - n_test) + ["valid"] * n_valid + ["test"] * n_test
    specs = []
    for index, (split, (_, row)) in enumerate(zip(splits, chosen.iterrows(), strict=True)):
        findings = mesh_drawn_findings(row["mesh_major"], rng)
        anatomy = sample_anatomy(rng, bool(rng.random() < stats["female_fraction"]))
        view = "AP" if rng.random() < stats["ap_fraction"] else "PA"
        spec = IUSpec(
            index=index, patient=index, study=1, split=split, view=view,
            supine=view == "AP" and bool(rng.random() < 0.5),
            age=int(np.clip(rng.normal(stats["age_mean"], stats["age_sd"]), 18, 90)), anatomy=anatomy,
            findings=findings, mentions={name: "positive" if name in findings else "blank" for name in FINDINGS},
            normal="normal" in row["mesh_major"] and not findings.keys() - {"Support Devices"},
        )
        spec.report = iu_report_text(row, view, spec.sex)
        specs.append(spec)
    return specs, [int(i) for i in chosen["id"]]
