"""``cxrl pretrain --resume`` safety checks: the checkpoint is read safely and must match the run being resumed.

A resume continues the same model on the same cache; anything else (another backbone or head size, another
cache, a truncated or foreign file) is a clear error before Lightning touches the checkpoint.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from cxrl.data.cache import Cache
from cxrl.errors import ConfigError, DataError

DATA_KEY = "cxrl_data"  # where the checkpoint records the cache it was trained on


def data_identity(cache: Cache) -> dict[str, Any]:
    """What identifies a cache across runs: its folder and the job fingerprint of its manifest."""
    return {"path": str(cache.path), "job": cache.manifest.get("job")}


def read_checkpoint(ckpt: Path) -> dict[str, Any]:
    """``last.ckpt`` read with torch's safe loader (tensors and plain data only); any failure is a DataError."""
    try:
        state = torch.load(ckpt, map_location="cpu", weights_only=True, mmap=True)
    except Exception as e:  # truncated zip, foreign pickle, forbidden global: all mean "not a usable checkpoint"
        raise DataError(
            f"--resume: {ckpt} cannot be read as a cxrl checkpoint ({type(e).__name__}: truncated, corrupt or "
            "not written by cxrl); restore it, or move it away to start the run over"
        ) from e
    if not isinstance(state, dict) or not isinstance(state.get("state_dict"), dict):
        raise DataError(f"--resume: {ckpt} holds no model state_dict; it was not written by cxrl pretrain")
    return state


def check_same_data(state: dict[str, Any], cache: Cache, ckpt: Path) -> None:
    """Refuse to continue on another cache than the one the checkpoint was trained on."""
    trained, found = state.get(DATA_KEY), data_identity(cache)
    if not isinstance(trained, dict):
        return  # written before cxrl recorded its data
    by_job = bool(trained.get("job") and found["job"])  # a cache moved elsewhere is still the same cache
    if (trained.get("job") != found["job"]) if by_job else (trained.get("path") != found["path"]):
        raise ConfigError(
            f"--resume: {ckpt} was trained on the cache {trained['path']}, not on {found['path']}; "
            "resume with the same --data, or start a new run with another --out"
        )


def check_same_model(state: dict[str, Any], model: torch.nn.Module, ckpt: Path) -> None:
    """Refuse a checkpoint whose parameter names or shapes differ from ``model``."""
    saved = {k: tuple(v.shape) for k, v in state["state_dict"].items()}
    wanted = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    differ = sorted(k for k in saved.keys() | wanted.keys() if saved.get(k) != wanted.get(k))
    if differ:
        raise ConfigError(
            f"--resume: {ckpt} holds another model than this config builds ({len(differ)} tensor(s) differ, "
            f"first {differ[0]!r}: saved {saved.get(differ[0])}, built {wanted.get(differ[0])}); "
            "resume without overrides that change the model"
        )
