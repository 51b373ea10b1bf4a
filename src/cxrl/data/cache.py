"""The preprocessed image cache: the only thing the training hot path reads.

Layout of a cache folder::

    images.npy       (N, H, W) uint8, memory-mapped (numpy .npy format)
    records.parquet  the record table, row i <-> images[i]; adds cache_index, orig_height,
                     orig_width, scale, pad_top, pad_left (to map source-pixel boxes into the cache)
    manifest.json    source, options, versions, counts, skipped files with reasons
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cxrl.errors import DataError

IMAGES = "images.npy"
RECORDS = "records.parquet"
MANIFEST = "manifest.json"


@dataclass
class Cache:
    """An opened cache: ``records`` (DataFrame), ``images`` (memory-mapped N x H x W uint8)."""

    path: Path
    records: pd.DataFrame
    images: np.ndarray
    manifest: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.records)

    @property
    def image_size(self) -> int:
        return int(self.images.shape[1])

    def read(self, indices: np.ndarray | list[int]) -> np.ndarray:
        """Images at ``indices`` (any order, repeats allowed) as one ``(B, H, W)`` uint8 array.

        Rows are fetched in ascending file order (sequential access to the memory map), then put back in the
        requested order.
        """
        indices = np.asarray(indices, dtype=np.int64)
        order = np.argsort(indices, kind="stable")
        batch = np.empty((len(indices), *self.images.shape[1:]), dtype=self.images.dtype)
        batch[order] = self.images[indices[order]]
        return batch


def open_cache(path: str | Path) -> Cache:
    """Open a cache folder written by ``cxrl prepare`` (or :func:`write_cache`) without loading images."""
    path = Path(path).expanduser().resolve()
    for name in (IMAGES, RECORDS, MANIFEST):
        if not (path / name).is_file():
            raise DataError(f"{path} is not a complete cxrl cache: {name} is missing (run `cxrl prepare`)")
    manifest = json.loads((path / MANIFEST).read_text())
    if not manifest.get("complete", False):
        raise DataError(f"cache {path} is incomplete (an interrupted `cxrl prepare`?); run prepare again to resume")
    images = np.load(path / IMAGES, mmap_mode="r")
    records = pd.read_parquet(path / RECORDS)
    if len(records) != images.shape[0]:
        raise DataError(f"cache {path}: {len(records)} records but {images.shape[0]} images")
    return Cache(path=path, records=records, images=images, manifest=manifest)


def as_cache(cache: Cache | str | Path) -> Cache:
    """``cache`` itself when already opened, else :func:`open_cache` of the folder."""
    return cache if isinstance(cache, Cache) else open_cache(cache)


def write_manifest(path: Path, manifest: dict[str, Any]) -> None:
    """Write ``manifest.json`` atomically (write then rename)."""
    tmp = path / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=2, default=str))
    os.replace(tmp, path / MANIFEST)


def write_cache(path: str | Path, images: np.ndarray, records: pd.DataFrame, manifest: dict[str, Any]) -> Cache:
    """Write an in-memory ``(N, H, W)`` uint8 array and its records as a complete cache."""
    if images.dtype != np.uint8 or images.ndim != 3:
        raise DataError(f"cache images must be (N, H, W) uint8, found {images.dtype} {images.shape}")
    if len(records) != len(images):
        raise DataError(f"{len(records)} records for {len(images)} images")
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    np.save(path / IMAGES, images)
    records.reset_index(drop=True).to_parquet(path / RECORDS, index=False)
    write_manifest(path, {**manifest, "count": len(records), "size": int(images.shape[1]), "complete": True})
    return open_cache(path)
