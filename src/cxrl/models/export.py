"""Exported encoders: ``encoder.safetensors`` (weights, never pickled) + ``encoder.json`` (how to rebuild and feed it).

The JSON sidecar is also stored in the safetensors header, so a lone ``.safetensors`` file still loads.
A run may hold several named encoders: ``image`` at the run root, ``text`` in ``RUN/text/``
(:mod:`cxrl.models.text_export`); :func:`save_named_encoder` writes and :func:`load_encoder` reads any of them.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save

from cxrl import intensity
from cxrl.errors import ConfigError, DataError
from cxrl.models.encoders import Encoder, create_encoder
from cxrl.models.weights import load_state_into, read_state_dict

WEIGHTS_FILE = "encoder.safetensors"
META_FILE = "encoder.json"
REQUIRED_META = ("image_size", "method", "config")
ENCODER_NAMES = ("image", "text")  # image: the run root; text: RUN/text/
_HEADER_KEY = "cxrl_meta"


def save_encoder(run_dir: str | Path, encoder: Encoder, meta: dict[str, Any]) -> Path:
    """Write ``run_dir/encoder.safetensors`` and ``run_dir/encoder.json``; return the weights path.

    ``meta`` must hold ``image_size``, ``method`` and ``config``; this adds ``backbone``, ``build_kwargs``,
    ``num_features``, ``intensity`` (the canonical convention), ``versions`` (cxrl, torch, timm) and
    ``weights_sha256`` (:func:`weights_sha256`, checked by :func:`load_encoder`).
    """
    missing = [k for k in REQUIRED_META if k not in meta]
    if missing:
        raise ConfigError(f"save_encoder: meta lacks {missing}; it must hold {list(REQUIRED_META)}")
    if meta.get("backbone", encoder.name) != encoder.name:
        raise ConfigError(f"save_encoder: meta names backbone {meta['backbone']!r} but the encoder is {encoder.name!r}")
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in encoder.state_dict().items()}
    full = {
        **meta,
        "backbone": encoder.name,
        "build_kwargs": encoder.build_kwargs,
        "num_features": encoder.num_features,
        "intensity": intensity.CONVENTION,
        "versions": {**meta.get("versions", {}), **_versions()},
        "weights_sha256": weights_sha256(tensors),
    }
    text = json.dumps(full, indent=2, sort_keys=True, default=str)
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    _write_atomically(run_dir / WEIGHTS_FILE, save(tensors, metadata={_HEADER_KEY: text}))
    _write_atomically(run_dir / META_FILE, (text + "\n").encode())
    return run_dir / WEIGHTS_FILE


def save_named_encoder(run_dir: str | Path, name: str, encoder: Any, meta: dict[str, Any]) -> Path:
    """Export the encoder a method calls ``name`` (one of :data:`ENCODER_NAMES`) with its sidecar and SHA-256."""
    if name == "image":
        return save_encoder(run_dir, encoder, meta)
    if name == "text":
        from cxrl.models.text_export import save_text_encoder  # imports transformers: only for text encoders

        return save_text_encoder(run_dir, encoder, meta)
    raise ConfigError(f"cannot export an encoder named {name!r}; cxrl exports {', '.join(ENCODER_NAMES)}")


def _write_atomically(path: Path, data: bytes) -> None:
    """Write ``data`` beside ``path`` then rename it over; permissions follow the umask like any other file."""
    partial = path.with_name(path.name + ".partial")
    partial.write_bytes(data)
    os.replace(partial, path)


def weights_sha256(state: Mapping[str, torch.Tensor]) -> str:
    """SHA-256 over every tensor's name, dtype, shape and bytes, in name order: changes with any flipped bit."""
    digest = hashlib.sha256()
    for name in sorted(state):
        tensor = state[name].detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def load_encoder(path: str | Path, name: str = "image") -> tuple[Any, dict[str, Any]]:
    """Rebuild an exported encoder from a run directory (its encoder ``name``, see :data:`ENCODER_NAMES`) or a
    ``.safetensors`` file (of any modality); return it (eval mode) and meta."""
    if name not in ENCODER_NAMES:
        raise ConfigError(f"load_encoder: no encoder named {name!r}; cxrl exports {', '.join(ENCODER_NAMES)}")
    folder = Path(path) if name == "image" else Path(path) / name
    weights = folder / WEIGHTS_FILE if Path(path).is_dir() else Path(path)
    if not weights.is_file():
        raise DataError(f"load_encoder: {weights} does not exist")
    meta = read_meta(weights)
    if meta.get("modality") == "text":
        from cxrl.models.text_export import load_text_encoder

        return load_text_encoder(weights)
    if meta.get("intensity") != intensity.CONVENTION:
        raise DataError(
            f"{weights}: trained with intensity convention {meta.get('intensity')}, "
            f"but this cxrl feeds models {intensity.CONVENTION}"
        )
    build_kwargs = dict(meta.get("build_kwargs", {}))
    encoder = create_encoder(meta["backbone"], **build_kwargs)
    state = read_state_dict(weights)
    check_sha256(weights, state, meta)
    load_state_into(encoder, state, str(weights), strict=True)
    return encoder.eval(), meta


def check_sha256(weights: Path, state: Mapping[str, torch.Tensor], meta: dict[str, Any]) -> None:
    """Refuse weights whose :func:`weights_sha256` differs from the one their sidecar recorded at export."""
    if "weights_sha256" in meta and weights_sha256(state) != meta["weights_sha256"]:
        raise DataError(
            f"{weights}: the weights do not match the SHA-256 recorded at export (file corrupted or altered); "
            "copy or export it again"
        )


def read_meta(weights: Path) -> dict[str, Any]:
    """The sidecar ``encoder.json`` beside ``weights``, else the copy in the safetensors header."""
    sidecar = weights.with_name(META_FILE)
    source = sidecar if sidecar.is_file() else weights
    text = sidecar.read_text() if sidecar.is_file() else _header_meta(weights)
    try:
        meta = json.loads(text)
    except json.JSONDecodeError as e:
        raise DataError(f"{source}: encoder metadata is not valid JSON ({e})") from e
    if not isinstance(meta, dict) or "backbone" not in meta:
        raise DataError(f"{source}: encoder metadata lacks 'backbone'")
    return meta


def _header_meta(weights: Path) -> str:
    try:
        with safe_open(weights, framework="pt") as f:
            header = (f.metadata() or {}).get(_HEADER_KEY)
    except Exception as e:  # safetensors raises its own error types for a corrupt header
        raise DataError(f"{weights}: not a readable safetensors file ({type(e).__name__}: {e})") from e
    if header is None:
        raise DataError(f"{weights}: no {META_FILE} beside it and no cxrl metadata in its header")
    return header


def _versions() -> dict[str, str]:
    out = {"torch": torch.__version__}
    for package in ("cxrl", "timm"):
        try:
            out[package] = version(package)
        except PackageNotFoundError:
            out[package] = "unknown"
    return out
