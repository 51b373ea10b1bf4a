"""Report tokens beside the image cache: memmap round trip, rows without text, idempotent, keyed by tokenizer."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from cxrl.data.cache import write_cache
from cxrl.data.tokens import cache_tokenizer, load_tokens, report_texts, resolve_tokenizer, tokenize_reports
from cxrl.errors import DataError
from cxrl.models.text_tokenizer import create_tokenizer, train_tokenizer

FINDINGS = ["Heart size is normal.", None, "Small left pleural effusion.", None, "  "]
IMPRESSION = ["No acute process.", "Stable cardiomegaly with mild pulmonary vascular congestion.", None, None, None]
REPORT_TEXT = ["FINDINGS: ...", "IMPRESSION: ...", "FINDINGS: ...", "Portable chest. Lines unchanged.", None]


@pytest.fixture
def report_cache(tmp_path):
    records = pd.DataFrame({"findings": FINDINGS, "impression": IMPRESSION, "report_text": REPORT_TEXT,
                            "split": "train"})
    return write_cache(tmp_path / "cache", np.zeros((len(records), 8, 8), np.uint8), records, {"source": "test"})


@pytest.fixture(scope="module")
def tokenizer_dirs(tmp_path_factory):
    corpus = [t for t in FINDINGS + IMPRESSION + REPORT_TEXT if t] * 3
    folders = [tmp_path_factory.mktemp(f"tokenizer{size}") for size in (120, 200)]
    for folder, size in zip(folders, (120, 200), strict=True):
        train_tokenizer(corpus, folder, vocab_size=size)
    return folders


def test_report_texts_join_sections_and_fall_back_to_the_whole_report(report_cache):
    texts = report_texts(report_cache.records).tolist()
    assert texts == [
        "Heart size is normal. No acute process.",
        "Stable cardiomegaly with mild pulmonary vascular congestion.",
        "Small left pleural effusion.",
        "Portable chest. Lines unchanged.",
        None,
    ]


def test_tokens_memmap_round_trip(report_cache, tokenizer_dirs):
    folder = tokenize_reports(report_cache.path, tokenizer_dirs[0], max_length=8)
    assert folder.parent == report_cache.path / "tokens"
    tokens = load_tokens(folder)
    assert isinstance(tokens.ids, np.memmap) and tokens.ids.dtype == np.uint16 and tokens.ids.shape == (5, 8)
    tokenizer = create_tokenizer(tokenizer_dirs[0])
    for row, text in enumerate(report_texts(report_cache.records)):
        expected = tokenizer(text, truncation=True, max_length=8)["input_ids"] if text else []
        assert tokens.lengths[row] == len(expected)
        assert tokens.ids[row, : len(expected)].tolist() == expected
        assert (tokens.ids[row, len(expected) :] == tokenizer.pad_token_id).all()
    ids, mask = tokens.batch([3, 1])
    assert ids.dtype == torch.int64 and ids.shape == mask.shape == (2, max(tokens.lengths[[3, 1]]))
    assert mask.sum(1).tolist() == tokens.lengths[[3, 1]].tolist()
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["tokenizer"] == str(tokenizer_dirs[0]) and manifest["max_length"] == 8
    assert manifest["without_text"] == 1 and manifest["rows_without_text"] == [4]


def test_tokenizing_again_reuses_the_folder_and_another_tokenizer_gets_its_own(report_cache, tokenizer_dirs):
    first = tokenize_reports(report_cache.path, tokenizer_dirs[0], max_length=8)
    inode = (first / "tokens.npy").stat().st_ino
    assert tokenize_reports(report_cache.path, tokenizer_dirs[0], max_length=8) == first
    assert (first / "tokens.npy").stat().st_ino == inode  # not rewritten
    other = tokenize_reports(report_cache.path, tokenizer_dirs[1], max_length=8)
    longer = tokenize_reports(report_cache.path, tokenizer_dirs[0], max_length=16)
    assert len({first, other, longer}) == 3
    assert load_tokens(longer).ids.shape == (5, 16) and load_tokens(first).ids.shape == (5, 8)


def test_a_cache_without_report_columns_is_a_clear_error(tmp_path, tokenizer_dirs):
    cache = write_cache(tmp_path, np.zeros((2, 8, 8), np.uint8), pd.DataFrame({"split": ["train"] * 2}), {})
    with pytest.raises(DataError, match="no report text"):
        tokenize_reports(cache.path, tokenizer_dirs[0], max_length=8)


@pytest.mark.slow
def test_phantom_mimic_reports_flow_from_the_cache_to_tiny_text(tmp_path):
    from cxrl.data.phantom import write_dataset
    from cxrl.data.prepare import prepare
    from cxrl.models.text import create_text_encoder

    root = write_dataset(tmp_path / "mimic", 12, size=64, layout="mimic", seed=5, patients=6, workers=1)
    cache_dir = prepare("mimic", root, tmp_path / "cache", size=32, workers=0, reports=True)
    records = pd.read_parquet(cache_dir / "records.parquet")
    train_tokenizer(report_texts(records[records["split"] == "train"]).dropna(), tmp_path / "tok", vocab_size=500)
    tokens = load_tokens(tokenize_reports(cache_dir, tmp_path / "tok", max_length=64))
    assert (tokens.lengths > 2).all()  # every phantom image has a report: more than [CLS] [SEP]
    encoder = create_text_encoder("tiny_text", tokenizer=tmp_path / "tok").eval()
    ids, mask = tokens.batch(np.arange(len(records)))
    with torch.no_grad():
        out = encoder(input_ids=ids, attention_mask=mask)
    assert out.pooled.shape == (len(records), encoder.num_features) and out.tokens.shape[:2] == ids.shape


def test_the_cache_wordpiece_tokenizer_learns_from_train_reports_only(tmp_path):
    records = pd.DataFrame({"patient_id": ["a", "b", "c"], "split": ["train", "train", "test"],
                            "report_text": ["heart normal size", "heart enlarged", "zygomycosis xylophone"]})
    cache = write_cache(tmp_path / "c", np.zeros((3, 8, 8), np.uint8), records, {"source": "test"})
    folder = resolve_tokenizer(cache.path, "wordpiece", vocab_size=60)
    assert folder == cache_tokenizer(cache.path, vocab_size=60) and (folder / "tokenizer.json").is_file()
    vocab = create_tokenizer(folder).get_vocab()
    assert "heart" in vocab and "zygomycosis" not in vocab and "xylophone" not in vocab
    assert resolve_tokenizer(cache.path, "minilm") == "minilm"


def test_processes_asking_at_once_wait_for_one_writer(report_cache, tokenizer_dirs):
    """DDP ranks build the tokens together: four processes, one folder, identical complete tokens."""
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(4) as pool:
        folders = list(pool.map(tokenize_reports, [report_cache.path] * 4, [tokenizer_dirs[0]] * 4, [8] * 4))
    assert len(set(folders)) == 1 and not list(folders[0].glob("*.tmp"))
    tokens = load_tokens(folders[0])
    assert tokens.manifest["complete"] and tokens.ids.shape == (len(report_cache), 8)


def test_each_token_carries_its_sentence_number(report_cache, tokenizer_dirs):
    tokens = load_tokens(tokenize_reports(report_cache.path, tokenizer_dirs[1], max_length=32))
    tokenizer = create_tokenizer(tokenizer_dirs[1])
    for row, text in enumerate(report_texts(report_cache.records)):
        numbers = tokens.sentences[row, : tokens.lengths[row]].tolist()
        assert (tokens.sentences[row, tokens.lengths[row]:] == 0).all()
        if not text:
            continue
        words = tokenizer.convert_ids_to_tokens(tokens.ids[row, : tokens.lengths[row]].tolist())
        assert numbers[0] == numbers[-1] == 0 and words[0] == "[CLS]" and words[-1] == "[SEP]"
        # a sentence's tokens decode to that sentence (row 0: "Heart size is normal." then "No acute process.")
        for k, sentence in enumerate(text.split(". "), start=1):
            ids = [i for i, n in zip(tokens.ids[row, : tokens.lengths[row]].tolist(), numbers, strict=True) if n == k]
            assert tokenizer.decode(ids).rstrip(" .") == sentence.lower().rstrip(".")
        assert max(numbers) == text.count(". ") + 1


def test_a_token_cache_of_the_older_format_is_rewritten(report_cache, tokenizer_dirs):
    folder = tokenize_reports(report_cache.path, tokenizer_dirs[0], max_length=8)
    manifest = json.loads((folder / "manifest.json").read_text())
    (folder / "manifest.json").write_text(json.dumps({k: v for k, v in manifest.items() if k != "format"}))
    (folder / "sentences.npy").unlink()
    assert tokenize_reports(report_cache.path, tokenizer_dirs[0], max_length=8) == folder
    assert load_tokens(folder).sentences.shape == (5, 8)
