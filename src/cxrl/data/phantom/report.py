"""Free-text reports written from the same truth as the labels, in MIMIC-CXR style.

Each finding's mention state decides its sentence: positive (stated with severity and side), uncertain
(hedged: "possible", "cannot be excluded", "may represent"), negative (grouped negation, "No ... or ...")
or blank (not mentioned). Hence a CheXpert-style labeler reading the report recovers the CSV labels.
Follow-up studies compare to the prior (new, unchanged, increased, decreased).
"""

from __future__ import annotations

import textwrap

import numpy as np

from cxrl.data.phantom.sampling import SEVERITIES, Finding, ImageSpec

TERMS: dict[str, tuple[str, ...]] = {
    "Enlarged Cardiomediastinum": ("mediastinal widening", "widened mediastinum", "enlarged cardiomediastinal"),
    "Cardiomegaly": ("cardiomegaly", "enlarged cardiac silhouette", "heart size is enlarged"),
    "Lung Opacity": ("opacity", "opacities", "opacification"),
    "Lung Lesion": ("nodule", "mass", "lesion"),
    "Edema": ("pulmonary edema", "edema"),
    "Consolidation": ("consolidation",),
    "Pneumonia": ("pneumonia",),
    "Atelectasis": ("atelectasis",),
    "Pneumothorax": ("pneumothorax",),
    "Pleural Effusion": ("pleural effusion", "effusion"),
    "Pleural Other": ("pleural thickening", "pleural plaque"),
    "Fracture": ("fracture",),
    "Support Devices": ("tube", "catheter", "pacemaker", "sternotomy wires", "monitoring leads"),
}
NEGATION_CUES: tuple[str, ...] = ("no ", "without", "not seen", "there is no", "free of")
HEDGE_CUES: tuple[str, ...] = ("possible", "cannot be excluded", "may represent", "questionable", "could reflect")
SEVERITY_WORDS = {"mild": ("small", "mild", "trace"), "moderate": ("moderate",), "severe": ("large", "severe")}
SIDE_WORDS = {"right": "right", "left": "left", "bilateral": "bilateral", "midline": ""}
DEVICE_SENTENCES = {
    "et_tube": "Endotracheal tube terminates {n} cm above the carina.",
    "central_line": "Right internal jugular central venous catheter tip is in the mid SVC.",
    "ng_tube": "Nasogastric tube courses below the diaphragm, tip in the stomach.",
    "pacemaker": "Left chest wall pacemaker with leads in the right atrium and right ventricle.",
    "ecg_leads": "External monitoring leads overlie the chest.",
    "sternotomy": "Median sternotomy wires are intact.",
}


def _severity(f: Finding, rng) -> str:
    return str(rng.choice(SEVERITY_WORDS[f.severity]))


def _zone(f: Finding) -> str:
    return {"upper": "upper lobe", "middle": "mid lung", "lower": "lower lobe"}[f.zone]


def positive_sentence(name: str, f: Finding, rng: np.random.Generator) -> str:
    side, sev = SIDE_WORDS[f.side], _severity(f, rng)
    where = f"{side} {_zone(f)}".strip()
    sentences = {
        "Enlarged Cardiomediastinum": [f"The mediastinal widening is {sev}.", "There is widened mediastinum."],
        "Cardiomegaly": [f"{sev.capitalize()} cardiomegaly.", f"The heart size is enlarged, {sev}."],
        "Lung Opacity": [f"{sev.capitalize()} {where} opacity.", f"There are {where} opacities."],
        "Lung Lesion": [f"A {sev} {side} lung nodule is present.", f"{side.capitalize()} {_zone(f)} mass."],
        "Edema": [f"{sev.capitalize()} pulmonary edema.", f"There is {sev} interstitial edema."],
        "Consolidation": [f"{sev.capitalize()} {where} consolidation.", f"Dense {where} consolidation."],
        "Pneumonia": [f"Findings consistent with {where} pneumonia.", f"{where.capitalize()} pneumonia."],
        "Atelectasis": [f"{sev.capitalize()} {side} basilar atelectasis.", f"Plate-like {side} atelectasis."],
        "Pneumothorax": [f"{sev.capitalize()} {side} apical pneumothorax.", f"There is a {sev} {side} pneumothorax."],
        "Pleural Effusion": [f"{sev.capitalize()} {side} pleural effusion.",
                             f"There is a {sev} {side} pleural effusion." if side != "bilateral"
                             else f"There are {sev} bilateral pleural effusions."],
        "Pleural Other": [f"{side.capitalize()} pleural thickening.", f"Calcified {side} pleural plaque."],
        "Fracture": [f"{side.capitalize()} rib fracture.", f"Healing {side} posterior rib fracture."],
    }
    return " ".join(str(rng.choice(sentences[name])).split())


def hedged_sentence(name: str, rng: np.random.Generator) -> str:
    term = TERMS[name][0]
    options = [f"Possible {term}.", f"{term.capitalize()} cannot be excluded.", f"Findings may represent {term}.",
               f"Questionable {term}."]
    if name == "Support Devices":
        options = ["Possible catheter projecting over the neck.", "Questionable tube in the upper chest."]
    return str(rng.choice(options))


def negative_sentence(names: list[str], rng: np.random.Generator) -> str:
    terms = [TERMS[n][0] if n != "Support Devices" else "tube or catheter" for n in names]
    joined = terms[0] if len(terms) == 1 else ", ".join(terms[:-1]) + " or " + terms[-1]
    return str(rng.choice([f"No {joined}.", f"There is no {joined}."]))


def exam_description(view: str) -> str:
    """The study's procedure description (MIMIC metadata and report header) for a frontal ``view``."""
    return "CHEST (PORTABLE AP)" if view == "AP" else "CHEST (PA AND LAT)"


def _change(name: str, f: Finding, prior: dict[str, Finding] | None) -> str:
    if prior is None:
        return ""
    if name not in prior:
        return " This is new."
    delta = SEVERITIES.index(f.severity) - SEVERITIES.index(prior[name].severity)
    return {-1: " Decreased since the prior study.", 0: " Unchanged.", 1: " Increased since the prior study."}[delta]


def write_report(spec: ImageSpec, rng: np.random.Generator) -> str:
    """The MIMIC-style report text of ``spec`` (wrapped at 79 characters, PHI as ``___``)."""
    findings, impression, negated = [], [], []
    order = list(spec.mentions)
    rng.shuffle(order)
    for name in order:
        state = spec.mentions[name]
        f = spec.findings.get(name)
        if state == "positive" and name == "Support Devices":
            findings += [DEVICE_SENTENCES[d].format(n=int(rng.integers(3, 6))) for d in spec.anatomy.devices]
        elif state == "positive":
            sentence = positive_sentence(name, f, rng) + _change(name, f, spec.prior)
            findings.append(sentence)
            impression.append(sentence)
        elif state == "uncertain":
            sentence = hedged_sentence(name, rng)
            findings.append(sentence)
            impression.append(sentence)
        elif state == "negative":
            negated.append(name)
    if negated:
        findings.append(negative_sentence(negated, rng))
    if not impression:
        impression.append("No acute cardiopulmonary process.")
    comparison = "___" if spec.prior is not None else "None."
    body = [
        "                                 FINAL REPORT",
        f" EXAMINATION:  {exam_description(spec.view)}",
        "",
        f" INDICATION:  ___ year old {'woman' if spec.sex == 'Female' else 'man'} with "
        + str(rng.choice(["shortness of breath", "fever", "line placement", "chest pain", "hypoxia"]))
        + ".  Evaluate for acute process.",
        "",
        f" COMPARISON:  {comparison}",
        "",
        *_section("FINDINGS", findings),
        "",
        *_section("IMPRESSION", impression),
    ]
    lines = [part for line in body for part in (textwrap.wrap(line, 79, subsequent_indent=" ") or [""])]
    return "\n".join(lines) + "\n"


def dataset_report(spec: ImageSpec, seed: int) -> str:
    """The report ``write_dataset`` gives ``spec``: ``write_report`` from the ``(seed, image, 3)`` stream."""
    return write_report(spec, np.random.default_rng([seed, spec.index, 3]))


def _section(title: str, sentences: list[str]) -> list[str]:
    return [f" {title}:", "", " " + "  ".join(sentences)]
