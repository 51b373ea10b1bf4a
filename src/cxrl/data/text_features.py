"""Pooled features of a frozen text tower, computed once per report and cached beside the report tokens, so a
locked text tower (LiT, Zhai et al., CVPR 2022, section 3, with the roles of the towers swapped) never runs in
the training loop::

    CACHE/tokens/{tokens folder}/features-{sha8}.npy   (N, D) float32, row i <-> images[i]; zeros: no report
    CACHE/tokens/{tokens folder}/sentence-features-{sha8}.npy  (U, D) float32, one row per distinct sentence view
    CACHE/tokens/{tokens folder}/sentence-index-{sha8}.npy     (N, S) int32, report i's sentence k+1 in it; -1: none

A sentence view is what :func:`cxrl.transforms.sentence_view` feeds the tower: the report's special tokens around
one sentence's tokens, so ConVIRT's ``t_u`` works on a locked tower too. ``sha8`` hashes the tower's weights and
pooling, so features of another tower (or another checkpoint) are never read back.
"""

from __future__ import annotations

import hashlib
import os

import numpy as np
import torch
from filelock import FileLock
from torch import nn
from tqdm.auto import tqdm

from cxrl.data.tokens import ReportTokens
from cxrl.errors import DataError

BATCH = 128


def tower_fingerprint(tower: nn.Module) -> str:
    """SHA-256 (hex) of the tower's pooling and of every tensor in its state dict, in order."""
    digest = hashlib.sha256(str(getattr(tower, "pooling", "")).encode())
    for name, tensor in tower.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def cached_text_features(tokens: ReportTokens, tower: nn.Module, device: str | None = None) -> np.ndarray:
    """``(N, D)`` pooled features of every report in ``tokens`` through ``tower`` (eval mode, no gradient),
    written once as ``features-{sha8}.npy`` in the tokens folder and memory-mapped; processes that ask at once
    (DDP ranks) wait for the first to write them. ``device``: default CUDA where available, else CPU."""
    path = tokens.path / f"features-{tower_fingerprint(tower)[:8]}.npy"
    with FileLock(tokens.path / "features.lock"):
        if not path.is_file():
            _write_features(path, tokens, tower, device or ("cuda" if torch.cuda.is_available() else "cpu"))
    return np.load(path, mmap_mode="r")


def cached_sentence_features(tokens: ReportTokens, tower: nn.Module,
                             device: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(U, D)`` pooled features of every distinct sentence view of the reports in ``tokens`` (memory-mapped) and
    the ``(N, S)`` int32 row of report i's sentence k+1 among them (-1 past its last sentence); written once like
    :func:`cached_text_features`."""
    key = tower_fingerprint(tower)[:8]
    table, index = (tokens.path / f"sentence-{name}-{key}.npy" for name in ("features", "index"))
    with FileLock(tokens.path / "features.lock"):
        if not (table.is_file() and index.is_file()):
            views, rows = sentence_views(tokens)
            _save(index, rows)
            _save(table, _pooled(tower, views, device or ("cuda" if torch.cuda.is_available() else "cpu")))
    return np.load(table, mmap_mode="r"), np.load(index)


def sentence_views(tokens: ReportTokens) -> tuple[list[tuple[int, ...]], np.ndarray]:
    """The distinct sentence views (token ids: the report's special tokens around one sentence) and the ``(N, S)``
    index of each report's sentences among them (-1: none)."""
    distinct: dict[tuple[int, ...], int] = {}
    rows = np.full((len(tokens.lengths), max(int(tokens.sentences.max(initial=0)), 1)), -1, dtype=np.int32)
    for i, length in enumerate(tokens.lengths):
        ids, numbers = tokens.ids[i, :length].tolist(), tokens.sentences[i, :length]
        special = [t for t, k in zip(ids, numbers, strict=True) if k == 0]
        for k in range(1, int(numbers.max(initial=0)) + 1):
            view = (*special[:1], *(t for t, n in zip(ids, numbers, strict=True) if n == k), *special[1:])
            rows[i, k - 1] = distinct.setdefault(view, len(distinct))
    return list(distinct), rows


def _write_features(path, tokens: ReportTokens, tower: nn.Module, device: str) -> None:
    rows = np.flatnonzero(tokens.lengths > 0)
    if not len(rows):
        raise DataError(f"{tokens.path}: no report has tokens, so there are no text features to cache")
    views = [tuple(tokens.ids[i, : tokens.lengths[i]].tolist()) for i in rows]
    pooled = _pooled(tower, views, device)
    features = np.zeros((len(tokens.lengths), pooled.shape[1]), dtype=np.float32)
    features[rows] = pooled
    _save(path, features)


def _pooled(tower: nn.Module, views: list[tuple[int, ...]], device: str) -> np.ndarray:
    """``(len(views), D)`` pooled features of token-id sequences, in eval mode without gradient, batched by length."""
    was_training, home = tower.training, next(tower.parameters()).device
    order = np.argsort([len(v) for v in views], kind="stable")
    out: np.ndarray | None = None
    tower.eval().to(device)
    try:
        with torch.no_grad():
            for start in tqdm(range(0, len(views), BATCH), desc="text features", unit="batch",
                              disable=len(views) <= 10 * BATCH):
                chunk = order[start : start + BATCH]
                width = max(len(views[j]) for j in chunk)
                ids = torch.zeros(len(chunk), width, dtype=torch.long)
                mask = torch.zeros(len(chunk), width, dtype=torch.long)
                for r, j in enumerate(chunk):
                    ids[r, : len(views[j])] = torch.tensor(views[j])
                    mask[r, : len(views[j])] = 1
                pooled = tower(ids.to(device), mask.to(device)).pooled.float().cpu().numpy()
                out = np.zeros((len(views), pooled.shape[1]), dtype=np.float32) if out is None else out
                out[chunk] = pooled
    finally:
        tower.train(was_training).to(home)
    return out


def _save(path, array: np.ndarray) -> None:
    partial = path.with_name(path.stem + ".partial.npy")
    np.save(partial, array)
    os.replace(partial, path)
