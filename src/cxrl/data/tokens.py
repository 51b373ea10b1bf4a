"""Report tokens cached beside the image cache, so that training never tokenizes in the hot path.

Layout, one folder per tokenizer and length (the key holds a hash of the tokenizer itself, so two tokenizers
saved under one name never share tokens)::

    CACHE/tokens/{name}-{sha8}-L{max_length}/
        tokens.npy     (N, max_length) uint16 (int32 for vocabularies over 65,535), padded, row i <-> images[i]
        lengths.npy    (N,) int32 real tokens per row (0: the record has no report text)
        sentences.npy  (N, max_length) uint8 sentence number of each token, 1 to 255 (0: special tokens, padding)
        manifest.json  tokenizer name and SHA-256, max_length, variant, pad_id, text columns, rows without text

A ``variant`` other than ``report`` tokenizes a rewrite of each report instead (``negated``:
:func:`cxrl.data.text.negation.negate_report`, in ``{name}-{sha8}-L{max_length}-negated/``).
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from filelock import FileLock
from tqdm import tqdm

from cxrl.data.cache import as_cache
from cxrl.data.text.sentences import sentence_spans
from cxrl.errors import DataError

TOKENS_DIR = "tokens"
TOKENIZERS_DIR = "tokenizers"
WORDPIECE = "wordpiece"  # tokenizer name meaning "a word-piece trained on this cache's train reports"
TOKENS_FORMAT = 2  # 2: sentences.npy added
TEXT_COLUMNS = ("findings", "impression")
FALLBACK_COLUMN = "report_text"
VARIANTS = ("report", "negated")
_BATCH = 1024
_SHOWN = 20


@dataclass
class ReportTokens:
    """Cached tokens of a cache's reports: ``ids`` (N, L) memory-mapped, ``lengths`` (N,), ``manifest``."""

    path: Path
    ids: np.ndarray
    lengths: np.ndarray
    sentences: np.ndarray
    manifest: dict[str, Any]

    def batch(self, indices: np.ndarray | list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """``input_ids`` (int64) and ``attention_mask`` of the rows at ``indices``, cut to their longest row."""
        indices = np.asarray(indices, dtype=np.int64)
        lengths = self.lengths[indices]
        width = max(int(lengths.max(initial=0)), 1)
        ids = torch.from_numpy(self.ids[indices, :width].astype(np.int64))
        mask = torch.from_numpy(np.arange(width)[None, :] < lengths[:, None]).long()
        return ids, mask


def report_texts(records: pd.DataFrame) -> pd.Series:
    """Text per record: FINDINGS and IMPRESSION joined where either exists, else ``report_text``; None without any."""
    present = [c for c in (*TEXT_COLUMNS, FALLBACK_COLUMN) if c in records]
    if not present:
        raise DataError(f"records have no report text: none of the columns {[*TEXT_COLUMNS, FALLBACK_COLUMN]}")
    blank = [None] * len(records)
    columns = [[_clean(v) for v in records[c]] if c in records else blank for c in (*TEXT_COLUMNS, FALLBACK_COLUMN)]
    texts = [" ".join(s for s in sections if s) or whole for *sections, whole in zip(*columns, strict=True)]
    return pd.Series(texts, index=records.index, dtype=object)


def cache_tokenizer(cache_dir: str | Path, vocab_size: int = 4096) -> Path:
    """A lower-cased word-piece tokenizer trained on the cache's **train** reports (so no valid/test text shapes
    the vocabulary), saved once in ``CACHE/tokenizers/wordpiece-{vocab_size}/`` and reused; returns that folder.
    Processes that ask at once (DDP ranks) wait for the first to write it."""
    cache = as_cache(cache_dir)
    folder = cache.path / TOKENIZERS_DIR / f"{WORDPIECE}-{vocab_size}"
    with _locked(cache.path):
        if not (folder / "tokenizer.json").is_file():
            _train_cache_tokenizer(cache, folder, vocab_size)
    return folder


def _train_cache_tokenizer(cache: Any, folder: Path, vocab_size: int) -> None:
    from cxrl.models.text_tokenizer import train_tokenizer

    train = cache.records["split"].eq("train").to_numpy() if "split" in cache.records else np.ones(len(cache), bool)
    texts = report_texts(cache.records[train]).dropna()
    if texts.empty:
        raise DataError(f"{cache.path}: no train row has report text to train a {WORDPIECE} tokenizer on")
    partial = folder.with_name(folder.name + ".partial")
    train_tokenizer(texts.tolist(), partial, vocab_size=vocab_size)
    shutil.rmtree(folder, ignore_errors=True)  # an incomplete folder left by a killed run
    os.replace(partial, folder)


def _locked(cache_path: Path) -> FileLock:
    """The cache's lock around writing tokenizers and tokens (``CACHE/tokens.lock``)."""
    return FileLock(cache_path / "tokens.lock")


def resolve_tokenizer(cache_dir: str | Path, name: str | Path, vocab_size: int = 4096) -> str | Path:
    """``wordpiece`` -> :func:`cache_tokenizer` of the cache; any other name (see ``create_tokenizer``) as it is."""
    return cache_tokenizer(cache_dir, vocab_size) if str(name) == WORDPIECE else name


def tokenize_reports(cache_dir: str | Path, tokenizer_name: str | Path, max_length: int,
                     variant: str = "report") -> Path:
    """Tokenize the cache's reports (or their ``variant``, see :data:`VARIANTS`) with ``tokenizer_name`` (see
    ``create_tokenizer``); return the tokens folder.

    Idempotent: a complete folder for the same tokenizer, length, variant and report texts is reused as it is;
    processes that ask at once (DDP ranks) wait for the first to write it.
    """
    from cxrl.models.text_tokenizer import create_tokenizer

    if max_length < 2:
        raise DataError(f"tokenize_reports: max_length must be at least 2, found {max_length}")
    if variant not in VARIANTS:
        raise DataError(f"tokenize_reports: variant {variant!r} is not one of {', '.join(VARIANTS)}")
    cache = as_cache(cache_dir)
    texts = report_texts(cache.records)
    tokenizer = create_tokenizer(tokenizer_name)
    manifest = {
        "tokenizer": str(tokenizer_name),
        "tokenizer_sha256": hashlib.sha256(tokenizer.backend_tokenizer.to_str().encode()).hexdigest(),
        "max_length": max_length,
        "texts_sha256": hashlib.sha256(json.dumps(texts.tolist()).encode()).hexdigest(),
        "format": TOKENS_FORMAT,
        # report folders written before variants match; a variant's rewrite rules are part of its key
        **({"variant": variant, "variant_sha256": _variant_rules_sha256()} if variant != "report" else {}),
    }
    suffix = "" if variant == "report" else f"-{variant}"
    name = f"{_slug(tokenizer_name)}-{manifest['tokenizer_sha256'][:8]}-L{max_length}{suffix}"
    folder = cache.path / TOKENS_DIR / name
    with _locked(cache.path):
        if not _matches(folder, manifest):
            _write_folder(folder, tokenizer, _variant_texts(texts, variant), manifest, cache.records.index)
    return folder


def _variant_rules_sha256() -> str:
    """SHA-256 of the code that rewrites reports (the flip and the labeler it reads sentences with), so that
    cached tokens of an older rewrite are never read back."""
    from cxrl.data.text import labeler, negation, phrases, sentences

    return hashlib.sha256("".join(inspect.getsource(m) for m in (negation, labeler, phrases, sentences)).encode()
                          ).hexdigest()


def _variant_texts(texts: pd.Series, variant: str) -> pd.Series:
    """``texts`` as :func:`tokenize_reports` tokenizes them for ``variant`` (None: no text)."""
    if variant == "report":
        return texts
    from cxrl.data.text.negation import negate_report

    bar = tqdm(texts, desc=f"{variant} reports", unit="report", disable=len(texts) < 1000)
    return pd.Series([negate_report(t) for t in bar], index=texts.index, dtype=object)


def _write_folder(folder: Path, tokenizer: Any, texts: pd.Series, manifest: dict[str, Any], index: pd.Index) -> None:
    """Write the tokens, then the manifest that marks the folder complete."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "manifest.json").unlink(missing_ok=True)  # incomplete until the new tokens are all written
    dtype = _write_tokens(folder, tokenizer, texts, manifest["max_length"])
    without = index[texts.isna()].tolist()
    manifest |= {"pad_id": tokenizer.pad_token_id, "dtype": dtype, "count": len(texts),
                 "text_columns": [*TEXT_COLUMNS, FALLBACK_COLUMN], "without_text": len(without),
                 "rows_without_text": without[:_SHOWN], "complete": True}
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2))


def _write_tokens(folder: Path, tokenizer: Any, texts: pd.Series, max_length: int) -> str:
    """Write ``tokens.npy`` (padded ids), ``lengths.npy`` and ``sentences.npy`` in batches; return the id dtype."""
    dtype = np.uint16 if len(tokenizer) <= np.iinfo(np.uint16).max + 1 else np.int32
    ids = np.lib.format.open_memmap(folder / "tokens.npy.tmp", mode="w+", dtype=dtype, shape=(len(texts), max_length))
    ids[:] = tokenizer.pad_token_id
    sentences = np.zeros((len(texts), max_length), dtype=np.uint8)
    lengths = np.zeros(len(texts), dtype=np.int32)
    rows = np.flatnonzero(texts.notna().to_numpy())
    for start in tqdm(range(0, len(rows), _BATCH), desc="tokenize reports", unit="batch", disable=len(rows) <= _BATCH):
        chunk = rows[start : start + _BATCH]
        chunk_texts = texts.iloc[chunk].tolist()
        encoded = tokenizer(chunk_texts, truncation=True, max_length=max_length,
                            return_offsets_mapping=bool(tokenizer.is_fast))
        offsets = encoded.get("offset_mapping", [None] * len(chunk))
        for row, text, seq, spans in zip(chunk, chunk_texts, encoded["input_ids"], offsets, strict=True):
            ids[row, : len(seq)] = seq
            lengths[row] = len(seq)
            sentences[row, : len(seq)] = token_sentences(text, spans, len(seq))
    ids.flush()
    del ids
    os.replace(folder / "tokens.npy.tmp", folder / "tokens.npy")
    np.save(folder / "lengths.npy", lengths)
    np.save(folder / "sentences.npy", sentences)
    return np.dtype(dtype).name


def token_sentences(text: str, offsets: list[tuple[int, int]] | None, n_tokens: int) -> np.ndarray:
    """The sentence number (1-based, :func:`cxrl.data.text.sentences.sentence_spans`) of each of a report's tokens
    from their character ``offsets``; 0 for special tokens (empty spans). Without offsets (a slow tokenizer) the
    whole report is sentence 1, bar its first and last (special) tokens."""
    if offsets is None:
        numbers = np.ones(n_tokens, dtype=np.uint8)
        numbers[[0, -1]] = 0
        return numbers
    starts = np.array([pieces[0][0] for pieces in sentence_spans(text)] or [0])
    first = np.array([a for a, _ in offsets])
    special = np.array([a == b for a, b in offsets])
    numbers = np.clip(np.searchsorted(starts, first, side="right"), 1, 255)
    return np.where(special, 0, numbers).astype(np.uint8)


def load_tokens(folder: str | Path) -> ReportTokens:
    """Open a folder written by :func:`tokenize_reports` without reading the tokens into memory."""
    folder = Path(folder)
    manifest = _read_manifest(folder)
    if manifest is None or not manifest.get("complete"):
        raise DataError(f"{folder}: not a complete token cache (run tokenize_reports)")
    ids = np.load(folder / "tokens.npy", mmap_mode="r")
    sentences = np.load(folder / "sentences.npy", mmap_mode="r")
    return ReportTokens(folder, ids, np.load(folder / "lengths.npy"), sentences, manifest)


def report_columns(tokens: ReportTokens, prefix: str = "report") -> dict[str, np.ndarray]:
    """The batch columns of cached tokens, row-aligned with the cache: ``{prefix}_tokens`` (N, L) token ids
    (memory-mapped), ``{prefix}_mask`` (N, L) bool, True on real tokens, and ``{prefix}_sentences`` (N, L) each
    token's sentence number (0: special tokens and padding) (a method's ``column_arrays``)."""
    mask = np.arange(tokens.ids.shape[1])[None, :] < tokens.lengths[:, None]
    return {f"{prefix}_tokens": tokens.ids, f"{prefix}_mask": mask, f"{prefix}_sentences": tokens.sentences}


def _matches(folder: Path, wanted: dict[str, Any]) -> bool:
    found = _read_manifest(folder)
    return bool(found and found.get("complete") and all(found.get(k) == v for k, v in wanted.items()))


def _read_manifest(folder: Path) -> dict[str, Any] | None:
    try:
        return json.loads((folder / "manifest.json").read_text())
    except (OSError, json.JSONDecodeError):
        return None


def _clean(value: object) -> str | None:
    return value.strip() or None if isinstance(value, str) else None


def _slug(name: str | Path) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(str(name)).name or str(name)).strip("._") or "tokenizer"
