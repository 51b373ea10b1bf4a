"""The modality gap of an image-text model (Liang et al. 2022, "Mind the Gap", NeurIPS): how far apart the two
embedding clouds sit on the unit sphere, and how linearly separable the two modalities are.

* ``centroid_distance`` = ``|| mean_i v_i - mean_i t_i ||`` on L2-normalized embeddings (the norm of their gap vector).
* ``separability_auroc`` / ``separability_accuracy``: an L2 logistic regression (scikit-learn, ``C=1``) told
  image from text on the pairs of one seeded half and scored on the other half; an image and its report always
  fall in the same half, so a pair's content cannot leak across. 0.5 means the modalities are mixed.
"""

from __future__ import annotations

import numpy as np
from sklearn.linear_model import LogisticRegression

from cxrl.errors import CxrlError
from cxrl.evaluate.embeddings import unit_rows
from cxrl.evaluate.metrics import auroc

MIN_PAIRS = 4


def centroid_distance(images: np.ndarray, texts: np.ndarray) -> float:
    """Euclidean distance between the centroids of unit-row ``images`` and ``texts``."""
    return float(np.linalg.norm(images.mean(0) - texts.mean(0)))


def modality_separability(images: np.ndarray, texts: np.ndarray, seed: int = 0) -> dict[str, float]:
    """Held-out AUROC and accuracy (threshold 0.5) of a logistic regression telling images (1) from texts (0)."""
    pairs = np.random.default_rng(seed).permutation(len(images))
    halves = pairs[:len(pairs) // 2], pairs[len(pairs) // 2:]
    x, y = [], []
    for half in halves:
        x.append(np.concatenate([images[half], texts[half]]))
        y.append(np.r_[np.ones(len(half)), np.zeros(len(half))])
    model = LogisticRegression(C=1.0, max_iter=1000).fit(x[0], y[0])
    probability = model.predict_proba(x[1])[:, 1]
    return {"separability_auroc": float(auroc(y[1][:, None], probability[:, None])[0]),
            "separability_accuracy": float(np.mean((probability >= 0.5) == (y[1] == 1)))}


def modality_gap(image_embeddings, text_embeddings, seed: int = 0) -> dict[str, float | int]:
    """``centroid_distance``, ``separability_auroc``, ``separability_accuracy`` and ``n_pairs`` of paired
    embeddings ``(N, D)`` (arrays or tensors; row ``i`` of each is pair ``i``)."""
    images = unit_rows(image_embeddings, "image embeddings")
    texts = unit_rows(text_embeddings, "text embeddings")
    if images.shape != texts.shape:
        raise CxrlError(f"modality gap: image embeddings {images.shape} and text embeddings {texts.shape} must match")
    if len(images) < MIN_PAIRS:
        raise CxrlError(f"modality gap: needs at least {MIN_PAIRS} image-text pairs, found {len(images)}")
    return {"centroid_distance": centroid_distance(images, texts), **modality_separability(images, texts, seed),
            "n_pairs": len(images)}
