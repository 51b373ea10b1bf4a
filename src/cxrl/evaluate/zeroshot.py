"""Zero-shot classification from image-text similarity: CheXzero's positive-vs-negative prompt softmax and the
CheXpert 5x200-style five-way accuracy.

CheXzero (Tiu et al. 2022, "Expert-level detection of pathologies from unannotated chest X-ray images", Methods):
a finding's prompt ensemble is the mean of its L2-normalized prompt embeddings, re-normalized (Radford et al. 2021,
section 3.1.4); the score of image ``v`` for finding ``c`` is ``exp(s+) / (exp(s+) + exp(s-))`` with ``s+`` / ``s-``
the cosine similarities of ``v`` with the positive / negative ensembles. Scores are ``(N, K)``, one column per
finding, so :func:`cxrl.evaluate.metrics.evaluate_scores` rates them exactly like the linear probe's.
The text side is any ``encode_text(list[str]) -> (n, D)`` (array or tensor), e.g. a projected text encoder.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np

from cxrl.errors import ConfigError, CxrlError
from cxrl.evaluate.embeddings import unit_rows

EncodeText = Callable[[list[str]], object]
PromptPair = tuple[tuple[str, ...], tuple[str, ...]]  # (positive prompts, negative prompts)
COMPETITION_FINDINGS: tuple[str, ...] = ("Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Pleural Effusion")

# MIMIC-CXR / phantom report phrasing (cxrl.data.phantom.report): positives as the findings section states them,
# negatives as its grouped negations and the usual normal-study sentences.
DEFAULT_PROMPTS: dict[str, PromptPair] = {
    "No Finding": (("No acute cardiopulmonary process.", "The lungs are clear.", "Normal chest radiograph."),
                   ("Acute cardiopulmonary process.", "Abnormal chest radiograph.", "There are new opacities.")),
    "Enlarged Cardiomediastinum": (("Mediastinal widening.", "There is widened mediastinum.",
                                    "Enlarged cardiomediastinal silhouette."),
                                   ("No mediastinal widening.", "Normal cardiomediastinal silhouette.",
                                    "The mediastinal contours are normal.")),
    "Cardiomegaly": (("Cardiomegaly.", "The heart size is enlarged.", "Enlarged cardiac silhouette."),
                     ("No cardiomegaly.", "The heart size is normal.", "Normal cardiac silhouette.")),
    "Lung Opacity": (("Lung opacity.", "There are bilateral opacities.", "Opacification of the lower lobe."),
                     ("No opacity.", "The lungs are clear.", "No focal opacity.")),
    "Lung Lesion": (("A lung nodule is present.", "Lung mass.", "Pulmonary lesion."),
                    ("No nodule.", "No lung mass.", "No pulmonary lesion.")),
    "Edema": (("Pulmonary edema.", "There is interstitial edema.", "Moderate pulmonary edema."),
              ("No pulmonary edema.", "There is no edema.", "No pulmonary vascular congestion.")),
    "Consolidation": (("Consolidation.", "Dense lower lobe consolidation.", "There is focal consolidation."),
                      ("No consolidation.", "There is no consolidation.", "No focal consolidation.")),
    "Pneumonia": (("Pneumonia.", "Findings consistent with pneumonia.", "Lower lobe pneumonia."),
                  ("No pneumonia.", "There is no pneumonia.", "No evidence of pneumonia.")),
    "Atelectasis": (("Atelectasis.", "Basilar atelectasis.", "Plate-like atelectasis."),
                    ("No atelectasis.", "There is no atelectasis.", "No basilar atelectasis.")),
    "Pneumothorax": (("Pneumothorax.", "There is a pneumothorax.", "Apical pneumothorax."),
                     ("No pneumothorax.", "There is no pneumothorax.", "No pleural effusion or pneumothorax.")),
    "Pleural Effusion": (("Pleural effusion.", "There is a pleural effusion.", "Bilateral pleural effusions."),
                         ("No pleural effusion.", "There is no pleural effusion.", "No effusion.")),
    "Pleural Other": (("Pleural thickening.", "Calcified pleural plaque.", "Pleural plaque."),
                      ("No pleural thickening.", "No pleural plaque.", "No pleural abnormality.")),
    "Fracture": (("Rib fracture.", "Healing posterior rib fracture.", "There is a fracture."),
                 ("No fracture.", "There is no fracture.", "No acute osseous abnormality.")),
    "Support Devices": (("Endotracheal tube terminates above the carina.", "Central venous catheter.",
                         "Nasogastric tube courses below the diaphragm."),
                        ("No tube or catheter.", "There is no tube or catheter.", "No support devices.")),
}


def ensemble_embeddings(encode_text: EncodeText, prompts: Sequence[str], name: str) -> np.ndarray:
    """The re-normalized mean of the unit embeddings of ``prompts`` ``(D,)`` (one call to ``encode_text``)."""
    texts = list(prompts)
    if not texts:
        raise ConfigError(f"zero-shot prompts of {name!r}: the list is empty")
    embedded = unit_rows(encode_text(texts), f"encode_text output for {name!r}")
    if len(embedded) != len(texts):
        raise CxrlError(f"encode_text returned {len(embedded)} rows for the {len(texts)} prompts of {name!r}")
    return unit_rows(embedded.mean(0, keepdims=True), f"prompt ensemble of {name!r}")[0]


def class_embeddings(
    encode_text: EncodeText, pathologies: Sequence[str], prompts: Mapping[str, PromptPair] = DEFAULT_PROMPTS
) -> np.ndarray:
    """``(K, 2, D)``: per pathology, its positive (index 0) and negative (index 1) prompt ensembles."""
    missing = [p for p in pathologies if p not in prompts]
    if missing:
        raise ConfigError(f"zero-shot: no prompts for {missing}; prompts exist for {sorted(prompts)}")
    return np.stack([np.stack([ensemble_embeddings(encode_text, prompts[p][0], f"{p} (positive)"),
                               ensemble_embeddings(encode_text, prompts[p][1], f"{p} (negative)")])
                     for p in pathologies])


def zeroshot_scores(image_embeddings, classes: np.ndarray) -> np.ndarray:
    """``(N, K)`` probabilities ``softmax(s+, s-)[0]`` of images ``(N, D)`` against :func:`class_embeddings`."""
    images = unit_rows(image_embeddings, "image embeddings")
    if classes.ndim != 3 or classes.shape[1] != 2 or classes.shape[2] != images.shape[1]:
        raise CxrlError(f"zero-shot: class embeddings {classes.shape} do not fit (K, 2, {images.shape[1]})")
    sims = np.einsum("nd,kpd->nkp", images, classes)
    return 1.0 / (1.0 + np.exp(sims[..., 1] - sims[..., 0]))


def five_way_accuracy(
    image_embeddings, labels: np.ndarray, encode_text: EncodeText,
    prompts: Mapping[str, PromptPair] = DEFAULT_PROMPTS, findings: Sequence[str] = COMPETITION_FINDINGS,
) -> dict[str, float | int]:
    """CheXpert 5x200-style accuracy (Huang et al. 2021, GLoRIA): on the images with exactly one of
    ``findings`` positive (``labels`` ``(N, len(findings))``, 1 positive; 0, -1 and NaN are not), the share whose
    most similar positive ensemble is that finding's. ``accuracy`` is NaN when no image qualifies."""
    labels = np.asarray(labels, dtype=np.float64)
    if labels.shape != (len(image_embeddings), len(findings)):
        raise CxrlError(f"five-way accuracy: labels {labels.shape} must be (N images, {len(findings)} findings)")
    positive = labels == 1
    single = positive.sum(1) == 1
    if not single.any():
        return {"accuracy": float("nan"), "n_images": 0}
    positives = class_embeddings(encode_text, findings, prompts)[:, 0]
    predicted = (unit_rows(image_embeddings, "image embeddings")[single] @ positives.T).argmax(1)
    return {"accuracy": float((predicted == positive[single].argmax(1)).mean()), "n_images": int(single.sum())}
