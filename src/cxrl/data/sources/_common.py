"""Pieces shared by the dataset readers: locating files, checking label values, listing skipped rows, boxes as
JSON, the view and uncertainty options, and vectorized (pyarrow) regex and token matching."""

from __future__ import annotations

import gzip
import json
import logging
import os
import zipfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from cxrl.data.labels import apply_uncertainty_policy
from cxrl.data.records import VIEWS
from cxrl.errors import ConfigError, DataError

log = logging.getLogger("cxrl.data.sources")

COMPRESSION_SUFFIXES: tuple[str, ...] = ("", ".gz", ".zip")
LABEL_VALUES: tuple[float, ...] = (1.0, 0.0, -1.0)


def find_file(root: Path, *names: str) -> Path | None:
    """The first of ``names`` under ``root`` that exists, each also tried with ``.gz`` and ``.zip`` appended."""
    for name in names:
        for suffix in COMPRESSION_SUFFIXES:
            path = root / f"{name}{suffix}"
            if path.is_file():
                return path
    return None


def require_file(root: Path, dataset: str, *names: str) -> Path:
    """Like :func:`find_file`, but a missing file is a :class:`DataError` listing what was looked for."""
    path = find_file(root, *names)
    if path is None:
        raise DataError(f"{dataset}: none of {', '.join(names)} (plain, .gz or .zip) is in {root}")
    return path


def read_csv(path: Path, **kwargs: Any) -> pd.DataFrame:
    """``pandas.read_csv`` whose parse errors name the file."""
    try:
        return pd.read_csv(path, **kwargs)
    except (ValueError, UnicodeDecodeError, EOFError, OSError) as err:
        raise DataError(f"cannot read {path}: {err}") from err


def read_text(path: Path) -> str:
    """The text of a plain, ``.gz`` or single-member ``.zip`` file (undecodable bytes replaced)."""
    try:
        if path.suffix == ".gz":
            data = gzip.decompress(path.read_bytes())
        elif path.suffix == ".zip":
            with zipfile.ZipFile(path) as archive:
                data = archive.read(archive.namelist()[0])
        else:
            data = path.read_bytes()
    except (OSError, EOFError, zipfile.BadZipFile, IndexError) as err:
        raise DataError(f"cannot read {path}: {err}") from err
    return data.decode("utf-8", errors="replace")


def require_columns(frame: pd.DataFrame, path: Path, columns: Iterable[str]) -> None:
    """Raise a :class:`DataError` naming the file and the header if any of ``columns`` is absent."""
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise DataError(f"{path}: missing column(s) {missing}; header is {list(frame.columns)}")


def csv_lines(index: pd.Index) -> np.ndarray:
    """File line numbers of rows read by ``read_csv`` with a one-line header (no quoted newlines).

    The convention of every message naming a CSV row: the line an editor shows, 1-based, the header is line 1.
    """
    return np.asarray(index, dtype=np.int64) + 2


@dataclass
class Skipped:
    """Rows a reader left out, as ``"file:line: reason"``; attached to the result as ``frame.attrs["skipped"]``."""

    entries: list[str] = field(default_factory=list)

    def add(self, path: Path | str, line: int | None, reason: str) -> None:
        where = f"{path}:{line}" if line is not None else f"{path}"
        self.entries.append(f"{where}: {reason}")

    def add_rows(self, path: Path, lines: Iterable[int], reasons: str | Iterable[str]) -> None:
        """One entry per line; ``reasons`` is one string for all lines or one per line."""
        lines = list(lines)
        if isinstance(reasons, str):
            reasons = [reasons] * len(lines)
        for line, reason in zip(lines, reasons, strict=True):
            self.add(path, int(line), reason)

    def attach(self, frame: pd.DataFrame, dataset: str) -> pd.DataFrame:
        """Store the list on ``frame`` and log a one-line summary when anything was skipped."""
        frame.attrs["skipped"] = list(self.entries)
        if self.entries:
            log.warning(
                "%s: skipped %d row(s) or file(s), first: %s (all listed in the records' attrs['skipped'] and "
                "in the manifest.json of a cache prepared from them)",
                dataset,
                len(self.entries),
                self.entries[0],
            )
        return frame


def load_split_files(
    root: Path,
    dataset: str,
    files: dict[str, str],
    read: Callable[[Path, str, Path, Skipped], pd.DataFrame],
    folders: dict[str, str] | None = None,
) -> pd.DataFrame:
    """Concatenate ``read(path, split, image_dir, skipped)`` over the per-split list ``files`` present in ``root``.

    ``files`` maps a file name (``train.csv``) to the canonical split; images of a split sit in the folder
    ``folders[name]`` (default: the file's stem). Rows a reader skips are listed in ``frame.attrs["skipped"]``.
    """
    skipped = Skipped()
    parts = []
    for name, split in files.items():
        path = find_file(root, name)
        if path is not None:
            folder = (folders or {}).get(name, Path(name).stem)
            parts.append(read(path, split, root / folder, skipped))
    if not parts:
        raise DataError(f"{dataset}: none of {', '.join(files)} is in {root}")
    return skipped.attach(pd.concat(parts, ignore_index=True), dataset)


def coerce_labels(frame: pd.DataFrame, columns: Sequence[str], path: Path, skipped: Skipped) -> pd.DataFrame:
    """Make ``columns`` float32 with values 1/0/-1/NaN; rows holding anything else are dropped and listed."""
    bad = pd.Series(False, index=frame.index)
    reasons = pd.Series("", index=frame.index, dtype=object)
    out = frame.copy()
    for col in columns:
        raw = frame[col]
        value = pd.to_numeric(raw, errors="coerce")
        wrong = (value.isna() & raw.notna()) | (value.notna() & ~value.isin(LABEL_VALUES))
        for i in wrong[wrong].index.difference(bad[bad].index):
            reasons[i] = f"{col}={str(raw[i])!r} is not 1, 0, -1 or blank"
        bad |= wrong
        out[col] = value.astype("float32")
    skipped.add_rows(path, csv_lines(frame.index[bad]), reasons[bad])
    return out[~bad]


def filter_views(frame: pd.DataFrame, views: Sequence[str] | None) -> pd.DataFrame:
    """Rows whose ``view`` is in ``views`` (all rows when ``views`` is None)."""
    if views is None:
        return frame
    if isinstance(views, str):
        views = [views]
    unknown = sorted(set(views) - set(VIEWS))
    if unknown:
        raise ConfigError(f"views {unknown} are not in {list(VIEWS)}")
    return frame[frame["view"].isin(list(views))]


def apply_uncertainty(frame: pd.DataFrame, policy: str | None, columns: Sequence[str]) -> pd.DataFrame:
    """Apply :func:`cxrl.data.labels.apply_uncertainty_policy` to the label ``columns`` present (None: keep -1)."""
    if policy is None:
        return frame
    present = [c for c in columns if c in frame]
    out = frame.copy()
    out[present] = apply_uncertainty_policy(out[present].to_numpy(dtype=np.float32), policy)
    return out


def boxes_json(keys: pd.Series, boxes: pd.DataFrame) -> pd.Series:
    """One JSON list of box objects per distinct key (index = key), in the order the rows come.

    ``boxes`` is row-aligned with ``keys`` and has at least ``label, x, y, w, h`` (source pixels, top-left
    corner); any further columns (e.g. ``rad_id``) are written into each object too. Coordinates are rounded
    to 0.01 px.
    """
    names = list(boxes.columns)
    boxes = boxes.round(2)
    columns = [boxes[c].tolist() for c in names]
    grouped = group_lists(keys, [dict(zip(names, values, strict=True)) for values in zip(*columns, strict=True)])
    return pd.Series({key: json.dumps(items) for key, items in grouped.items()}, dtype=object)


def group_lists(keys: pd.Series, values: Sequence[Any]) -> dict[Any, list[Any]]:
    """``values`` gathered per key, keys and values in the order met (a plain-dict groupby, fast for many groups)."""
    grouped: dict[Any, list[Any]] = {}
    for key, value in zip(keys.tolist(), values, strict=True):
        grouped.setdefault(key, []).append(value)
    return grouped


def index_images(folders: Iterable[Path], suffixes: tuple[str, ...]) -> dict[str, Path]:
    """Map file name to path for every file ending in ``suffixes`` under the existing ``folders`` (walked)."""
    found: dict[str, Path] = {}
    for folder in folders:
        if not folder.is_dir():
            continue
        for dirpath, _, files in os.walk(folder):
            for name in files:
                if name.lower().endswith(suffixes):
                    found.setdefault(name, Path(dirpath) / name)
    return found


def paths_under(root: Path, relative: pd.Series) -> pd.Series:
    """Absolute ``image_path`` strings: ``root`` joined with each relative path (vectorized; the dtype follows
    ``relative``)."""
    return root.as_posix() + "/" + relative


def found_or_default(names: pd.Series, found: dict[str, Path], default: pd.Series) -> pd.Series:
    """The path ``found`` for each file name in ``names`` (see :func:`index_images`), else its ``default`` path."""
    if not found:
        return default  # mapping onto an empty dict would turn the strings into an object column
    return names.map({name: path.as_posix() for name, path in found.items()}).fillna(default)


def extract(series: pd.Series, pattern: str) -> pd.DataFrame:
    """One column per named group of ``pattern`` (RE2 syntax, searched, vectorized by pyarrow).

    Rows that do not match, and groups that took no part in the match, are NaN.
    """
    matches = pc.extract_regex(_arrow_strings(series), pattern)
    columns = {f.name: matches.field(i).to_numpy(zero_copy_only=False) for i, f in enumerate(matches.type)}
    frame = pd.DataFrame(columns, index=series.index, dtype=object)
    frame[~matches.is_valid().to_numpy(zero_copy_only=False)] = None
    return frame.replace("", None).astype("str")


def token_matrix(series: pd.Series, vocabulary: Sequence[str], sep: str = "|") -> tuple[np.ndarray, np.ndarray]:
    """Exact-token membership of ``sep``-separated strings (tokens stripped; never substring matching).

    Returns the ``(N, K)`` float32 0/1 matrix over ``vocabulary`` and a boolean mask of the rows holding a token
    outside it (an empty string counts as one).
    """
    lists = pc.split_pattern(_arrow_strings(series.fillna("")), sep)
    tokens = pc.utf8_trim_whitespace(pc.list_flatten(lists)).to_numpy(zero_copy_only=False)
    rows = pc.list_parent_indices(lists).to_numpy()
    codes = pd.Categorical(tokens, categories=list(vocabulary)).codes
    known = codes >= 0
    matrix = np.zeros((len(series), len(vocabulary)), np.float32)
    matrix[rows[known], codes[known]] = 1.0
    unknown = np.zeros(len(series), bool)
    unknown[rows[~known]] = True
    return matrix, unknown


def _arrow_strings(series: pd.Series) -> pa.Array:
    """The values of ``series`` as one pyarrow string array (zero-copy when already arrow-backed)."""
    array = pa.array(series, from_pandas=True)
    array = array.combine_chunks() if isinstance(array, pa.ChunkedArray) else array
    return array.cast(pa.large_string())
