"""COVIDx CXR (Wang et al., COVID-Net, 2020): every list release, Kaggle's or the COVID-Net repository's.

Kaggle releases ship ``train.txt``, ``test.txt`` and optional ``val.txt`` (images in ``train/``, ``test/``,
``val/``); the repository ships ``labels/train_COVIDx<version>.txt`` and ``test_COVIDx<version>.txt`` (images in
``train/`` and ``test/``; the lists may also sit in ``root`` itself). Each line is read from the right:
``<patient> <file> <label> [<source>]``. The patient id may hold spaces (``COVID 1`` in v7A-v8B's sirm lines)
and the source is absent in v1-v2 and in v3-v5's RSNA test lines; v9's misspelt source ``rnsa`` is read as
``rsna``. Labels are ``positive`` / ``negative`` (binary releases) or ``normal`` / ``pneumonia`` / ``COVID-19``
(3-class releases). ``covid`` is 1/0; "Pneumonia" is 1 for pneumonia or COVID-19, 0 for normal, NaN in binary
releases (a COVID-negative image may still show pneumonia). Patient ids are strings prefixed with the source
(``"cohen/5"``), because sources number their patients independently (bare when a line names no source). Lines
that do not parse are skipped and listed in ``frame.attrs["skipped"]``.

Leakage: the official v6 and v7B lists put one patient (``actmed/ANON191``) in both train and test. ``leakage``
chooses: ``"drop"`` (default) removes such a patient's rows from the earlier split (train before valid before
test), ``"keep"`` keeps them and lists the patients in ``frame.attrs["official_leakage"]``; both log a warning
naming the patients. COVIDx also includes RSNA (hence NIH) images.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np
import pandas as pd

from cxrl.data.records import SPLITS
from cxrl.data.sources._common import Skipped, find_file, load_split_files, paths_under, read_text
from cxrl.data.splits import OFFICIAL_LEAKAGE, leaking_patients
from cxrl.errors import ConfigError

log = logging.getLogger(__name__)

KAGGLE_FILES = {"train.txt": "train", "val.txt": "valid", "test.txt": "test"}
REPO_LIST = re.compile(r"(?P<split>train|test)_COVIDx(?P<version>\d*[AB]?)\.txt")  # v1 has no number
REPO_FOLDERS = ("labels", ".")
COVID = {"positive": 1.0, "negative": 0.0, "covid-19": 1.0, "pneumonia": 0.0, "normal": 0.0}
PNEUMONIA = {"positive": np.nan, "negative": np.nan, "covid-19": 1.0, "pneumonia": 1.0, "normal": 0.0}
SOURCE_SPELLINGS = {"rnsa": "rsna"}
LEAKAGE = ("drop", "keep")


def load(root: Path, version: str | None = None, leakage: str = "drop") -> pd.DataFrame:
    """One record per listed line. ``version`` picks a repository release (``9B``) when ``root`` holds several;
    ``leakage`` is ``"drop"`` or ``"keep"`` (see the module docstring)."""
    if leakage not in LEAKAGE:
        raise ConfigError(f"covidx leakage {leakage!r}: expected one of {', '.join(LEAKAGE)}")
    files, folders = list_files(root, version)
    frame = load_split_files(root, "covidx", files, read_list, folders)
    return resolve_leakage(frame, leakage, {split: (root / name).as_posix() for name, split in files.items()})


def list_files(root: Path, version: str | None) -> tuple[dict[str, str], dict[str, str]]:
    """The list files to read (name -> split) and their image folders (name -> folder under ``root``)."""
    repo: dict[str, dict[str, str]] = {}
    for folder in REPO_FOLDERS:
        for path in sorted((root / folder).glob("*_COVIDx*.txt*")):
            match = REPO_LIST.fullmatch(path.name.removesuffix(".gz").removesuffix(".zip"))
            if match:
                name = (Path(folder) / match.group(0)).as_posix()
                repo.setdefault(match["version"] or "1", {}).setdefault(name, match["split"])
    if version is None and (not repo or find_file(root, *KAGGLE_FILES) is not None):
        return KAGGLE_FILES, {}
    if version is None and len(repo) > 1:
        raise ConfigError(f"covidx: {root} holds list versions {', '.join(sorted(repo))}; choose one with version=")
    chosen = version if version is not None else next(iter(repo))
    if chosen not in repo:
        raise ConfigError(f"covidx version {chosen!r}: no train_/test_COVIDx{chosen}.txt in {root} or its labels/")
    files = dict(sorted(repo[chosen].items(), key=lambda item: SPLITS.index(item[1])))
    return files, dict(files)  # the repository's images sit in train/ and test/, named as its splits


def read_list(path: Path, split: str, image_dir: Path, skipped: Skipped) -> pd.DataFrame:
    """The records of one COVIDx list file."""
    rows = []
    for number, line in enumerate(read_text(path).splitlines(), start=1):
        fields = line.split()
        if fields:
            row = parse_line(fields)
            if isinstance(row, str):
                skipped.add(path, number, row)
            else:
                rows.append(row)
    table = pd.DataFrame(rows, columns=["patient", "file", "label_raw", "source"], dtype=object)
    label = table["label_raw"].str.lower()
    scope = table["source"].fillna("").str.cat(table["patient"], sep="/").str.lstrip("/")
    return pd.DataFrame(
        {
            "image_path": paths_under(image_dir, table["file"].astype(str)),
            "patient_id": scope,
            "study_id": table["file"],
            "split": split,
            "Pneumonia": label.map(PNEUMONIA).astype("float32"),
            "covid": label.map(COVID).astype("float32"),
            "label_raw": table["label_raw"],
            "source": table["source"],
        }
    )


def parse_line(fields: list[str]) -> list[str | None] | str:
    """``[patient, file, label, source or None]`` of one line's fields, read from the right; else the reason."""
    has_source = fields[-1].lower() not in COVID
    label_at = -2 if has_source else -1
    if len(fields) < 2 - label_at:
        return f"expected <patient> <file> <label> [<source>], got {len(fields)} field(s)"
    label = fields[label_at]
    if label.lower() not in COVID:
        return f"label {label!r} is not one of {', '.join(COVID)}"
    source = SOURCE_SPELLINGS.get(fields[-1], fields[-1]) if has_source else None
    return [" ".join(fields[: label_at - 1]), fields[label_at - 1], label, source]


def resolve_leakage(frame: pd.DataFrame, leakage: str, files: dict[str, str]) -> pd.DataFrame:
    """Drop or keep (and report) the patients the official lists put in more than one split."""
    leaking = leaking_patients(frame)
    if leaking.empty:
        return frame
    order = {split: i for i, split in enumerate(SPLITS)}
    if leakage == "keep":
        frame.attrs[OFFICIAL_LEAKAGE] = leaking.index.tolist()
        action = "kept in every split (leakage=keep): scores on their test images are optimistic"
    else:
        last = leaking.map(lambda splits: max(splits, key=order.__getitem__))
        drop = frame["patient_id"].isin(leaking.index) & (frame["split"] != frame["patient_id"].map(last))
        for (patient, split), rows in frame[drop].groupby(["patient_id", "split"]).size().items():
            frame.attrs["skipped"].append(
                f"{files[split]}: patient {patient} is also in {last[patient]} in the official lists; "
                f"its {rows} {split} row(s) dropped (leakage=drop)"
            )
        frame = frame[~drop].reset_index(drop=True)
        action = "dropped from all but their last split (leakage=drop; leakage=keep keeps them)"
    shown = "; ".join(f"{pid} in {', '.join(splits)}" for pid, splits in leaking.items())
    log.warning("covidx: the official lists leak %d patient(s) across splits (%s); %s", len(leaking), shown, action)
    return frame
