"""Object-CXR (MIDL 2020, JF Healthcare): foreign objects on chest X-rays; ``train.csv``, ``dev.csv`` and the
labelled ``test.csv`` of the Kaggle copy (images in ``train/``, ``dev/``, ``test/``).

Each CSV row is ``image_name`` (or ``image_path``) and ``annotation``: empty when the image has no foreign object,
else ``;``-separated objects ``TYPE x1 y1 x2 y2 ...`` with TYPE 0 rectangle and 1 ellipse (both given by their
bounding box) or 2 polygon (its points). ``boxes`` lists ``{label: "Foreign Object", x, y, w, h, shape}`` per
object (a polygon also keeps ``points``); ``foreign_object`` is 1/0. Rows whose annotation does not parse are
skipped and listed in ``frame.attrs["skipped"]``; a polygon of two or fewer points (it has no area) is left out of
its row's ``boxes`` and listed there too, the row and its other objects kept.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pandas as pd

from cxrl.data.sources._common import Skipped, csv_lines, load_split_files, paths_under, read_csv
from cxrl.errors import DataError

FILES = {"train.csv": "train", "dev.csv": "valid", "test.csv": "test"}
NAME_COLUMNS = ("image_name", "image_path")
LABEL = "Foreign Object"
SHAPES = {0: "rectangle", 1: "ellipse", 2: "polygon"}


def load(root: Path) -> pd.DataFrame:
    """One record per listed image, images under ``root/train/``, ``root/dev/`` and ``root/test/``."""
    return load_split_files(root, "object-cxr", FILES, read_split)


def read_split(path: Path, split: str, image_dir: Path, skipped: Skipped) -> pd.DataFrame:
    """The records of one Object-CXR CSV."""
    table = read_csv(path, dtype=str, keep_default_na=False)
    name_column = next((c for c in NAME_COLUMNS if c in table), None)
    if name_column is None or "annotation" not in table:
        raise DataError(f"{path}: expected columns image_name (or image_path) and annotation; got {list(table)}")
    boxes, keep = [], []
    for i, (line, text) in enumerate(zip(csv_lines(table.index), table["annotation"], strict=True)):
        try:
            objects, flat = parse_annotation(text)
        except ValueError as err:
            skipped.add(path, int(line), f"annotation {text[:60]!r}: {err}")
            continue
        boxes.append(json.dumps(objects))
        keep.append(i)
        for item in flat:
            skipped.add(path, int(line), f"object {item[:60]!r} left out: a polygon needs 3 or more x y points")
    table = table.iloc[keep]
    names = table[name_column].str.strip().str.rsplit("/", n=1).str[-1]
    stems = names.str.rsplit(".", n=1).str[0]
    return pd.DataFrame(
        {
            "image_path": paths_under(image_dir, names),
            "patient_id": stems,
            "study_id": stems,
            "split": split,
            "foreign_object": (table["annotation"].str.strip() != "").astype("float32"),
            "boxes": boxes,
        }
    )


def parse_annotation(text: str) -> tuple[list[dict[str, Any]], list[str]]:
    """Objects of one annotation string as box dicts (empty list for an empty string), and the polygons of two or
    fewer points left out (as written); ValueError if malformed."""
    objects, flat = [], []
    for item in filter(None, (part.strip() for part in text.split(";"))):
        kind, *coords = item.split()
        shape = SHAPES.get(int(kind)) if kind.isdigit() else None
        if shape is None:
            raise ValueError(f"object type {kind!r} is not 0, 1 or 2")
        values = [float(v) for v in coords]
        if not all(map(math.isfinite, values)):
            raise ValueError("coordinates must be finite numbers")
        if shape == "polygon" and len(values) % 2:
            raise ValueError(f"a polygon needs x y pairs, got {len(values)} numbers")
        if shape == "polygon" and len(values) < 6:
            flat.append(item)
            continue
        if shape != "polygon" and len(values) != 4:
            raise ValueError(f"a {shape} needs x1 y1 x2 y2, got {len(values)} numbers")
        xs, ys = values[0::2], values[1::2]
        box = {"label": LABEL, "x": min(xs), "y": min(ys), "w": max(xs) - min(xs), "h": max(ys) - min(ys)}
        box["shape"] = shape
        if shape == "polygon":
            box["points"] = [[x, y] for x, y in zip(xs, ys, strict=True)]
        objects.append(box)
    return objects, flat
