"""``cxrl`` entry point: OS errors and a closed stdout become one-line errors, never tracebacks."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import cxrl
from cxrl.cli import main


@pytest.fixture
def blocked(tmp_path) -> Path:
    """An output path that cannot be created, whoever runs the tests: a folder under a regular file.

    (A chmod 0555 folder is writable for root, who runs CI; a real read-only mount needs privileges.)
    """
    (tmp_path / "file").write_text("")
    return tmp_path / "file" / "sub"


def _eval_dir(tmp_path: Path) -> Path:
    out = tmp_path / "eval"
    out.mkdir()
    summary = {"1.0": {"macro_auroc_mean": 0.8, "macro_auroc_std": 0.0}}
    (out / "metrics.json").write_text(json.dumps({"encoder": {"name": "e"}, "summary": summary}))
    return out


def _commands(name: str, blocked: Path, tmp_path: Path, toy_cache) -> list[str]:
    if name == "prepare":
        from cxrl.data.phantom import write_dataset

        root = write_dataset(tmp_path / "phantom", n=3, size=32, workers=1)
        return ["prepare", "chexpert", "--root", str(root), "--out", str(blocked), "--size", "32", "--workers", "1"]
    return {
        "phantom": ["phantom", "--n", "2", "--size", "32", "--workers", "1", "--out", str(blocked)],
        "pretrain": ["pretrain", "simclr", "--data", str(toy_cache.path), "--out", str(blocked), "backbone=tiny_cnn",
                     "image_size=32", "max_steps=1", "batch_size=8", "num_workers=0", "progress_bar=false"],
        "evaluate": ["evaluate", "--encoder", "random", "--backbone", "tiny_cnn", "--data", str(toy_cache.path),
                     "--min-positives", "2", "--fractions", "1", "--seeds", "1", "--out", str(blocked)],
        "compare": ["compare", str(_eval_dir(tmp_path)), "--out", str(blocked / "table.md")],
        "inspect": ["inspect", str(toy_cache.path), "--plot", str(blocked / "plot.png")],
    }[name]


@pytest.mark.parametrize("name", ["phantom", "prepare", "pretrain", "evaluate", "compare", "inspect"])
def test_an_unwritable_output_is_a_one_line_error(name, blocked, tmp_path, toy_cache, capsys):
    assert main(_commands(name, blocked, tmp_path, toy_cache)) == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith(f"cxrl {name}: error: cannot access {blocked}") and err.endswith("Not a directory")


def test_a_read_only_filesystem_is_named_as_a_write_error(tmp_path, monkeypatch, capsys):
    def read_only(self, *args, **kwargs):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(self))

    evaluation = _eval_dir(tmp_path)
    monkeypatch.setattr(Path, "write_text", read_only)
    assert main(["compare", str(evaluation), "--out", str(tmp_path / "t.md")]) == 1
    expected = f"cxrl compare: error: cannot write {tmp_path / 't.md'}: Read-only file system"
    assert capsys.readouterr().err.strip() == expected


def test_a_closed_stdout_ends_quietly(toy_cache):
    """``cxrl inspect CACHE | head -1``: the reader is gone before the table is written (a pipe closed at once
    makes the race deterministic)."""
    read, write = os.pipe()
    os.close(read)
    env = {**os.environ, "PYTHONPATH": str(Path(cxrl.__file__).parents[1])}
    try:
        done = subprocess.run([sys.executable, "-m", "cxrl.cli", "inspect", str(toy_cache.path)], stdout=write,
                              stderr=subprocess.PIPE, text=True, env=env, timeout=120)
    finally:
        os.close(write)
    assert done.returncode == 1 and "Traceback" not in done.stderr and "BrokenPipe" not in done.stderr


def test_an_argument_without_equals_is_blamed_alone(capsys):
    from cxrl.cli import parse

    with pytest.raises(SystemExit):
        parse(["pretrain", "simclr", "--data", "c", "--out", "r", "lr=0.1", "foo", "max_steps=2"])
    err = capsys.readouterr().err
    assert "unrecognized arguments: foo (a config override is key=value)" in err and "lr=0.1" not in err


def test_bad_overrides_are_all_named_and_only_they():
    from cxrl.config import parse_overrides
    from cxrl.errors import ConfigError

    with pytest.raises(ConfigError) as info:
        parse_overrides(["lr=0.2", "foo", "=3", "max_steps=2"])
    message = str(info.value)
    assert message.startswith("override(s) 'foo', '=3': expected key=value") and "0.2" not in message
    assert "max_steps" not in message
