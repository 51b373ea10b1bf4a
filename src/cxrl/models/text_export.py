"""Exported text encoders: a ``text/`` folder holding ``encoder.safetensors``, ``encoder.json`` and the tokenizer.

The layout of :mod:`cxrl.models.export` (weights never pickled, the JSON sidecar also in the safetensors header),
one folder down so that a run's image and text encoders sit side by side. The sidecar adds ``modality: text`` and
the HF config, so the architecture is rebuilt without the original model folder or hub.
"""

from __future__ import annotations

import json
from importlib.metadata import version
from pathlib import Path
from typing import Any

from safetensors.torch import save_file

from cxrl.errors import ConfigError, DataError
from cxrl.models.export import _HEADER_KEY, META_FILE, WEIGHTS_FILE, check_sha256, read_meta, weights_sha256
from cxrl.models.export import _versions as export_versions
from cxrl.models.text import TextEncoder, build_from_config
from cxrl.models.weights import load_state_into, read_state_dict

TEXT_DIR = "text"
REQUIRED_META = ("max_length", "method", "config")


def save_text_encoder(run_dir: str | Path, encoder: TextEncoder, meta: dict[str, Any]) -> Path:
    """Write ``run_dir/text/`` (weights, sidecar, tokenizer); return the weights path.

    ``meta`` must hold ``max_length`` (tokens fed in training), ``method`` and ``config``; this adds ``modality``,
    ``backbone``, ``build_kwargs``, ``pooling``, ``num_features``, ``hf_config``, ``versions`` and ``weights_sha256``
    (checked by :func:`load_text_encoder`).
    """
    missing = [k for k in REQUIRED_META if k not in meta]
    if missing:
        raise ConfigError(f"save_text_encoder: meta lacks {missing}; it must hold {list(REQUIRED_META)}")
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in encoder.model.state_dict().items()}
    full = {
        **meta,
        "modality": "text",
        "backbone": encoder.name,
        "build_kwargs": encoder.build_kwargs,
        "pooling": encoder.pooling,
        "num_features": encoder.num_features,
        "hf_config": encoder.model.config.to_dict(),
        "versions": {**meta.get("versions", {}), **_versions()},
        "weights_sha256": weights_sha256(tensors),
    }
    text = json.dumps(full, indent=2, sort_keys=True, default=str)
    folder = Path(run_dir) / TEXT_DIR
    folder.mkdir(parents=True, exist_ok=True)
    save_file(tensors, folder / WEIGHTS_FILE, metadata={_HEADER_KEY: text})
    (folder / META_FILE).write_text(text + "\n")
    encoder.tokenizer.save_pretrained(str(folder))
    return folder / WEIGHTS_FILE


def load_text_encoder(path: str | Path) -> tuple[TextEncoder, dict[str, Any]]:
    """Rebuild an exported text encoder from a run folder, its ``text/`` folder or the weights file (eval mode)."""
    from transformers import AutoConfig

    from cxrl.models.text_tokenizer import create_tokenizer

    path = Path(path)
    folder = path.parent if path.is_file() else path / TEXT_DIR if (path / TEXT_DIR).is_dir() else path
    weights = folder / WEIGHTS_FILE
    if not weights.is_file():
        raise DataError(f"load_text_encoder: {weights} does not exist")
    meta = read_meta(weights)
    if meta.get("modality") != "text" or "hf_config" not in meta:
        raise DataError(f"{weights}: not a cxrl text encoder (no 'modality: text' and 'hf_config' in its metadata)")
    hf_config = dict(meta["hf_config"])
    config = AutoConfig.for_model(hf_config.pop("model_type"), **hf_config)
    build_kwargs = {**meta["build_kwargs"], "tokenizer": str(folder)}
    encoder = build_from_config(config, create_tokenizer(folder), meta["backbone"], meta["pooling"], build_kwargs)
    state = read_state_dict(weights)
    check_sha256(weights, state, meta)
    load_state_into(encoder.model, state, str(weights), strict=True)
    return encoder.eval(), meta


def _versions() -> dict[str, str]:
    """The image export's versions (torch, cxrl, timm) plus the HF libraries that built and tokenize the encoder."""
    return {**export_versions(), **{package: version(package) for package in ("transformers", "tokenizers")}}
