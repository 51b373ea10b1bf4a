"""CheXpert (Irvin et al., AAAI 2019): ``train.csv``, ``valid.csv`` and, when present, ``test_labels.csv``.

Paths in the CSVs carry the archive folder (``CheXpert-v1.0-small/`` or ``CheXpert-v1.0/``), which is stripped
and replaced by ``root``. Labels stay as given (1, 0, -1 uncertain, NaN not mentioned) unless ``uncertainty``
names a policy. "No Finding" keeps CheXpert's convention: 1 only when no pathology is positive or uncertain,
while "Support Devices" may be 1 alongside it; :func:`no_finding` applies that rule to datasets without such a
column. All views are kept unless ``views`` says otherwise.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from cxrl.data.labels import CHEXPERT_PATHOLOGIES, PATHOLOGIES
from cxrl.data.sources._common import (
    Skipped,
    apply_uncertainty,
    coerce_labels,
    csv_lines,
    extract,
    filter_views,
    find_file,
    paths_under,
    read_csv,
    require_columns,
)
from cxrl.errors import DataError

SPLIT_FILES: dict[str, str] = {"train": "train.csv", "valid": "valid.csv", "test": "test_labels.csv"}
ARCHIVE_PREFIX = r"^CheXpert-v1\.0(?:-small)?/"
PATH_PATTERN = r"(?P<patient>patient\d+)/(?P<study>study\d+)/(?P<file>[^/]+)$"
SEX = {"Male": "M", "Female": "F"}
FRONTAL_VIEWS = {"AP": "AP", "PA": "PA", "LL": "LL"}
FINDINGS: tuple[str, ...] = tuple(p for p in PATHOLOGIES if p not in ("No Finding", "Support Devices"))


def load(root: Path, uncertainty: str | None = None, views: Sequence[str] | None = None) -> pd.DataFrame:
    """All images listed in the split files under ``root``; rows with a malformed path or label are skipped
    and listed in ``frame.attrs["skipped"]``.

    ``uncertainty``: a policy of :func:`cxrl.data.labels.apply_uncertainty_policy` (None keeps -1).
    ``views``: keep only these canonical views (None keeps all, laterals included).
    """
    files = {split: find_file(root, name) for split, name in SPLIT_FILES.items()}
    if files["train"] is None and files["valid"] is None:
        raise DataError(f"chexpert: neither train.csv nor valid.csv is in {root}")
    skipped = Skipped()
    parts = [read_split(path, split, root, skipped) for split, path in files.items() if path is not None]
    frame = pd.concat(parts, ignore_index=True)
    frame = apply_uncertainty(filter_views(frame, views), uncertainty, CHEXPERT_PATHOLOGIES)
    return skipped.attach(frame.reset_index(drop=True), "chexpert")


def read_split(path: Path, split: str, root: Path, skipped: Skipped) -> pd.DataFrame:
    """One CheXpert CSV as canonical records of ``split``."""
    raw = read_csv(path, dtype={"Path": str, "Sex": str, "Frontal/Lateral": str, "AP/PA": str})
    require_columns(raw, path, ("Path", *CHEXPERT_PATHOLOGIES))
    relative = raw["Path"].str.replace(ARCHIVE_PREFIX, "", regex=True)
    parts = extract(relative, PATH_PATTERN)
    malformed = parts["patient"].isna()
    skipped.add_rows(
        path,
        csv_lines(raw.index[malformed]),
        [f"Path {p!r} does not look like .../patientN/studyN/viewN_frontal.jpg" for p in raw["Path"][malformed]],
    )
    raw = coerce_labels(raw[~malformed], CHEXPERT_PATHOLOGIES, path, skipped)
    parts, relative = parts.loc[raw.index], relative.loc[raw.index]
    records = pd.DataFrame(
        {
            "image_path": paths_under(root, relative),
            "patient_id": parts["patient"],
            "study_id": parts["patient"] + "/" + parts["study"],
            "view": chexpert_views(raw, parts["file"]),
            "sex": raw["Sex"].map(SEX) if "Sex" in raw else None,
            "age": _ages(raw),
            "split": split,
        },
        index=raw.index,
    )
    return pd.concat([records, raw[list(CHEXPERT_PATHOLOGIES)]], axis=1)


def chexpert_views(raw: pd.DataFrame, file_names: pd.Series) -> np.ndarray:
    """Lateral -> LATERAL; frontal -> the ``AP/PA`` value (AP, PA, LL), OTHER for RL or blank.

    Where ``Frontal/Lateral`` is absent or blank (``test_labels.csv``), the side comes from the file name.
    """
    lateral = file_names.str.contains("lateral").to_numpy(dtype=bool)
    if "Frontal/Lateral" in raw:
        side = raw["Frontal/Lateral"]
        lateral = np.where(side.isna(), lateral, (side == "Lateral").to_numpy(dtype=bool))
    frontal = raw["AP/PA"].map(FRONTAL_VIEWS) if "AP/PA" in raw else pd.Series(np.nan, index=raw.index)
    return np.where(lateral, "LATERAL", frontal.fillna("OTHER").to_numpy(dtype=object))


def _ages(raw: pd.DataFrame) -> pd.Series:
    """Age in years; CheXpert writes 0 for unknown, which becomes NaN."""
    if "Age" not in raw:
        return pd.Series(np.nan, index=raw.index)
    age = pd.to_numeric(raw["Age"], errors="coerce")
    return age.where(age > 0)


def no_finding(labels: pd.DataFrame, findings: Sequence[str] = FINDINGS) -> pd.Series:
    """The CheXpert labeler's "No Finding" rule for datasets that have no such column (Irvin et al. 2019, Sec. 3).

    1 when none of ``findings`` is positive or uncertain, 0 when one is positive, NaN when the only signal is
    uncertain (CheXpert leaves No Finding blank there). "Support Devices" is not a finding: CheXpert marks
    studies with devices and No Finding together (8,808 train images), so do not pass it in ``findings``.
    Findings missing from ``labels`` are ignored.
    """
    present = [f for f in findings if f in labels]
    values = labels[present].to_numpy(dtype=np.float32)
    result = np.where((values == 1).any(axis=1), 0.0, np.where((values == -1).any(axis=1), np.nan, 1.0))
    return pd.Series(result.astype(np.float32), index=labels.index, name="No Finding")
