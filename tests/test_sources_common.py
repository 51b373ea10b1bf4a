"""Helpers shared by the readers: file lookup, label checks, skipped rows, views, boxes, regex and tokens."""

from __future__ import annotations

import gzip
import json
import zipfile

import numpy as np
import pandas as pd
import pytest

from cxrl.data.records import DATASETS, finalize_records
from cxrl.data.sources._common import (
    Skipped,
    boxes_json,
    coerce_labels,
    extract,
    filter_views,
    find_file,
    read_text,
    require_file,
    token_matrix,
)
from cxrl.errors import ConfigError, DataError


def test_find_file_tries_compressed_variants(tmp_path):
    assert find_file(tmp_path, "train.csv") is None
    with gzip.open(tmp_path / "train.csv.gz", "wt") as f:
        f.write("a\n1\n")
    assert find_file(tmp_path, "valid.csv", "train.csv") == tmp_path / "train.csv.gz"
    (tmp_path / "train.csv").write_text("a\n1\n")
    assert find_file(tmp_path, "train.csv") == tmp_path / "train.csv"  # plain wins
    with pytest.raises(DataError, match=r"other.csv.*plain, .gz or .zip.*" + str(tmp_path)):
        require_file(tmp_path, "demo", "other.csv")


def test_coerce_labels_drops_and_lists_bad_values(tmp_path):
    frame = pd.DataFrame({"A": ["1", "0", "-1", None, "2", "yes"], "B": [1.0, 0.5, 0.0, 1.0, 1.0, np.nan]})
    skipped = Skipped()
    out = coerce_labels(frame, ["A", "B"], tmp_path / "x.csv", skipped)
    assert out.index.tolist() == [0, 2, 3]
    assert out["A"].dtype == np.float32
    np.testing.assert_array_equal(out["A"].to_numpy(), [1, -1, np.nan])
    assert skipped.entries == [
        f"{tmp_path / 'x.csv'}:3: B='0.5' is not 1, 0, -1 or blank",
        f"{tmp_path / 'x.csv'}:6: A='2' is not 1, 0, -1 or blank",
        f"{tmp_path / 'x.csv'}:7: A='yes' is not 1, 0, -1 or blank",
    ]


def test_skipped_list_survives_finalize_records():
    frame = Skipped(["f.csv:2: bad"]).attach(pd.DataFrame({"view": ["PA"], "split": ["train"]}), "demo")
    assert finalize_records(frame, "demo").attrs["skipped"] == ["f.csv:2: bad"]


def test_filter_views():
    frame = pd.DataFrame({"view": ["PA", "AP", "LATERAL", "OTHER"]})
    assert filter_views(frame, None).equals(frame)
    assert filter_views(frame, "PA")["view"].tolist() == ["PA"]
    assert filter_views(frame, ["AP", "LATERAL"])["view"].tolist() == ["AP", "LATERAL"]
    with pytest.raises(ConfigError, match="L"):
        filter_views(frame, ["L"])


def test_boxes_json_groups_in_row_order():
    keys = pd.Series(["b", "a", "b"])
    boxes = pd.DataFrame({"label": ["X", "Y", "Z"], "x": [1.234, 2.0, 3.0], "y": 0, "w": 1, "h": 2})
    out = boxes_json(keys, boxes)
    assert out.index.tolist() == ["b", "a"]
    assert [b["label"] for b in json.loads(out["b"])] == ["X", "Z"]
    assert json.loads(out["b"])[0]["x"] == 1.23


def test_extract_named_groups():
    series = pd.Series(["a/patient1/study2/v.jpg", "nope", None], index=[10, 11, 12])
    out = extract(series, r"(?P<patient>patient\d+)/(?P<study>study\d+)(?P<tail>/x)?")
    assert out.index.tolist() == [10, 11, 12]
    assert out.loc[10, "patient"] == "patient1" and out.loc[10, "study"] == "study2"
    assert out.loc[[11, 12]].isna().all(axis=None) and pd.isna(out.loc[10, "tail"])


def test_every_registered_reader_imports():
    import importlib

    for module in DATASETS.values():
        assert callable(importlib.import_module(module).load)


def test_token_matrix_is_exact_and_flags_unknown_tokens():
    series = pd.Series(["Mass|Nodule", "Mass ", "Massive", "", None, "Nodule | No Finding"])
    matrix, unknown = token_matrix(series, ["Mass", "Nodule", "No Finding"])
    np.testing.assert_array_equal(matrix, [[1, 1, 0], [1, 0, 0], [0, 0, 0], [0, 0, 0], [0, 0, 0], [0, 1, 1]])
    assert unknown.tolist() == [False, False, True, True, True, False]


def test_read_text_plain_gz_zip(tmp_path):
    (tmp_path / "a.txt").write_text("x y\n")
    (tmp_path / "a.txt.gz").write_bytes(gzip.compress(b"x y\n"))
    with zipfile.ZipFile(tmp_path / "a.txt.zip", "w") as archive:
        archive.writestr("a.txt", "x y\n")
    assert {read_text(tmp_path / n) for n in ("a.txt", "a.txt.gz", "a.txt.zip")} == {"x y\n"}
    (tmp_path / "bad.gz").write_bytes(b"not gzip")
    with pytest.raises(DataError, match="bad.gz"):
        read_text(tmp_path / "bad.gz")
