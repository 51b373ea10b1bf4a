"""Frozen-encoder features: extracted once per (encoder weights, cache, image size) and cached on disk.

The evaluation view is :func:`cxrl.transforms.eval_view` (the whole image resized to the requested size,
normalized by :mod:`cxrl.intensity`, no augmentation). Cached files are
``<dir>/<key>.npz`` where ``key`` hashes the encoder's weights, the cache's identity and the image size, so a
re-run with the same inputs reads them back and any change recomputes.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from cxrl.data.cache import Cache
from cxrl.errors import DataError
from cxrl.precision import autocast
from cxrl.transforms import eval_view, make_view_fn

log = logging.getLogger(__name__)


def eval_input(images: np.ndarray, size: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """uint8 ``(B, H, W)`` -> normalized float ``(B, 1, size, size)`` on ``device``: the evaluation view."""
    x = torch.as_tensor(np.array(images, copy=True)).to(device)  # copy: a memmap slice is read-only
    return make_view_fn([eval_view(size)])(x, torch.zeros(len(x), dtype=torch.int64))[0]  # seeds are read on the CPU


def encoder_fingerprint(encoder: nn.Module) -> str:
    """SHA-1 of the encoder's parameter and buffer names, shapes and values (identifies weights, not files)."""
    h = hashlib.sha1()
    for name, t in encoder.state_dict().items():
        h.update(f"{name}:{tuple(t.shape)}:{t.dtype}".encode())
        h.update(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


@torch.inference_mode()
def extract_features(
    encoder: nn.Module,
    images: np.ndarray,
    image_size: int,
    device: torch.device | str = "cpu",
    batch_size: int = 128,
    desc: str | None = "features",
    precision: str = "32-true",
) -> np.ndarray:
    """Pooled features ``(N, F)`` float32 of uint8 ``images`` ``(N, H, W)`` (a memmap is read batch by batch);
    ``precision`` as in :mod:`cxrl.precision` (the encoder runs under its autocast, features come back float32)."""
    encoder = encoder.eval().to(device)
    feats = _forward_batches(
        encoder, images, image_size, device, batch_size, getattr(encoder, "num_features", 0), progress=desc,
        precision=precision,
    )
    bad = np.flatnonzero(~np.isfinite(feats).all(axis=1))
    if len(bad):
        raise DataError(
            f"the encoder produced non-finite features for {len(bad)} image(s), e.g. rows {bad[:5].tolist()}"
        )
    return feats


def _forward_batches(
    module: nn.Module,
    images: np.ndarray,
    image_size: int,
    device: torch.device | str,
    batch_size: int,
    width: int,
    progress: str | None = None,
    precision: str = "32-true",
) -> np.ndarray:
    """``module`` over uint8 ``images`` batch by batch through the evaluation view: float32 ``(N, width)``.

    ``progress`` names a progress bar over the batches (none if ``None``); ``module`` runs under the autocast of
    ``precision``. The caller sets no-grad mode.
    """
    starts = range(0, len(images), batch_size)
    if progress is not None:
        starts = tqdm(starts, desc=progress, unit="batch", leave=False)
    with autocast(device, precision):
        out = [module(eval_input(images[i : i + batch_size], image_size, device)).float().cpu().numpy() for i in starts]
    return np.concatenate(out) if out else np.zeros((0, width), np.float32)


def cache_key(fingerprint: str, cache: Cache, image_size: int, precision: str = "32-true") -> str:
    """The feature file's name: a hash of the weights (:func:`encoder_fingerprint`), the cache's path, length and
    manifest, the image size and the precision (other than float32, which keeps the keys of earlier versions)."""
    ident = {
        "encoder": fingerprint,
        "cache": str(cache.path),
        "count": len(cache),
        "manifest": hashlib.sha1(json.dumps(cache.manifest, sort_keys=True, default=str).encode()).hexdigest(),
        "image_size": image_size,
        "view": repr(eval_view(image_size)),
    }
    if precision != "32-true":
        ident["precision"] = precision
    return hashlib.sha1(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:16]


def cached_features(
    encoder: nn.Module,
    fingerprint: str,
    cache: Cache,
    image_size: int,
    folder: str | Path,
    device: torch.device | str = "cpu",
    batch_size: int = 128,
    precision: str = "32-true",
) -> np.ndarray:
    """Features of every image of ``cache``, read from ``folder/<key>.npz`` or extracted and saved there;
    ``fingerprint`` is ``encoder_fingerprint(encoder)``."""
    folder = Path(folder)
    path = folder / f"{cache_key(fingerprint, cache, image_size, precision)}.npz"
    if path.is_file():
        log.info("features: reusing %s", path)
        with np.load(path, allow_pickle=False) as f:
            return f["features"]
    feats = extract_features(
        encoder, cache.images, image_size, device, batch_size, desc=f"features {cache.path.name}", precision=precision
    )
    folder.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, features=feats)
    os.replace(tmp, path)
    return feats
