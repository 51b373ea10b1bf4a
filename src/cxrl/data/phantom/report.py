"""Free-text reports written from the same truth as the labels and the pixels, in MIMIC-CXR style.

Each finding's mention state decides its sentence: positive (stated with the side, lung zone and size or grade
it is drawn with), uncertain (hedged: "possible", "cannot be excluded", "may represent"), negative (a negation,
grouped "No ... or ...", or for the heart and mediastinum a normal organ: "Heart size is normal.") or blank (not
mentioned). Devices are named with where the renderer puts their tips. Organs free of positive and hedged
findings are described as normal in one of several phrasings. Follow-up studies compare to the prior (new since,
unchanged, increased, decreased). A labeler reading the FINDINGS and IMPRESSION therefore recovers the CSV labels.
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
SIZED: frozenset[str] = frozenset({"Pleural Effusion", "Pneumothorax", "Lung Lesion"})  # sizes, not grades
SIZE_WORDS = {"mild": ("small", "small"), "moderate": ("moderate", "moderate-sized"), "severe": ("large", "large")}
GRADE_WORDS = {"mild": ("mild", "minimal"), "moderate": ("moderate", "moderate"), "severe": ("severe", "marked")}
SIDE_WORDS = {"right": "right", "left": "left", "bilateral": "bilateral", "midline": ""}
# Tips where findings.support_devices draws them (ET tube 3-7 % of the image above the carina, the central line
# ending just below it, the NG tube's tip below the left dome, the pacemaker lead in the heart).
DEVICE_SENTENCES: dict[str, tuple[str, ...]] = {
    "et_tube": ("Endotracheal tube terminates above the carina.", "ET tube tip is a few cm above the carina."),
    "central_line": ("Central venous catheter tip is in the low SVC.", "Central line terminates in the low SVC."),
    "ng_tube": ("Nasogastric tube courses below the diaphragm, tip in the stomach.",
                "Enteric tube tip projects over the stomach."),
    "pacemaker": ("Left chest wall pacemaker with lead tip in the right ventricle.",
                  "Left-sided pacemaker, lead terminating in the right ventricle."),
    "ecg_leads": ("External monitoring leads overlie the chest.", "EKG leads project over the chest."),
    "sternotomy": ("Median sternotomy wires are intact.", "Intact median sternotomy wires."),
}
LUNG_FINDINGS = ("Lung Opacity", "Lung Lesion", "Edema", "Consolidation", "Pneumonia", "Atelectasis")
NORMAL_SENTENCES: dict[tuple[str, ...], tuple[str, ...]] = {  # organ's findings -> its normal phrasings
    LUNG_FINDINGS: ("The lungs are clear.", "Lungs are well expanded and clear.", "The lungs are well aerated.",
                    "Clear lungs bilaterally."),
    ("Fracture",): ("The osseous structures are intact.", "No acute osseous abnormality.",
                    "Visualized bones are unremarkable."),
}
ORGAN_NEGATIONS = {  # a negated finding said through its organ (the labeler's ORGANS rule reads them back)
    "Cardiomegaly": ("Heart size is normal.", "The cardiac silhouette is not enlarged.", "Normal heart size."),
    "Enlarged Cardiomediastinum": ("The mediastinal contours are normal.", "Mediastinal contours are unremarkable.",
                                   "The cardiomediastinal silhouette is normal.",
                                   "Normal cardiomediastinal silhouette."),
}
NORMAL_IMPRESSIONS = ("No acute cardiopulmonary process.", "No acute cardiopulmonary abnormality.",
                      "No acute intrathoracic process.")
CHANGES = {
    None: (" This is new.", " New since the prior study.", " This is new compared to the prior radiograph."),
    -1: (" Decreased since the prior study.", " Improved compared to prior.", " Smaller than on the prior study."),
    0: (" Unchanged.", " Unchanged compared to prior.", " Stable since the prior study."),
    1: (" Increased since the prior study.", " Worse compared to prior.", " Larger than on the prior study."),
}


def size_word(name: str, f: Finding, rng: np.random.Generator) -> str:
    """The drawn extent in words: small / moderate / large for sized findings, else mild / moderate / severe."""
    return str(rng.choice((SIZE_WORDS if name in SIZED else GRADE_WORDS)[f.severity]))


def _zone(f: Finding) -> str:
    return {"upper": "upper lobe", "middle": "mid lung", "lower": "lower lobe"}[f.zone]


def positive_sentence(name: str, f: Finding, rng: np.random.Generator) -> str:
    """One sentence stating finding ``name`` with the side, zone and size it is drawn with (fractures: side only,
    as their drawn extent does not grow with severity)."""
    side, sev = SIDE_WORDS[f.side], size_word(name, f, rng)
    where, cap = f"{side} {_zone(f)}".strip(), sev.capitalize()
    sentences = {
        "Enlarged Cardiomediastinum": [f"The mediastinal widening is {sev}.", f"There is {sev} mediastinal widening."],
        "Cardiomegaly": [f"{cap} cardiomegaly.", f"The heart size is enlarged, {sev}."],
        "Lung Opacity": [f"{cap} {where} opacity.", f"There are {sev} {where} opacities."],
        "Lung Lesion": [f"A {sev} {side} lung nodule is present.", f"{cap} {side} {_zone(f)} mass."],
        "Edema": [f"{cap} pulmonary edema.", f"There is {sev} interstitial edema."],
        "Consolidation": [f"{cap} {where} consolidation.", f"{cap} dense {where} consolidation."],
        "Pneumonia": [f"Findings consistent with {sev} {where} pneumonia.", f"{cap} {where} pneumonia."],
        "Atelectasis": [f"{cap} {side} basilar atelectasis.", f"{cap} plate-like {side} atelectasis."],
        "Pneumothorax": [f"{cap} {side} apical pneumothorax.", f"There is a {sev} {side} pneumothorax."],
        "Pleural Effusion": [f"{cap} {side} pleural effusion.",
                             f"There is a {sev} {side} pleural effusion." if side != "bilateral"
                             else f"There are {sev} bilateral pleural effusions."],
        "Pleural Other": [f"{cap} {side} pleural thickening.", f"{cap} calcified {side} pleural plaque."],
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
    """One negation of every finding in ``names`` ("No A, B or C.", "There is no A.", "No evidence of A.")."""
    terms = [TERMS[n][0] if n != "Support Devices" else "tube or catheter" for n in names]
    joined = terms[0] if len(terms) == 1 else ", ".join(terms[:-1]) + " or " + terms[-1]
    options = [f"No {joined}.", f"There is no {joined}.", f"No evidence of {joined}."]
    if len(terms) == 1:
        options.append(f"{joined.capitalize()} is not seen.")
    return str(rng.choice(options))


def normal_sentences(spec: ImageSpec, rng: np.random.Generator) -> list[str]:
    """A normal-organ sentence for each organ with no positive or hedged finding."""
    abnormal = {n for n, state in spec.mentions.items() if state in ("positive", "uncertain")}
    return [str(rng.choice(options)) for names, options in NORMAL_SENTENCES.items() if not abnormal & set(names)]


def exam_description(view: str) -> str:
    """The study's procedure description (MIMIC metadata and report header) for a frontal ``view``."""
    return "CHEST (PORTABLE AP)" if view == "AP" else "CHEST (PA AND LAT)"


def _change(name: str, f: Finding, prior: dict[str, Finding] | None, rng: np.random.Generator) -> str:
    """How finding ``name`` compares to the prior study ("" for a first study)."""
    if prior is None:
        return ""
    delta = None if name not in prior else SEVERITIES.index(f.severity) - SEVERITIES.index(prior[name].severity)
    return str(rng.choice(CHANGES[delta]))


def report_statements(spec: ImageSpec, rng: np.random.Generator) -> tuple[list[str], list[str]]:
    """The FINDINGS and IMPRESSION sentences of ``spec`` (the findings section is never empty)."""
    findings, impression, negated, organs = [], [], [], []
    order = list(spec.mentions)
    rng.shuffle(order)
    for name in order:
        state, f = spec.mentions[name], spec.findings.get(name)
        if state == "positive" and name == "Support Devices":
            findings += [str(rng.choice(DEVICE_SENTENCES[d])) for d in spec.anatomy.devices]
        elif state in ("positive", "uncertain"):
            positive = state == "positive"
            sentence = positive_sentence(name, f, rng) + _change(name, f, spec.prior, rng) if positive \
                else hedged_sentence(name, rng)
            findings.append(sentence)
            impression.append(sentence)
        elif state == "negative" and name in ORGAN_NEGATIONS and rng.random() < 0.5:
            organs.append(str(rng.choice(ORGAN_NEGATIONS[name])))
        elif state == "negative":
            negated.append(name)
    findings += normal_sentences(spec, rng) + organs
    if negated:
        findings.append(negative_sentence(negated, rng))
    return findings, impression or [str(rng.choice(NORMAL_IMPRESSIONS))]


def mimic_report(view: str, sex: str, indication: str, comparison: str, findings: str, impression: str) -> str:
    """A report in MIMIC-CXR's layout (FINAL REPORT, EXAMINATION, INDICATION, COMPARISON, FINDINGS, IMPRESSION),
    wrapped at 79 characters; an empty section is left out."""
    body = [
        "                                 FINAL REPORT",
        f" EXAMINATION:  {exam_description(view)}",
        "",
        f" INDICATION:  ___ year old {'woman' if sex == 'Female' else 'man'} with {indication}.  Evaluate for acute"
        " process.",
        "",
        f" COMPARISON:  {comparison}",
    ]
    for title, text in (("FINDINGS", findings), ("IMPRESSION", impression)):
        body += ["", f" {title}:", "", f" {text}"] if text else []
    wrap = textwrap.TextWrapper(79, subsequent_indent=" ", break_on_hyphens=False).wrap
    lines = [part for line in body for part in (wrap(line) or [""])]
    return "\n".join(lines) + "\n"


def write_report(spec: ImageSpec, rng: np.random.Generator) -> str:
    """The MIMIC-style report text of ``spec`` (wrapped at 79 characters, PHI as ``___``)."""
    findings, impression = report_statements(spec, rng)
    indication = str(rng.choice(["shortness of breath", "fever", "line placement", "chest pain", "hypoxia"]))
    comparison = "___" if spec.prior is not None else "None."
    return mimic_report(spec.view, spec.sex, indication, comparison, "  ".join(findings), "  ".join(impression))


def dataset_report(spec: ImageSpec, seed: int) -> str:
    """The report ``write_dataset`` gives ``spec``: ``write_report`` from the ``(seed, image, 3)`` stream."""
    return write_report(spec, np.random.default_rng([seed, spec.index, 3]))
