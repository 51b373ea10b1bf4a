"""The open_clip door: third-party image-text models (CLIP, BiomedCLIP, ...) behind cxrl's image and text contracts.

``load_open_clip("open_clip:ARCH", weights=FILE)`` builds open_clip architecture ``ARCH`` (random init, no
download) and loads a local ``open_clip_pytorch_model.bin`` / ``.safetensors`` (never unpickled objects);
``load_open_clip("open_clip:hf-hub:ORG/NAME")`` fetches config, weights and tokenizer from the Hugging Face hub
(needs internet or a filled Hugging Face cache). The result has

- ``image``: a cxrl :class:`~cxrl.models.encoders.Encoder` taking the canonical one-channel tensor
  (``cxrl.intensity``), which it maps back to ``[0, 1]``, replicates to RGB, resizes to the tower's input size and
  normalizes with the model's own preprocessing mean/std before open_clip's ``encode_image`` (projected features);
- ``text``: ``encode_text(list[str]) -> (N, D)`` with the model's own tokenizer, as
  :mod:`cxrl.evaluate.zeroshot` and :mod:`cxrl.evaluate.retrieval` take it.

``create_encoder("open_clip:...")`` returns the image side alone, so a linear probe reads it like any encoder.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from cxrl import intensity
from cxrl.errors import ConfigError, CxrlError
from cxrl.models.encoders import Encoder
from cxrl.models.weights import load_state_into, read_state_dict

PREFIX = "open_clip:"
HF_HUB = "hf-hub:"


class OpenClipImage(nn.Module):
    """open_clip's image tower fed from cxrl's ``(x / 255 - 0.5) / 0.25`` one-channel tensor (square resize)."""

    def __init__(self, visual: nn.Module, size: tuple[int, int], mean: tuple[float, ...], std: tuple[float, ...]):
        super().__init__()
        self.visual = visual
        self.size = size
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)
        self.num_features = int(visual.output_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != 1:
            raise CxrlError(f"open_clip image tower: expected a (B, 1, H, W) cxrl batch, found {tuple(x.shape)}")
        gray = x * intensity.STD + intensity.MEAN
        if tuple(gray.shape[-2:]) != self.size:
            gray = F.interpolate(gray, size=self.size, mode="bicubic", antialias=True).clamp(0, 1)
        return self.visual((gray.expand(-1, 3, -1, -1) - self.mean) / self.std)


class OpenClipText:
    """``encode_text(texts) -> (N, D)``: open_clip's projected text features, tokenized by the model's tokenizer."""

    def __init__(self, model: nn.Module, tokenizer: Any, batch_size: int = 256):
        self.model = model
        self.tokenizer = tokenizer
        self.batch_size = batch_size

    @torch.no_grad()
    def encode_text(self, texts: list[str]) -> torch.Tensor:
        device = next(self.model.parameters()).device
        chunks = [texts[i:i + self.batch_size] for i in range(0, len(texts), self.batch_size)]
        return torch.cat([self.model.encode_text(self.tokenizer(chunk).to(device)) for chunk in chunks])

    __call__ = encode_text

    def to(self, device: torch.device | str) -> OpenClipText:
        self.model.to(device)
        return self


@dataclass
class OpenClipModel:
    """Both sides of one open_clip model; ``model`` is open_clip's own module (eval mode)."""

    image: Encoder
    text: OpenClipText
    model: nn.Module


def load_open_clip(name: str, weights: str | Path | None = None, in_chans: int = 1, **kwargs: Any) -> OpenClipModel:
    """Build ``open_clip:ARCH`` or ``open_clip:hf-hub:ORG/NAME``, load ``weights`` if given, and wrap both sides.

    ``kwargs`` go to ``open_clip.create_model`` (e.g. ``embed_dim``, ``vision_cfg``, ``text_cfg``) and are saved
    with an exported image encoder so that it rebuilds.
    """
    open_clip = _import_open_clip(name)
    if in_chans != 1:
        raise ConfigError(f"encoder {name!r}: takes cxrl's one-channel images (in_chans=1), found in_chans={in_chans}")
    model_name = name.removeprefix(PREFIX)
    model = _create_model(open_clip, name, model_name, kwargs, quiet_random_init=weights is not None)
    if weights is not None:
        load_state_into(model, read_state_dict(Path(weights)), str(weights))
    model.eval()
    context_length = getattr(model, "context_length", None)  # None: the tokenizer's default
    tokenizer = _fetch(name, lambda: open_clip.get_tokenizer(model_name, context_length=context_length))
    cfg = open_clip.get_model_preprocess_cfg(model)
    size = cfg["size"] if isinstance(cfg["size"], tuple | list) else (cfg["size"], cfg["size"])
    visual = OpenClipImage(model.visual, (int(size[0]), int(size[1])), tuple(cfg["mean"]), tuple(cfg["std"]))
    image = Encoder(visual, name, visual.num_features, {"in_chans": in_chans, **kwargs})
    return OpenClipModel(image=image.eval(), text=OpenClipText(model, tokenizer), model=model)


def _import_open_clip(name: str) -> Any:
    try:
        import open_clip
    except ImportError as e:
        raise ConfigError(f"encoder {name!r} needs the package open_clip_torch: pip install 'cxrl[openclip]'") from e
    return open_clip


class _RandomInitNotice(logging.Filter):
    """open_clip's 'No pretrained weights loaded ... initialized randomly', untrue once a weights file follows."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("No pretrained weights loaded")


def _create_model(
    open_clip: Any, name: str, model_name: str, kwargs: dict[str, Any], quiet_random_init: bool
) -> nn.Module:
    if not model_name.startswith(HF_HUB) and model_name not in open_clip.list_models():
        raise ConfigError(f"encoder {name!r}: open_clip has no architecture {model_name!r}; "
                          f"see open_clip.list_models() (e.g. RN50, ViT-B-32) or use open_clip:hf-hub:ORG/NAME")
    notice = _RandomInitNotice()
    if quiet_random_init:
        logging.getLogger().addFilter(notice)  # open_clip logs through the root logger
    try:
        return _fetch(name, lambda: open_clip.create_model(model_name, pretrained=None, **kwargs))
    except TypeError as e:  # unknown constructor keyword
        raise ConfigError(f"encoder {name!r}: open_clip could not build it with {kwargs}: {e}") from e
    finally:
        logging.getLogger().removeFilter(notice)


def _fetch(name: str, build: Callable[[], Any]) -> Any:
    """Run ``build``; a hub model's network/cache failure becomes a ConfigError naming what is missing."""
    if not name.removeprefix(PREFIX).startswith(HF_HUB):
        return build()
    try:
        return build()
    except Exception as e:  # huggingface_hub raises many types: offline, missing repo, gated, network
        repo = name.removeprefix(PREFIX).removeprefix(HF_HUB)
        raise ConfigError(
            f"encoder {name!r}: could not fetch the Hugging Face hub repository {repo!r} (its open_clip_config.json, "
            f"weights and tokenizer); this needs internet or a filled Hugging Face cache, or build open_clip:ARCH "
            f"with weights=/path/to/open_clip_pytorch_model.bin ({type(e).__name__}: {e})"
        ) from e
