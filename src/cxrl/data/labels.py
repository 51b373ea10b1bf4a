"""The canonical pathology vocabulary and the CheXpert uncertainty policies.

Label values in records: 1 positive, 0 negative, -1 uncertain, NaN not mentioned.
Policies (Irvin et al., CheXpert, AAAI 2019, Sec. 4.1; label smoothing: Pham et al. 2021, LSR):
ignore (-1 -> NaN, masked from the loss), zeros (-1 -> 0), ones (-1 -> 1), multiclass (-1 kept as
a third class), smooth_zeros / smooth_ones (-1 -> U(a, b), seeded per entry).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from cxrl.errors import ConfigError

CHEXPERT_PATHOLOGIES: tuple[str, ...] = (
    "No Finding",
    "Enlarged Cardiomediastinum",
    "Cardiomegaly",
    "Lung Opacity",
    "Lung Lesion",
    "Edema",
    "Consolidation",
    "Pneumonia",
    "Atelectasis",
    "Pneumothorax",
    "Pleural Effusion",
    "Pleural Other",
    "Fracture",
    "Support Devices",
)
NIH_ONLY_PATHOLOGIES: tuple[str, ...] = (
    "Infiltration",
    "Mass",
    "Nodule",
    "Emphysema",
    "Fibrosis",
    "Pleural Thickening",
    "Hernia",
)
PATHOLOGIES: tuple[str, ...] = CHEXPERT_PATHOLOGIES + NIH_ONLY_PATHOLOGIES
UNCERTAIN = -1.0
UNCERTAIN_CLASS = 2  # the class index the multiclass policy gives -1 (0 negative, 1 positive)
POLICIES = ("ignore", "zeros", "ones", "multiclass", "smooth_zeros", "smooth_ones")
SMOOTH_RANGES = {"smooth_zeros": (0.0, 0.3), "smooth_ones": (0.55, 0.85)}


def apply_uncertainty_policy(
    labels: np.ndarray,
    policy: str = "ignore",
    *,
    blank: str = "nan",
    seed: int = 0,
) -> np.ndarray:
    """Map a ``(N, K)`` array of 1/0/-1/NaN to training targets (float32, NaN = masked).

    ``multiclass`` returns class indices as float: 0 negative, 1 positive, 2 uncertain, NaN masked.
    ``blank`` says what "not mentioned" (NaN) becomes: ``"nan"`` (masked) or ``"zero"``.
    """
    if policy not in POLICIES:
        raise ConfigError(f"uncertainty policy {policy!r}: expected one of {', '.join(POLICIES)}")
    if blank not in ("nan", "zero"):
        raise ConfigError(f"blank policy {blank!r}: expected 'nan' or 'zero'")
    y = np.array(labels, dtype=np.float32, copy=True)
    unc = y == UNCERTAIN
    if blank == "zero":
        y[np.isnan(y)] = 0.0
    if policy == "ignore":
        y[unc] = np.nan
    elif policy == "zeros":
        y[unc] = 0.0
    elif policy == "ones":
        y[unc] = 1.0
    elif policy == "multiclass":
        y[unc] = UNCERTAIN_CLASS
    else:
        lo, hi = SMOOTH_RANGES[policy]
        y[unc] = np.random.default_rng(seed).uniform(lo, hi, size=int(unc.sum())).astype(np.float32)
    return y


def label_matrix(records, pathologies: Sequence[str] = PATHOLOGIES) -> np.ndarray:
    """The ``(N, K)`` float32 label matrix of a records table, missing columns as NaN."""
    cols = [
        records[p].to_numpy(dtype=np.float32) if p in records else np.full(len(records), np.nan, np.float32)
        for p in pathologies
    ]
    return np.stack(cols, axis=1) if cols else np.zeros((len(records), 0), np.float32)


def present_pathologies(records, min_positive: int = 1) -> list[str]:
    """Canonical pathologies with at least ``min_positive`` positive rows in ``records``."""
    return [p for p in PATHOLOGIES if p in records and int((records[p] == 1).sum()) >= min_positive]
