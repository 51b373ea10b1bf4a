"""Who is imaged and what they have: patients, studies and labels drawn from real CheXpert statistics.

Label-state patterns (positive / uncertain / absent for the 13 findings) are sampled with the frequencies
of the real CheXpert frontal rows (``chexpert_stats.json``, derived by ``scripts/derive_phantom_stats.py``),
so prevalence, pairwise lifts and findings per image follow the real data. An uncertain ('u') finding is
truly present half the time and always hedged in the report; an absent finding is negated with its real
rate P(negative | not positive, not uncertain), else not mentioned. A follow-up study keeps the previous
study's label pattern (60 %) with severities drifting one step, or starts afresh, so a patient's course evolves.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from functools import lru_cache
from importlib import resources

import numpy as np

from cxrl.data.labels import CHEXPERT_PATHOLOGIES

FINDINGS: tuple[str, ...] = tuple(p for p in CHEXPERT_PATHOLOGIES if p != "No Finding")
OPACITIES: tuple[str, ...] = ("Lung Lesion", "Edema", "Consolidation", "Pneumonia", "Atelectasis")
SEVERITIES: tuple[str, ...] = ("mild", "moderate", "severe")
SIDED: frozenset[str] = frozenset(
    {"Lung Lesion", "Consolidation", "Pneumonia", "Atelectasis", "Pneumothorax", "Pleural Effusion",
     "Pleural Other", "Fracture", "Lung Opacity"}
)
DEVICES: dict[str, float] = {  # device -> probability that a patient's kit holds it
    "et_tube": 0.35, "central_line": 0.5, "ng_tube": 0.3, "pacemaker": 0.12, "ecg_leads": 0.45, "sternotomy": 0.12,
}
STATES: dict[str, float] = {"positive": 1.0, "uncertain": -1.0, "negative": 0.0, "blank": float("nan")}


@dataclass(frozen=True)
class Finding:
    """One true finding: severity, side (right, left, bilateral or midline) and lung zone."""

    severity: str
    side: str
    zone: str = "lower"


@dataclass(frozen=True)
class Anatomy:
    """A patient's persistent body shape, in fractions of the image size."""

    thorax_half_width: float
    apex: float
    diaphragm: float
    heart_ratio: float
    mediastinum: float
    fat: float
    female: bool
    devices: tuple[str, ...]


@dataclass
class ImageSpec:
    """Everything needed to render and describe one frontal image."""

    index: int
    patient: int
    study: int
    split: str
    view: str
    supine: bool
    age: int
    anatomy: Anatomy
    findings: dict[str, Finding]
    mentions: dict[str, str]
    prior: dict[str, Finding] | None = None
    report: str = field(default="", repr=False)

    @property
    def sex(self) -> str:
        """'Female' or 'Male', from the anatomy."""
        return "Female" if self.anatomy.female else "Male"

    def csv_labels(self) -> dict[str, float]:
        """Report-derived labels: 1 positive, 0 negated, -1 hedged, NaN not mentioned (CheXpert coding)."""
        labels = {name: STATES[self.mentions[name]] for name in FINDINGS}
        pathology = [v for k, v in labels.items() if k != "Support Devices"]
        labels["No Finding"] = float("nan") if any(v in (1.0, -1.0) for v in pathology) else 1.0
        return labels

    def true_labels(self) -> dict[str, float]:
        """The true state before report hedging (1 present, 0 absent)."""
        labels = {name: float(name in self.findings) for name in FINDINGS}
        labels["No Finding"] = float(not any(k != "Support Devices" for k in self.findings))
        return labels


@lru_cache(maxsize=1)
def load_stats() -> dict:
    """The shipped real-CheXpert statistics."""
    return json.loads(resources.files("cxrl.data.phantom").joinpath("chexpert_stats.json").read_text())


class LabelSampler:
    """Draws label-state patterns with their real frequencies (``stats`` as from ``load_stats``)."""

    def __init__(self, stats: dict) -> None:
        order = [stats["findings"].index(name) for name in FINDINGS]
        codes = list(stats["patterns"])
        self.patterns = np.array([[c[i] for i in order] for c in codes])
        counts = np.array(list(stats["patterns"].values()), dtype=np.float64)
        self.probs = counts / counts.sum()
        marg = stats["marginals"]
        self.negation = {n: marg[n]["negative"] / max(marg[n]["negative"] + marg[n]["blank"], 1e-9) for n in FINDINGS}

    def draw(self, rng: np.random.Generator) -> dict[str, str]:
        """One pattern: finding -> '1', 'u' or '0'."""
        row = self.patterns[rng.choice(len(self.probs), p=self.probs)]
        return dict(zip(FINDINGS, row, strict=True))

    def mentions_and_truth(self, codes: dict[str, str], rng: np.random.Generator) -> tuple[dict[str, str], set[str]]:
        """Report mention state per finding and the set of truly present findings."""
        mentions, present = {}, set()
        for name, code in codes.items():
            if code == "1":
                mentions[name] = "positive"
                present.add(name)
            elif code == "u":
                mentions[name] = "uncertain"
                if rng.random() < 0.5:
                    present.add(name)
            else:
                mentions[name] = "negative" if rng.random() < self.negation[name] else "blank"
        if present & set(OPACITIES):
            present.add("Lung Opacity")
        return mentions, present


def _side(rng: np.random.Generator, name: str) -> str:
    """Laterality with plausible frequencies (effusions often bilateral, edema always)."""
    if name == "Pleural Effusion":
        return rng.choice(["right", "left", "bilateral"], p=[0.35, 0.2, 0.45])
    if name in ("Atelectasis", "Consolidation", "Pneumonia", "Lung Opacity"):
        return rng.choice(["right", "left", "bilateral"], p=[0.4, 0.35, 0.25])
    if name in SIDED:
        return rng.choice(["right", "left"])
    return "bilateral" if name == "Edema" else "midline"


def new_finding(name: str, rng: np.random.Generator, mild_bias: bool = False) -> Finding:
    """A newly appearing finding; hedged ones (``mild_bias``) are mostly mild."""
    probs = [0.55, 0.35, 0.10] if mild_bias else [0.3, 0.45, 0.25]
    zone = rng.choice(["upper", "middle", "lower"], p=[0.25, 0.3, 0.45])
    return Finding(str(rng.choice(SEVERITIES, p=probs)), str(_side(rng, name)), str(zone))


def evolve(prior: Finding, rng: np.random.Generator) -> Finding:
    """The same finding at a follow-up study: severity moves at most one step."""
    k = int(np.clip(SEVERITIES.index(prior.severity) + rng.choice([-1, 0, 0, 1]), 0, 2))
    return replace(prior, severity=SEVERITIES[k])


def sample_anatomy(rng: np.random.Generator, female: bool) -> Anatomy:
    """A patient's body shape (``heart_ratio`` is the normal cardiothoracic ratio) and device kit."""
    kit = tuple(d for d, p in DEVICES.items() if rng.random() < p) or ("ecg_leads",)
    return Anatomy(
        thorax_half_width=float(rng.uniform(0.31, 0.43) - 0.02 * female),
        apex=float(rng.uniform(0.07, 0.17)),
        diaphragm=float(rng.uniform(0.64, 0.8)),
        heart_ratio=float(rng.uniform(0.38, 0.47)),
        mediastinum=float(rng.uniform(0.065, 0.09)),
        fat=float(rng.beta(2, 4)),
        female=female,
        devices=kit,
    )


def _study_state(
    sampler: LabelSampler,
    rng: np.random.Generator,
    prior: dict[str, Finding] | None,
    prior_codes: dict[str, str] | None,
) -> tuple[dict[str, Finding], dict[str, str], dict[str, str]]:
    """Findings, mentions and pattern codes of one study; follow-ups mostly keep the prior pattern."""
    # Keeping the whole prior pattern (not dropping parts of it) leaves the label marginals unbiased.
    codes = dict(prior_codes) if prior_codes and rng.random() < 0.6 else sampler.draw(rng)
    mentions, present = sampler.mentions_and_truth(codes, rng)
    findings = {}
    for name in sorted(present, key=FINDINGS.index):
        if prior and name in prior:
            findings[name] = evolve(prior[name], rng)
        else:
            findings[name] = new_finding(name, rng, mild_bias=mentions[name] == "uncertain")
    return findings, mentions, codes


def plan_dataset(n: int, seed: int = 0, patients: int | None = None, valid_fraction: float = 0.07,
                 test_fraction: float = 0.0) -> list[ImageSpec]:
    """The whole dataset's specs: ``n`` frontal images over ``patients`` patients (default ``n // 3``).

    Cheap (no rendering); deterministic from ``seed``. Held-out patients get the highest patient numbers,
    like real CheXpert's validation patients.
    """
    stats = load_stats()
    rng = np.random.default_rng([seed, 0xC0FFEE])
    sampler = LabelSampler(stats)
    patients = max(1, min(n, patients or max(1, n // 3)))
    owner = np.sort(np.concatenate([np.arange(patients), rng.integers(0, patients, n - patients)]))
    n_valid = int(round(patients * valid_fraction))
    n_test = int(round(patients * test_fraction))
    splits = np.array(["train"] * (patients - n_valid - n_test) + ["valid"] * n_valid + ["test"] * n_test)
    specs: list[ImageSpec] = []
    for p in range(patients):
        female = bool(rng.random() < stats["female_fraction"])
        anatomy = sample_anatomy(rng, female)
        age = int(np.clip(rng.normal(stats["age_mean"], stats["age_sd"]), 18, 90))
        prior, codes = None, None
        for study in range(1, int((owner == p).sum()) + 1):
            findings, mentions, codes = _study_state(sampler, rng, prior, codes)
            intubated = "et_tube" in anatomy.devices and "Support Devices" in findings
            view = "AP" if intubated or rng.random() < stats["ap_fraction"] else "PA"
            specs.append(ImageSpec(
                index=len(specs), patient=p, study=study, split=str(splits[p]), view=view,
                supine=view == "AP" and bool(rng.random() < 0.5),
                age=min(90, age + study // 3), anatomy=anatomy, findings=findings, mentions=mentions, prior=prior,
            ))
            prior = findings
    return specs
