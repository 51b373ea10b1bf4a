"""MIMIC-CXR-JPG 2.0.0 / 2.1.0 (Johnson et al., PhysioNet 2019): metadata, split and labeler files, and reports.

Images are ``files/p{subject[:2]}/p{subject}/s{study}/{dicom_id}.jpg``; the report of a study is
``files/p{subject[:2]}/p{subject}/s{study}.txt``. Study-level labels (CheXpert or NegBio labeler, same value coding
as CheXpert) fan out to every image of the study; studies without a label row get NaN labels. ``labeler="cxrl"``
labels each study from its report instead (:mod:`cxrl.data.text.labeler`; no label file is read). When
``mimic-cxr-2.1.0-test-set-labeled.csv`` is present its radiologist labels replace the labeler's for those
studies (column ``label_source`` says which); its finding columns are matched case- and space-insensitively, with
"Airspace Opacity" read as Lung Opacity and "No Findings" as No Finding, and any column left unmatched or finding
left without a column is listed in ``frame.attrs["skipped"]``. Every file may be plain or gzipped.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from cxrl.data.labels import CHEXPERT_PATHOLOGIES
from cxrl.data.sources._common import (
    Skipped,
    apply_uncertainty,
    coerce_labels,
    csv_lines,
    filter_views,
    find_file,
    paths_under,
    read_csv,
    require_columns,
    require_file,
)
from cxrl.data.sources.report_sections import findings_and_impression
from cxrl.errors import ConfigError, DataError

METADATA = "mimic-cxr-2.0.0-metadata.csv"
SPLIT = "mimic-cxr-2.0.0-split.csv"
TEST_LABELS = "mimic-cxr-2.1.0-test-set-labeled.csv"
PATIENTS = "patients.csv"
CXRL_LABELER = "cxrl"  # labels from the report text by cxrl's rule labeler, not from a label file
LABELERS = ("chexpert", "negbio", CXRL_LABELER)
SPLITS = {"train": "train", "validate": "valid", "test": "test"}
VIEWS = {"PA": "PA", "AP": "AP", "LATERAL": "LATERAL", "LL": "LL"}
TEST_LABEL_NAMES = {  # the radiologist test set's column names, lower-case and single-spaced, to CheXpert's
    **{p.lower(): p for p in CHEXPERT_PATHOLOGIES},
    "airspace opacity": "Lung Opacity",
    "no findings": "No Finding",
}
IDS = {"dicom_id": str, "subject_id": str, "study_id": str}


def load(
    root: Path,
    labeler: str = "chexpert",
    reports: bool = False,
    uncertainty: str | None = None,
    views: Sequence[str] | None = None,
) -> pd.DataFrame:
    """One row per image in the metadata file.

    ``labeler``: "chexpert" or "negbio" label file, or "cxrl": label each report (needs ``reports``) with
    :func:`cxrl.data.text.labeler.label_reports`. ``reports``: read each study's report into ``report_text``,
    ``findings`` and ``impression`` (missing or empty reports are listed in ``frame.attrs["skipped"]``).
    ``uncertainty``: a policy applied to the label columns (None keeps -1). ``views``: canonical views to keep.
    """
    if labeler not in LABELERS:
        raise ConfigError(f"mimic labeler {labeler!r}: expected one of {', '.join(LABELERS)}")
    if labeler == CXRL_LABELER and not reports:
        raise ConfigError(
            f"mimic labeler={CXRL_LABELER} labels each study from its report: also pass reports=true "
            "(--reader-option reports=true)"
        )
    skipped = Skipped()
    frame = read_metadata(root, skipped)
    frame = frame.merge(read_split(root), on="dicom_id", how="left")
    if labeler != CXRL_LABELER:
        frame = frame.merge(read_labels(root, labeler, skipped), on=["subject_id", "study_id"], how="left")
    frame = add_demographics(frame, root)
    frame = filter_views(frame, views)
    if reports:
        frame = add_reports(frame, skipped)
    if labeler == CXRL_LABELER:
        frame = add_report_labels(frame)
    frame = add_test_labels(frame, root, skipped)
    frame = apply_uncertainty(frame, uncertainty, CHEXPERT_PATHOLOGIES)
    return skipped.attach(frame.reset_index(drop=True), "mimic")


def read_metadata(root: Path, skipped: Skipped) -> pd.DataFrame:
    """Image rows with canonical path, ids and view; rows with malformed ids are skipped."""
    path = require_file(root, "mimic", METADATA)
    meta = read_csv(path, dtype={**IDS, "ViewPosition": str})
    require_columns(meta, path, ("dicom_id", "subject_id", "study_id", "ViewPosition"))
    malformed = ~(
        meta["subject_id"].str.fullmatch(r"\d{3,}") & meta["study_id"].str.fullmatch(r"\d+") & meta["dicom_id"].notna()
    ).fillna(False)
    skipped.add_rows(path, csv_lines(meta.index[malformed]), "malformed subject_id, study_id or dicom_id")
    meta = meta[~malformed]
    study_dir = "files/p" + meta["subject_id"].str[:2] + "/p" + meta["subject_id"] + "/s" + meta["study_id"]
    return pd.DataFrame(
        {
            "image_path": paths_under(root, study_dir + "/" + meta["dicom_id"] + ".jpg"),
            "patient_id": meta["subject_id"],
            "study_id": meta["study_id"],
            "view": meta["ViewPosition"].map(VIEWS).fillna("OTHER"),
            "report_path": paths_under(root, study_dir + ".txt"),
            "dicom_id": meta["dicom_id"],
            "subject_id": meta["subject_id"],
        }
    )


def read_split(root: Path) -> pd.DataFrame:
    """``dicom_id -> split`` from the official split file ("validate" becomes "valid"); empty when absent."""
    path = find_file(root, SPLIT)
    if path is None:
        return pd.DataFrame({"dicom_id": pd.Series(dtype=str), "split": pd.Series(dtype=str)})
    table = read_csv(path, dtype=IDS)
    require_columns(table, path, ("dicom_id", "split"))
    split = table["split"].map(SPLITS)
    unknown = split.isna() & table["split"].notna()
    if unknown.any():
        line = int(csv_lines(table.index[unknown])[0])
        value = table["split"][unknown].iloc[0]
        raise DataError(f"{path}:{line}: split {value!r} is not one of {', '.join(SPLITS)}")
    return pd.DataFrame({"dicom_id": table["dicom_id"], "split": split}).drop_duplicates("dicom_id")


def read_labels(root: Path, labeler: str, skipped: Skipped) -> pd.DataFrame:
    """Study-level labels of ``labeler`` keyed by (subject_id, study_id), with ``label_source``."""
    path = require_file(root, "mimic", f"mimic-cxr-2.0.0-{labeler}.csv")
    table = read_csv(path, dtype=IDS)
    require_columns(table, path, ("subject_id", "study_id", *CHEXPERT_PATHOLOGIES))
    table = coerce_labels(table, CHEXPERT_PATHOLOGIES, path, skipped)
    duplicate = table.duplicated(["subject_id", "study_id"])
    skipped.add_rows(path, csv_lines(table.index[duplicate]), "second label row of the same study")
    table = table[~duplicate][["subject_id", "study_id", *CHEXPERT_PATHOLOGIES]]
    return table.assign(label_source=labeler)


def add_report_labels(frame: pd.DataFrame) -> pd.DataFrame:
    """The 14 CheXpert labels of each study's FINDINGS + IMPRESSION (else whole report) by cxrl's rule labeler,
    each study labelled once; ``label_source`` "cxrl-labeler" (NaN labels and no source without report text)."""
    from cxrl.data.text.labeler import label_reports
    from cxrl.data.tokens import report_texts

    studies = frame.drop_duplicates("report_path")
    texts = report_texts(studies).dropna()
    labels = pd.DataFrame(label_reports(texts), columns=list(CHEXPERT_PATHOLOGIES))
    labels["label_source"] = "cxrl-labeler"
    labels["report_path"] = studies.loc[texts.index, "report_path"].to_numpy()
    return frame.merge(labels, on="report_path", how="left")


def add_test_labels(frame: pd.DataFrame, root: Path, skipped: Skipped) -> pd.DataFrame:
    """Replace labels of the studies in the 2.1.0 radiologist-labeled test set, when that file is present."""
    path = find_file(root, TEST_LABELS)
    if path is None:
        return frame
    table = read_csv(path, dtype={"study_id": str})
    table = table.rename(columns=lambda c: TEST_LABEL_NAMES.get(" ".join(str(c).lower().split()), c))
    require_columns(table, path, ("study_id",))
    columns = [c for c in CHEXPERT_PATHOLOGIES if c in table]
    unknown = [c for c in table if c not in (*columns, *IDS)]
    if unknown:
        skipped.add(path, 1, f"column(s) {unknown} are not CheXpert findings and are ignored")
    absent = [c for c in CHEXPERT_PATHOLOGIES if c not in table]
    if absent:
        skipped.add(path, 1, f"no column for {absent}: the labeler's values stay for these studies")
    table = coerce_labels(table, columns, path, skipped).drop_duplicates("study_id").set_index("study_id")
    hit = frame["study_id"].isin(table.index)
    out = frame.copy()
    out.loc[hit, columns] = table.loc[frame.loc[hit, "study_id"], columns].to_numpy()
    out["label_source"] = out["label_source"].astype(object)
    out.loc[hit, "label_source"] = "radiologist"
    return out


def add_demographics(frame: pd.DataFrame, root: Path) -> pd.DataFrame:
    """Sex and age from MIMIC-IV ``patients.csv`` (``anchor_age``: age in the anchor year) when present."""
    path = find_file(root, PATIENTS)
    if path is None:
        return frame.assign(sex=None, age=np.nan).drop(columns="subject_id")
    table = read_csv(path, dtype={"subject_id": str, "gender": str})
    require_columns(table, path, ("subject_id", "gender", "anchor_age"))
    table = table.drop_duplicates("subject_id").set_index("subject_id")
    subject = frame["subject_id"]
    sex = subject.map(table["gender"]).where(lambda s: s.isin(["M", "F"]))
    age = pd.to_numeric(subject.map(table["anchor_age"]), errors="coerce")
    return frame.assign(sex=sex, age=age).drop(columns="subject_id")


def add_reports(frame: pd.DataFrame, skipped: Skipped) -> pd.DataFrame:
    """``report_text``, ``findings`` and ``impression`` per image, each study's report read once."""
    texts, findings, impressions = {}, {}, {}
    for path in tqdm(frame["report_path"].unique(), desc="mimic reports", unit="study"):
        text = _read_report(Path(path), skipped)
        if text is not None:
            texts[path] = text
            findings[path], impressions[path] = findings_and_impression(text)
    key = frame["report_path"]
    return frame.assign(report_text=key.map(texts), findings=key.map(findings), impression=key.map(impressions))


def _read_report(path: Path, skipped: Skipped) -> str | None:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        skipped.add(path, None, "report file is missing")
        return None
    except OSError as err:
        skipped.add(path, None, f"report not readable ({err.strerror or err})")
        return None
    if not text.strip():
        skipped.add(path, None, "report is empty")
        return None
    return text
