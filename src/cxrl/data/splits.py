"""Patient-level splits and nested label fractions, deterministic from a seed.

Every assignment is a function of ``(seed, patient_id)`` alone, so adding patients never moves the
others, and no patient ever straddles two splits (:func:`check_no_leakage` guards it).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from cxrl.data.labels import PATHOLOGIES
from cxrl.data.records import SPLITS
from cxrl.errors import ConfigError, DataError, LeakageError

UNKNOWN_PATIENT = ("", "None", "nan", "NaN", "<NA>")


def patient_rank(patient_ids: Sequence[str], seed: int = 0) -> np.ndarray:
    """A uniform number in ``[0, 1)`` per patient, from a hash of ``(seed, patient_id)``."""
    digests = (hashlib.blake2b(f"{seed}\x00{p}".encode(), digest_size=8).digest() for p in patient_ids)
    return np.fromiter((int.from_bytes(d, "big") / 2**64 for d in digests), dtype=np.float64, count=len(patient_ids))


def check_no_leakage(records: pd.DataFrame) -> None:
    """Raise :class:`LeakageError` if any patient has rows in two splits (rows without a split are ignored)."""
    assigned = records.loc[records["split"].notna(), ["patient_id", "split"]]
    per_patient = assigned.groupby("patient_id", sort=True)["split"].unique()
    leaks = per_patient[per_patient.map(len) > 1]
    if len(leaks):
        shown = "; ".join(f"{pid} in {', '.join(sorted(s))}" for pid, s in leaks.head(5).items())
        raise LeakageError(f"{len(leaks)} patients appear in more than one split, e.g. {shown}")


def patient_split(records: pd.DataFrame, seed: int = 0, fractions: Sequence[float] = (0.8, 0.1, 0.1)) -> pd.DataFrame:
    """Fill missing ``split`` values (train/valid/test by ``fractions``) per patient; returns a new frame.

    Rows that already have a split keep it; a patient's unassigned rows join the split its other rows are in.
    Otherwise the patient's :func:`patient_rank` picks the split, so the assignment is stable as data grows.
    """
    fractions = _check_fractions(fractions)
    out = records.copy()
    missing = out["split"].isna().to_numpy()
    if not missing.any():
        return out
    check_no_leakage(out)
    anonymous = out.loc[missing, "patient_id"].isin(UNKNOWN_PATIENT) | out.loc[missing, "patient_id"].isna()
    if anonymous.any():
        raise DataError(
            f"{int(anonymous.sum())} rows without a split also lack a patient_id (first: row "
            f"{anonymous.idxmax()}); a patient-level split is impossible"
        )
    known = out.loc[~missing].groupby("patient_id")["split"].first()
    patients = pd.unique(out.loc[missing, "patient_id"])
    bounds = np.cumsum(fractions)[:-1]
    by_hash = np.asarray(SPLITS, dtype=object)[np.searchsorted(bounds, patient_rank(patients, seed), side="right")]
    chosen = pd.Series(by_hash, index=patients)
    chosen.update(known[known.index.isin(patients)])
    out.loc[missing, "split"] = out.loc[missing, "patient_id"].map(chosen).to_numpy()
    return out


def official_or_patient_split(records: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """Keep the dataset's official split where it has one, fill the rest by :func:`patient_split`, check leakage."""
    out = patient_split(records, seed=seed)
    check_no_leakage(out)
    return out


def label_fraction(
    records: pd.DataFrame, fraction: float, seed: int = 0, pathologies: Sequence[str] | None = None
) -> np.ndarray:
    """Sorted positional indices of the ``train`` rows kept when labelling only ``fraction`` of the patients.

    One seeded patient order is cut at ``ceil(fraction * patients)``, so fractions are nested
    (1% ⊂ 10% ⊂ … ⊂ 100%) and patient-level. The order starts with a small cover of the labels: for each
    label in ``pathologies`` (default: all canonical ones present) with a positive train patient, rarest
    first, the first such patient in seeded order unless an earlier pick already covers it. That cover is
    always kept, so every label with a positive patient appears even at 1%; at least one patient is kept.
    """
    if not 0 < fraction <= 1:
        raise ConfigError(f"label fraction must be in (0, 1], found {fraction}")
    train = np.flatnonzero((records["split"] == "train").to_numpy())
    if len(train) == 0:
        raise DataError("no train rows to take a label fraction of")
    patient_of_row = records["patient_id"].iloc[train].astype(str).to_numpy()
    patients = np.unique(patient_of_row)
    order = patients[np.argsort(patient_rank(patients, seed), kind="stable")]
    names = [p for p in (pathologies or PATHOLOGIES) if p in records.columns]
    positives = (records[names].iloc[train] == 1).groupby(patient_of_row).any().reindex(order)
    cover = _label_cover(positives)
    ranked = np.concatenate([cover, order[~np.isin(order, cover)]])
    keep = ranked[: max(math.ceil(fraction * len(order)), len(cover), 1)]
    return train[np.isin(patient_of_row, keep)]


def _label_cover(positives: pd.DataFrame) -> np.ndarray:
    """Patients (rows of ``positives``, in seeded order) so each label with a positive has one, rarest first."""
    chosen: list[str] = []
    covered = np.zeros(positives.shape[1], dtype=bool)
    counts = positives.sum(axis=0).to_numpy()
    for col in np.argsort(counts, kind="stable"):
        if counts[col] == 0 or covered[col]:
            continue
        patient = positives.index[positives.iloc[:, col].to_numpy()][0]
        chosen.append(patient)
        covered |= positives.loc[patient].to_numpy()
    return np.asarray(chosen, dtype=object)


def _check_fractions(fractions: Sequence[float]) -> tuple[float, float, float]:
    values = tuple(float(f) for f in fractions)
    if len(values) != 3 or min(values) < 0 or not math.isclose(sum(values), 1.0, abs_tol=1e-6):
        raise ConfigError(f"split fractions must be three non-negative numbers summing to 1, found {fractions}")
    return values
