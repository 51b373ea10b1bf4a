"""The Indiana University chest X-ray reports (Demner-Fushman et al., JAMIA 2016) and their MeSH-derived labels.

torchxrayvision's wheel ships ``NLMCXR_reports.tgz``: 3,955 ``ecgen-radiology/<id>.xml`` reports with
``AbstractText`` FINDINGS / IMPRESSION and the MeSH terms the indexers assigned (``MeSH/major``,
``MeSH/automatic``). A major term is ``Head/qualifier/...`` ("Cardiomegaly/mild", "Thickening/pleura/left");
``MESH_TO_CHEXPERT`` maps a term to CheXpert findings by its head, or by its head plus qualifiers where the head
alone is ambiguous (the key's qualifiers must all be among the term's). The mapping follows the CheXpert labeler's
categories: scars, interstitial markings and peribronchial thickening are Lung Opacity; vascular congestion and
heart failure are Edema; calcified granulomas, calcinosis, blunted angles, emphysema and pulmonary fibrosis map to
no label (CheXpert counts them under none of its 14 findings either). "normal" -> No Finding. Reports indexed
"No Indexing", or without FINDINGS and IMPRESSION text, are left out by :func:`evaluable`.
"""

from __future__ import annotations

import importlib.util
import re
import tarfile
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pandas as pd

from cxrl.data.labels import CHEXPERT_PATHOLOGIES
from cxrl.errors import DataError
from cxrl.evaluate.metrics import confusion_matrices, threshold_metrics

IU_REPORT_COUNT = 3955
NO_INDEXING = "No Indexing"
MESH_TO_CHEXPERT: dict[str, tuple[str, ...]] = {
    "normal": ("No Finding",),
    "Mediastinum": ("Enlarged Cardiomediastinum",),
    "Cardiomegaly": ("Cardiomegaly",),
    "Cardiac Shadow/enlarged": ("Cardiomegaly",),
    "Opacity": ("Lung Opacity",),
    "Airspace Disease": ("Lung Opacity",),
    "Infiltrate": ("Lung Opacity",),
    "Density": ("Lung Opacity",),
    "Cicatrix": ("Lung Opacity",),
    "Markings/interstitial": ("Lung Opacity",),
    "Lung Diseases, Interstitial": ("Lung Opacity",),
    "Thickening/bronchi": ("Lung Opacity",),
    "Nodule": ("Lung Lesion",),
    "Mass": ("Lung Lesion",),
    "Cavitation": ("Lung Lesion",),
    "Pulmonary Edema": ("Edema",),
    "Pulmonary Congestion": ("Edema",),
    "Heart Failure": ("Edema",),
    "Consolidation": ("Consolidation",),
    "Pneumonia": ("Pneumonia",),
    "Pulmonary Atelectasis": ("Atelectasis",),
    "Atelectasis": ("Atelectasis",),
    "Pneumothorax": ("Pneumothorax",),
    "Hydropneumothorax": ("Pneumothorax", "Pleural Effusion"),
    "Pleural Effusion": ("Pleural Effusion",),
    "Thickening/pleura": ("Pleural Other",),
    "Pleura": ("Pleural Other",),
    "Fractures, Bone": ("Fracture",),
    "Catheters, Indwelling": ("Support Devices",),
    "Surgical Instruments": ("Support Devices",),
    "Implanted Medical Device": ("Support Devices",),
    "Tube, Inserted": ("Support Devices",),
    "Medical Device": ("Support Devices",),
    "Stents": ("Support Devices",),
}


def iu_reports_path() -> Path:
    """``NLMCXR_reports.tgz`` inside the installed torchxrayvision wheel."""
    spec = importlib.util.find_spec("torchxrayvision")
    if spec is None or not spec.origin:
        raise DataError("the IU X-ray reports ship in torchxrayvision: pip install torchxrayvision")
    return Path(spec.origin).parent / "data" / "NLMCXR_reports.tgz"


def _report_row(name: str, root: ET.Element) -> dict:
    sections = {e.get("Label"): (e.text or "").strip() for e in root.iter("AbstractText")}
    number = re.search(r"(\d+)\.xml$", name)
    if number is None:
        raise DataError(f"{name}: expected an ecgen-radiology/<numeric id>.xml member")
    return {
        "id": int(number.group(1)),
        "findings": sections.get("FINDINGS", ""),
        "impression": sections.get("IMPRESSION", ""),
        "mesh_major": [(e.text or "").strip() for e in root.iterfind("MeSH/major")],
        "mesh_automatic": [(e.text or "").strip() for e in root.iterfind("MeSH/automatic")],
    }


def read_iu_reports(path: str | Path | None = None) -> pd.DataFrame:
    """One row per report, sorted by id: ``id``, ``findings``, ``impression``, ``mesh_major``, ``mesh_automatic``."""
    path = Path(path) if path is not None else iu_reports_path()
    rows = []
    try:
        with tarfile.open(path) as tar:
            for member in tar:
                if member.isfile() and member.name.endswith(".xml"):
                    rows.append(_report_row(member.name, ET.parse(tar.extractfile(member)).getroot()))
    except (OSError, tarfile.TarError, ET.ParseError) as e:
        raise DataError(f"{path}: cannot read the IU reports archive: {e}") from e
    if not rows:
        raise DataError(f"{path}: no ecgen-radiology/*.xml reports in the archive")
    return pd.DataFrame(rows).sort_values("id", ignore_index=True)


def mesh_findings(term: str) -> tuple[str, ...]:
    """The CheXpert findings one MeSH major term maps to (by head, or head + qualifiers); () when none."""
    head, *qualifiers = [part.strip() for part in term.split("/")]
    found: list[str] = []
    for key, findings in MESH_TO_CHEXPERT.items():
        key_head, *key_qualifiers = key.split("/")
        if key_head.lower() == head.lower() and all(q in qualifiers for q in key_qualifiers):
            found += [f for f in findings if f not in found]
    return tuple(found)


def mesh_label_matrix(mesh_major: pd.Series) -> np.ndarray:
    """Reference labels from MeSH major terms: ``(N, 14)`` float32, 1 where a term maps to the finding, else 0."""
    labels = np.zeros((len(mesh_major), len(CHEXPERT_PATHOLOGIES)), dtype=np.float32)
    column = {p: k for k, p in enumerate(CHEXPERT_PATHOLOGIES)}
    for i, terms in enumerate(mesh_major):
        for finding in (f for term in terms for f in mesh_findings(term)):
            labels[i, column[finding]] = 1.0
    return labels


def report_text(reports: pd.DataFrame) -> pd.Series:
    """FINDINGS and IMPRESSION joined, one text per report (the MeSH indexers read both)."""
    return (reports["findings"] + "\n" + reports["impression"]).str.strip()


def evaluable(reports: pd.DataFrame) -> pd.DataFrame:
    """The reports a labeler can be scored on: some FINDINGS or IMPRESSION text, and MeSH indexing."""
    indexed = reports["mesh_major"].map(lambda terms: bool(terms) and NO_INDEXING not in terms)
    return reports[indexed & (report_text(reports) != "")]


def label_agreement(predicted: np.ndarray, reference: np.ndarray, uncertain_positive: bool = False) -> pd.DataFrame:
    """Per-label precision, recall, F1 and support (reference positives) of labeler output against a reference.

    A prediction is positive where it is 1 (and -1 too with ``uncertain_positive``); 0 and NaN are negative.
    """
    positive = (predicted == 1) | (uncertain_positive & (predicted == -1))
    cm = confusion_matrices(reference, positive.astype(np.float64), np.full(reference.shape[1], 0.5))
    scores = threshold_metrics(cm)
    return pd.DataFrame(
        {
            "precision": scores["precision"],
            "recall": scores["recall"],
            "f1": scores["f1"],
            "support": cm[:, 1, :].sum(axis=1),
            "predicted": cm[:, :, 1].sum(axis=1),
        },
        index=pd.Index(CHEXPERT_PATHOLOGIES, name="label"),
    )
