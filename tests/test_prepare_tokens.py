"""``cxrl prepare --tokenizer``: report tokens written beside the complete cache, listed, idempotent, refused without
report text."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cxrl.cli import main as cli_main
from cxrl.data import prepare as prepare_module
from cxrl.data import tokens as tokens_module
from cxrl.data.cache import open_cache
from cxrl.data.prepare import prepare
from cxrl.data.tokens import load_tokens, report_texts
from cxrl.errors import ConfigError

N = 12


@pytest.fixture(scope="module")
def mimic_root(tmp_path_factory) -> Path:
    from cxrl.data.phantom import write_dataset

    return write_dataset(tmp_path_factory.mktemp("phantom") / "mimic", N, size=64, layout="mimic", seed=5,
                         patients=6, workers=1)  # fmt: skip


def manifest(cache: Path) -> dict:
    return json.loads((cache / "manifest.json").read_text())


@pytest.mark.slow
def test_cli_tokenizer_writes_the_tokens_and_lists_them_in_manifest_and_summary(mimic_root, tmp_path, capsys):
    cache = tmp_path / "cache"
    code = cli_main(["prepare", "mimic", "--root", str(mimic_root), "--out", str(cache), "--size", "16",
                     "--workers", "0", "--reader-option", "reports=true", "--tokenizer", "wordpiece",
                     "--vocab-size", "300", "--max-length", "48"])  # fmt: skip
    assert code == 0
    names = manifest(cache)["tokens"]
    assert len(names) == 1 and names[0].startswith("wordpiece-300-") and names[0].endswith("-L48")
    tokens = load_tokens(cache / "tokens" / names[0])
    assert tokens.ids.shape == (N, 48) and (tokens.lengths > 2).all()  # every phantom study has a report
    assert tokens.manifest["tokenizer"] == str(cache / "tokenizers" / "wordpiece-300")
    assert f"report tokens: {cache / 'tokens' / names[0]}" in capsys.readouterr().out


def test_a_tokenizer_without_report_text_is_refused_before_any_image_is_read(mimic_root, tmp_path, capsys):
    cache = tmp_path / "cache"
    code = cli_main(["prepare", "mimic", "--root", str(mimic_root), "--out", str(cache), "--size", "16",
                     "--workers", "0", "--tokenizer", "wordpiece"])  # fmt: skip
    assert code == 1
    err = capsys.readouterr().err
    assert err.startswith("cxrl prepare: error: ") and str(cache) in err and "--reader-option reports=true" in err
    assert "Traceback" not in err and not (cache / "images.npy").exists()
    with pytest.raises(ConfigError, match="reports=True"):
        prepare("mimic", mimic_root, tmp_path / "api", size=16, workers=0, tokenizer="wordpiece")


@pytest.mark.slow
def test_prepare_again_on_a_complete_cache_only_adds_tokens(mimic_root, tmp_path):
    cache = prepare("mimic", mimic_root, tmp_path / "cache", size=16, workers=0, reports=True)
    images, job = (cache / "images.npy").stat().st_ino, manifest(cache)["job"]
    assert "tokens" not in manifest(cache)
    prepare("mimic", mimic_root, cache, size=16, workers=0, reports=True, tokenizer="wordpiece", vocab_size=300,
            max_length=32)  # fmt: skip
    first = manifest(cache)["tokens"]
    tokens = (cache / "tokens" / first[0] / "tokens.npy").stat().st_ino
    prepare("mimic", mimic_root, cache, size=16, workers=0, reports=True, tokenizer="wordpiece", vocab_size=300,
            max_length=32)  # fmt: skip
    assert manifest(cache)["tokens"] == first and (cache / "tokens" / first[0] / "tokens.npy").stat().st_ino == tokens
    prepare("mimic", mimic_root, cache, size=16, workers=0, reports=True, tokenizer="wordpiece", vocab_size=300,
            max_length=64)  # fmt: skip
    both = manifest(cache)["tokens"]
    assert len(both) == 2 and set(first) < set(both) and all((cache / "tokens" / name).is_dir() for name in both)
    assert (cache / "images.npy").stat().st_ino == images and manifest(cache)["job"] == job  # images untouched
    assert len(open_cache(cache)) == N


@pytest.mark.slow
def test_overwrite_drops_the_tokens_and_word_piece_of_the_replaced_cache(mimic_root, tmp_path):
    assert (prepare_module.TOKENS_DIR, prepare_module.TOKENIZERS_DIR) == (tokens_module.TOKENS_DIR,
                                                                        tokens_module.TOKENIZERS_DIR)  # fmt: skip
    cache = prepare("mimic", mimic_root, tmp_path / "cache", size=16, workers=0, reports=True,
                    tokenizer="wordpiece", vocab_size=300, max_length=32)  # fmt: skip
    prepare("mimic", mimic_root, cache, size=16, workers=0, reports=True, limit=6, overwrite=True)
    assert "tokens" not in manifest(cache)
    assert not (cache / "tokens").exists() and not (cache / "tokenizers").exists()
    prepare("mimic", mimic_root, cache, size=16, workers=0, reports=True, limit=6, tokenizer="wordpiece",
            vocab_size=300, max_length=32)  # fmt: skip
    tokens = load_tokens(cache / "tokens" / manifest(cache)["tokens"][0])
    assert tokens.ids.shape == (6, 32)
    assert tokens.manifest["count"] == len(report_texts(open_cache(cache).records)) == 6
