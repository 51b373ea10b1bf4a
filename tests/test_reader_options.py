"""``cxrl prepare --reader-option KEY=VALUE``: values are typed and checked against the reader's signature."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_prepare import gray_jpeg
from test_sources_mimic import write_layout

from cxrl.cli import main as cli_main
from cxrl.data.cache import open_cache
from cxrl.data.records import load_records, parse_reader_options
from cxrl.errors import ConfigError, DataError


def test_booleans_lists_and_text_are_parsed_for_the_reader():
    options = [("reports", "false"), ("views", "PA,AP"), ("labeler", "negbio"), ("uncertainty", "")]
    assert parse_reader_options("mimic", options) == {
        "reports": False,
        "views": ["PA", "AP"],
        "labeler": "negbio",
        "uncertainty": None,
    }
    assert parse_reader_options("mimic", [("views", "[LATERAL]")])["views"] == ["LATERAL"]
    assert parse_reader_options("covidx", [("version", "6")]) == {"version": "6"}  # text stays text


def test_a_value_of_the_wrong_type_or_an_unknown_key_is_an_error():
    with pytest.raises(ConfigError, match=r"mimic reader option reports='maybe': .*expected bool"):
        parse_reader_options("mimic", [("reports", "maybe")])
    with pytest.raises(DataError, match="unknown option"):
        parse_reader_options("mimic", [("report", "true")])


def test_cli_prepare_passes_typed_options(tmp_path, capsys):
    root = write_layout(tmp_path)
    for path in load_records("mimic", root)["image_path"]:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        gray_jpeg(90)(Path(path))
    args = ["prepare", "mimic", "--root", str(root), "--size", "16", "--workers", "0"]
    assert cli_main([*args, "--out", str(tmp_path / "caches" / "c"), "--reader-option", "reports=false"]) == 0
    cache = open_cache(tmp_path / "caches" / "c")
    assert cache.manifest["source"]["reader_options"] == {"reports": False}
    assert "report_text" not in cache.records
    assert cli_main([*args, "--out", str(tmp_path / "caches" / "d"), "--reader-option", "reports=maybe"]) == 1
    assert "cxrl prepare: error: mimic reader option reports='maybe'" in capsys.readouterr().err
    assert cli_main([*args, "--out", str(tmp_path / "caches" / "e"), "--reader-option", "views=PA"]) == 1
    assert "use prepare's own --views" in capsys.readouterr().err
