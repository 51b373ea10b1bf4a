"""Image-text models as the evaluations read them: both sides mapped into one joint embedding space.

A cxrl image-text run (ConVIRT, ...) exports its image encoder (``encoder.safetensors``, what the linear probe
reads), its text encoder (``text/``) and the two projection heads to the joint space (``projection.safetensors``
+ ``projection.json``, each head saved with the name and arguments of the factory in
:data:`cxrl.models.heads.HEADS` that rebuilds it). :func:`load_image_text` joins them into an
:class:`ImageTextModel`; ``open_clip:NAME`` models come through :mod:`cxrl.models.open_clip_door` as the same type.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from cxrl.errors import ConfigError, DataError
from cxrl.models.heads import HEADS

PROJECTION_FILE = "projection.safetensors"
PROJECTION_META = "projection.json"
SIDES = ("image", "text")


class Projection(nn.Module):
    """A head built by ``HEADS[kind](**kwargs)`` that remembers how it was built (so an export can rebuild it)."""

    def __init__(self, kind: str, **kwargs: Any) -> None:
        super().__init__()
        if kind not in HEADS:
            raise ConfigError(f"projection head {kind!r}: expected one of {', '.join(HEADS)}")
        self.kind, self.kwargs = kind, kwargs
        self.net = HEADS[kind](**kwargs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class JointImage(nn.Module):
    """Pixels -> the joint space: an image encoder followed by its projection (``num_features`` = joint width)."""

    def __init__(self, encoder: nn.Module, projection: nn.Module, num_features: int) -> None:
        super().__init__()
        self.encoder, self.projection, self.num_features = encoder, projection, num_features
        self.name = getattr(encoder, "name", type(encoder).__name__)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.projection(self.encoder(x))


class JointText:
    """``encode_text(texts) -> (N, D)``: tokenize (``max_length``), encode, pool and project, in batches."""

    def __init__(self, encoder: nn.Module, projection: nn.Module, max_length: int, batch_size: int = 256) -> None:
        self.encoder, self.projection = encoder.eval(), projection.eval()
        self.max_length, self.batch_size = max_length, batch_size

    @torch.no_grad()
    def encode_text(self, texts: list[str]) -> torch.Tensor:
        device = next(self.projection.parameters()).device
        out = []
        for start in range(0, len(texts), self.batch_size):
            tokens = self.encoder.tokenize(list(texts[start:start + self.batch_size]), self.max_length)
            pooled = self.encoder(tokens["input_ids"].to(device), tokens["attention_mask"].to(device)).pooled
            out.append(self.projection(pooled).float().cpu())
        return torch.cat(out)

    __call__ = encode_text

    def to(self, device: torch.device | str) -> JointText:
        self.encoder.to(device)
        self.projection.to(device)
        return self


class TextSide(Protocol):
    """Texts -> ``(N, D)`` joint-space tensor; ``to(device)`` moves the model (and returns the side)."""

    def __call__(self, texts: list[str]) -> torch.Tensor: ...

    def to(self, device: torch.device | str) -> TextSide: ...


@dataclass
class ImageTextModel:
    """Both sides of an image-text model: ``image`` (a module, pixels -> joint space; its ``encoder`` is what the
    linear probe reads where it has one) and ``text`` (texts -> joint space), plus the export's ``meta``."""

    image: nn.Module
    text: TextSide
    meta: dict[str, Any]


def save_projections(run_dir: str | Path, heads: Mapping[str, Projection], meta: dict[str, Any]) -> Path:
    """Write ``run_dir/projection.safetensors`` (``image.*`` and ``text.*`` weights) and ``projection.json``."""
    if set(heads) != set(SIDES):
        raise ConfigError(f"save_projections: expected the heads {SIDES}, found {sorted(heads)}")
    tensors = {f"{side}.{k}": v.detach().cpu().contiguous().clone()
               for side, head in heads.items() for k, v in head.state_dict().items()}
    full = {**meta, "heads": {side: {"kind": head.kind, "kwargs": head.kwargs} for side, head in heads.items()}}
    run_dir = Path(run_dir)
    save_file(tensors, run_dir / PROJECTION_FILE)
    (run_dir / PROJECTION_META).write_text(json.dumps(full, indent=2, sort_keys=True, default=str) + "\n")
    return run_dir / PROJECTION_FILE


def load_projections(run_dir: str | Path) -> tuple[dict[str, Projection], dict[str, Any]]:
    """The two heads written by :func:`save_projections` (eval mode) and their meta."""
    run_dir = Path(run_dir)
    meta_path, weights = run_dir / PROJECTION_META, run_dir / PROJECTION_FILE
    if not meta_path.is_file() or not weights.is_file():
        raise DataError(f"{run_dir}: no {PROJECTION_FILE} + {PROJECTION_META}; is it an image-text run (e.g. "
                        f"`cxrl pretrain convirt`)? Image-only encoders have no text side for zero-shot or retrieval")
    meta = json.loads(meta_path.read_text())
    state = load_file(weights)
    heads = {}
    for side, spec in meta["heads"].items():
        head = Projection(spec["kind"], **spec["kwargs"])
        prefix = f"{side}."
        head.load_state_dict({k.removeprefix(prefix): v for k, v in state.items() if k.startswith(prefix)})
        heads[side] = head.eval()
    return heads, meta


def load_image_text(source: str | Path, weights: str | Path | None = None) -> ImageTextModel:
    """The image-text model of a cxrl run folder, or of ``open_clip:NAME`` (with an optional local ``weights``)."""
    from cxrl.models.export import load_encoder
    from cxrl.models.open_clip_door import PREFIX, load_open_clip

    if str(source).startswith(PREFIX):
        clip = load_open_clip(str(source), weights=weights)
        return ImageTextModel(clip.image, clip.text, {"source": str(source), "weights": weights})
    if weights is not None:
        raise ConfigError("a weights file applies to open_clip:NAME encoders only; a run folder holds its own")
    heads, meta = load_projections(source)
    image, image_meta = load_encoder(source)
    text, text_meta = load_encoder(source, "text")
    joint = JointImage(image, heads["image"], int(heads["image"].kwargs["output_dim"]))
    return ImageTextModel(joint.eval(), JointText(text, heads["text"], int(text_meta["max_length"])),
                          {**meta, "image": image_meta, "text": text_meta})
