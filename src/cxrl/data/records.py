"""The canonical record table: one row per image, the same columns for every dataset.

Columns: ``image_path`` (absolute), ``patient_id``, ``study_id``, ``view`` (PA, AP, LATERAL, LL, OTHER),
``sex`` (M, F or None), ``age`` (float, NaN unknown), ``split`` (train, valid, test), ``dataset``, then one
float column per canonical pathology (1, 0, -1 uncertain, NaN not mentioned). Datasets may add
``report_path``, ``report_text``, ``boxes`` (JSON list of {label, x, y, w, h} in source pixels),
``mask_rle`` and ``mask_format``; a phantom's records also ``masks`` (JSON ``{finding: RLE}``), joined from its
truth (:mod:`cxrl.data.sources.phantom_truth`). :mod:`cxrl.data.dense` maps boxes and masks into cache pixels.
"""

from __future__ import annotations

import importlib
import inspect
import logging
import typing
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from cxrl.config import coerce
from cxrl.data.labels import PATHOLOGIES
from cxrl.data.sources.phantom_truth import attach_phantom_truth
from cxrl.errors import ConfigError, DataError

log = logging.getLogger(__name__)

BASE_COLUMNS: tuple[str, ...] = (
    "image_path",
    "patient_id",
    "study_id",
    "view",
    "sex",
    "age",
    "split",
    "dataset",
)
VIEWS: tuple[str, ...] = ("PA", "AP", "LATERAL", "LL", "OTHER")
SPLITS: tuple[str, ...] = ("train", "valid", "test")
DATASETS: dict[str, str] = {
    "chexpert": "cxrl.data.sources.chexpert",
    "mimic": "cxrl.data.sources.mimic",
    "nih": "cxrl.data.sources.nih",
    "rsna": "cxrl.data.sources.rsna",
    "siim": "cxrl.data.sources.siim",
    "covidx": "cxrl.data.sources.covidx",
    "object-cxr": "cxrl.data.sources.object_cxr",
    "vindr": "cxrl.data.sources.vindr",
}


def load_records(dataset: str, root: str | Path, **options: Any) -> pd.DataFrame:
    """Read ``dataset`` as distributed under ``root`` into the canonical record table.

    Never opens image files. ``options`` go to the dataset's reader (e.g. ``uncertainty=``).
    """
    if dataset not in DATASETS:
        raise DataError(f"unknown dataset {dataset!r}; expected one of {', '.join(DATASETS)}")
    root = Path(root).expanduser().resolve()
    if not root.is_dir():
        raise DataError(f"{dataset} root {root} is not a folder")
    reader = importlib.import_module(DATASETS[dataset])
    reader_options(dataset, options)
    return finalize_records(attach_phantom_truth(reader.load(root, **options), root), dataset)


def reader_options(dataset: str, options: Mapping[str, Any]) -> dict[str, Any]:
    """The type hint of each of ``options`` in ``dataset``'s reader; DataError naming any it does not accept."""
    if dataset not in DATASETS:
        raise DataError(f"unknown dataset {dataset!r}; expected one of {', '.join(DATASETS)}")
    load = importlib.import_module(DATASETS[dataset]).load
    hints = {n: typing.get_type_hints(load)[n] for n in inspect.signature(load).parameters if n != "root"}
    unknown = sorted(set(options) - set(hints))
    if unknown:
        raise DataError(f"{dataset} reader: unknown option(s) {', '.join(unknown)}; valid: {', '.join(hints)}")
    return {name: hints[name] for name in options}


def parse_reader_options(dataset: str, pairs: Iterable[tuple[str, str]]) -> dict[str, Any]:
    """``KEY=VALUE`` strings (``cxrl prepare --reader-option``) as typed options of ``dataset``'s reader.

    Each value is read as YAML (``false``, ``3``, ``[PA, AP]``) and checked against the reader's type hint; a list
    may also be written ``PA,AP``, and a text option keeps the text as written (``version=6``).
    """
    raw = dict(pairs)
    parsed: dict[str, Any] = {}
    for key, tp in reader_options(dataset, raw).items():
        value = yaml.safe_load(raw[key]) if raw[key] else None
        if isinstance(value, str) and _accepts(tp, Sequence) and not _accepts(tp, str):
            value = [item.strip() for item in value.split(",")]
        try:
            parsed[key] = coerce(value, tp, key)
        except ConfigError as err:
            if not _accepts(tp, str):
                raise ConfigError(f"{dataset} reader option {key}={raw[key]!r}: {err}") from err
            parsed[key] = raw[key]
    return parsed


def _accepts(tp: Any, kind: type) -> bool:
    """Whether the type hint ``tp`` (or one member of a union) is ``kind`` or a generic of it."""
    return any(t is kind or typing.get_origin(t) is kind for t in (tp, *typing.get_args(tp)))


def finalize_records(frame: pd.DataFrame, dataset: str) -> pd.DataFrame:
    """Add missing canonical columns, order them, check the vocabulary; returns a new frame."""
    df = frame.copy()
    df["dataset"] = dataset
    for col in BASE_COLUMNS:
        if col not in df:
            df[col] = None
    for p in PATHOLOGIES:
        df[p] = df[p].astype("float32") if p in df else pd.Series(float("nan"), index=df.index, dtype="float32")
    bad_views = sorted(set(df["view"].dropna().unique()) - set(VIEWS))
    if bad_views:
        raise DataError(f"{dataset}: view values {bad_views} are outside {VIEWS}")
    bad_splits = sorted(set(df["split"].dropna().unique()) - set(SPLITS))
    if bad_splits:
        raise DataError(f"{dataset}: split values {bad_splits} are outside {SPLITS}")
    df["age"] = pd.to_numeric(df["age"], errors="coerce").astype("float32")
    for col in ("patient_id", "study_id"):
        df[col] = df[col].astype(str)
    extras = [c for c in df.columns if c not in BASE_COLUMNS and c not in PATHOLOGIES]
    return drop_unsafe_paths(df[list(BASE_COLUMNS) + list(PATHOLOGIES) + extras].reset_index(drop=True))


def drop_unsafe_paths(df: pd.DataFrame) -> pd.DataFrame:
    """Drop rows whose ``image_path`` climbs out of the dataset root (a ``..`` part) or repeats an earlier row's;
    each is listed in ``attrs["skipped"]`` (a repeat with the columns it disagrees on; the first row is kept)."""
    paths = df["image_path"].astype(str)
    escapes = paths.str.contains(r"(?:^|/)\.\.(?:/|$)", regex=True).to_numpy()
    repeats = paths.duplicated().to_numpy() & ~escapes
    skipped = [f"{p}: '..' in an image path leaves the dataset root; refused" for p in paths[escapes]]
    first = df[~paths.duplicated().to_numpy()].set_index(paths[~paths.duplicated()])
    columns = [c for c in (*BASE_COLUMNS, *PATHOLOGIES) if c != "image_path"]
    for i in np.flatnonzero(repeats):
        kept, row = first.loc[paths.iat[i], columns], df.iloc[i][columns]
        differ = [c for c in columns if not (kept[c] == row[c] or (pd.isna(kept[c]) and pd.isna(row[c])))]
        conflict = f", disagreeing on {', '.join(differ)}" if differ else ""
        skipped.append(f"{paths.iat[i]}: image listed again{conflict}; the first row is kept")
    if skipped:
        log.warning("skipped %d record(s) with an unsafe or repeated image path, first: %s", len(skipped), skipped[0])
    out = df[~(escapes | repeats)].reset_index(drop=True)
    out.attrs["skipped"] = [*df.attrs.get("skipped", []), *skipped]
    return out
