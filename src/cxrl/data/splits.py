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
OFFICIAL_LEAKAGE = "official_leakage"


def patient_rank(patient_ids: Sequence[str], seed: int = 0) -> np.ndarray:
    """A uniform number in ``[0, 1)`` per patient, from a hash of ``(seed, patient_id)``."""
    digests = (hashlib.blake2b(f"{seed}\x00{p}".encode(), digest_size=8).digest() for p in patient_ids)
    return np.fromiter((int.from_bytes(d, "big") / 2**64 for d in digests), dtype=np.float64, count=len(patient_ids))


def leaking_patients(records: pd.DataFrame) -> pd.Series:
    """The sorted splits of every patient with rows in more than one split (rows without a split are ignored)."""
    pairs = records.loc[records["split"].notna(), ["patient_id", "split"]].drop_duplicates()
    splits = pairs.groupby("patient_id", sort=True)["split"].agg(sorted)
    return splits[splits.map(len) > 1]


def check_no_leakage(records: pd.DataFrame) -> None:
    """Raise :class:`LeakageError` if any patient has rows in two splits (rows without a split are ignored).

    Patients a reader lists in ``records.attrs[OFFICIAL_LEAKAGE]`` (a leak in the dataset's own official lists
    that the user chose to keep, already reported) are let through; cxrl's own splits never add to them.
    """
    accepted = set(records.attrs.get(OFFICIAL_LEAKAGE, ()))
    leaking = leaking_patients(records)
    leaking = leaking[~leaking.index.isin(accepted)]
    if len(leaking):
        examples = "; ".join(f"{pid} in {', '.join(splits)}" for pid, splits in leaking.head(5).items())
        raise LeakageError(f"{len(leaking)} patients appear in more than one split, e.g. {examples}")


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
    codes, patients = pd.factorize(out["patient_id"].astype(str))
    bounds = np.cumsum(fractions)[:-1]
    chosen = np.asarray(SPLITS, dtype=object)[np.searchsorted(bounds, patient_rank(patients, seed), side="right")]
    known = pd.Series(out["split"].to_numpy()[~missing], index=codes[~missing])
    known = known[~known.index.duplicated()]
    chosen[known.index.to_numpy()] = known.to_numpy()
    out.loc[missing, "split"] = chosen[codes[missing]]
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
    codes, patients = pd.factorize(records["patient_id"].iloc[train].astype(str))
    order = np.argsort(patient_rank(patients, seed), kind="stable")  # patient codes, seeded order
    names = [p for p in (PATHOLOGIES if pathologies is None else pathologies) if p in records.columns]
    positive = pd.DataFrame(records[names].iloc[train].to_numpy() == 1).groupby(codes).any().to_numpy()
    cover = order[_label_cover(positive[order])]
    ranked = np.concatenate([cover, order[~np.isin(order, cover)]])
    kept = np.zeros(len(patients), dtype=bool)
    kept[ranked[: max(math.ceil(fraction * len(patients)), len(cover), 1)]] = True
    return train[kept[codes]]


def _label_cover(positive: np.ndarray) -> np.ndarray:
    """Rows of ``positive`` (patients x labels, in seeded order) so each label with a positive has one, rarest
    label first, each time the first patient positive for it."""
    chosen: list[int] = []
    covered = np.zeros(positive.shape[1], dtype=bool)
    counts = positive.sum(axis=0)
    for col in np.argsort(counts, kind="stable"):
        if counts[col] and not covered[col]:
            chosen.append(int(np.argmax(positive[:, col])))
            covered |= positive[chosen[-1]]
    return np.asarray(chosen, dtype=np.int64)


def _check_fractions(fractions: Sequence[float]) -> tuple[float, float, float]:
    values = tuple(float(f) for f in fractions)
    if len(values) != 3 or min(values) < 0 or not math.isclose(sum(values), 1.0, abs_tol=1e-6):
        raise ConfigError(f"split fractions must be three non-negative numbers summing to 1, found {fractions}")
    return values
