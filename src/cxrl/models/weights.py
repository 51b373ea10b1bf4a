"""Load weights into an encoder from safetensors, weights-only torch files, cxrl run directories or timm's hub.

Keys are matched after stripping the wrappers training code adds (``module.``, ``encoder.``, ``backbone.``, ...).
RGB first-layer kernels are summed over their input channels to serve one-channel radiographs. Missing keys are an
error (or a warning with ``strict=False``), unexpected keys are listed in a warning, and a load that matches no key
at all is always an error.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import timm
import torch
from safetensors.torch import load_file
from torch import nn

from cxrl.errors import ConfigError, DataError

if TYPE_CHECKING:
    from cxrl.models.encoders import Encoder

WRAPPER_KEYS = ("state_dict", "model", "model_state", "model_state_dict", "encoder", "backbone")
# Wrappers added by DDP, torch.compile, Lightning modules, MoCo's query encoder and cxrl's own PretrainModule.
KEY_PREFIXES = ("module.", "_orig_mod.", "model.", "method.", "encoder.", "encoder_q.", "backbone.")
TORCH_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt", ".tar")
_SHOWN = 8


def load_weights(encoder: Encoder, source: str | Path, strict: bool = True) -> None:
    """Load ``source`` into ``encoder.backbone`` (see ``create_encoder`` for the accepted sources)."""
    source_name = str(source)
    state = _hub_state(encoder, source_name) if source_name.startswith("hub:") else read_state_dict(Path(source))
    load_state_into(encoder.backbone, state, source_name, strict=strict)


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Tensors of a weights file or of ``encoder.safetensors`` in a run directory; never unpickles objects."""
    if path.is_dir():
        path = path / "encoder.safetensors"
    if not path.is_file():
        raise DataError(f"weights {path}: no such file")
    if path.suffix != ".safetensors" and not path.name.endswith(TORCH_SUFFIXES):
        raise DataError(f"weights {path}: unknown format; expected .safetensors or one of {', '.join(TORCH_SUFFIXES)}")
    try:
        if path.suffix == ".safetensors":
            return load_file(path)
        content = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # corrupt files and pickled objects: the readers raise many different types
        raise DataError(f"weights {path}: cannot be read as {path.suffix} weights ({type(e).__name__}: {e})") from e
    return _unwrap(content, path)


def _unwrap(obj: object, path: Path) -> dict[str, torch.Tensor]:
    """The tensor mapping inside common checkpoint wrappers (``{"state_dict": ...}``, ``{"model": ...}``)."""
    while isinstance(obj, Mapping):
        inner = next((obj[k] for k in WRAPPER_KEYS if isinstance(obj.get(k), Mapping)), None)
        if inner is None:
            break
        obj = inner
    if not isinstance(obj, Mapping):
        raise DataError(f"weights {path}: expected a mapping of tensors, found {type(obj).__name__}")
    tensors = {str(k): v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise DataError(f"weights {path}: holds no tensors (top-level keys: {sorted(map(str, obj))[:_SHOWN]})")
    return tensors


def _hub_state(encoder: Encoder, source: str) -> dict[str, torch.Tensor]:
    """timm pretrained weights: ``hub:`` for the encoder's own architecture, ``hub:TIMM_NAME[.TAG]`` for another."""
    timm_name = source.removeprefix("hub:") or encoder.timm_name
    if timm_name is None:
        raise ConfigError(f"weights {source!r}: encoder {encoder.name!r} is not a timm model; name one: hub:TIMM_NAME")
    in_chans = encoder.build_kwargs.get("in_chans", 1)
    try:
        model = timm.create_model(timm_name, pretrained=True, in_chans=in_chans, num_classes=0)
    except Exception as e:  # network, hub and unknown-tag errors all land here
        raise ConfigError(
            f"weights {source!r}: could not fetch timm pretrained weights for {timm_name!r} "
            f"(needs internet or a filled Hugging Face cache): {type(e).__name__}: {e}"
        ) from e
    return model.state_dict()


def load_state_into(module: nn.Module, state: Mapping[str, torch.Tensor], source: str, strict: bool = True) -> None:
    """Copy matching tensors of ``state`` into ``module``, explaining any mismatch."""
    target = module.state_dict()
    state = _strip_prefixes(state, set(target), source)
    matched = {k: _adapt(v, target[k], k, source) for k, v in state.items() if k in target}
    if not matched:
        raise DataError(
            f"weights {source}: no key matches the encoder; found e.g. {sorted(state)[:_SHOWN]}, "
            f"expected e.g. {sorted(target)[:_SHOWN]}"
        )
    missing = sorted(set(target) - set(matched))
    unexpected = sorted(set(state) - set(target))
    if missing:
        message = f"weights {source}: {len(missing)} encoder key(s) not in the file: {missing[:_SHOWN]}"
        if strict:
            raise DataError(message)
        warnings.warn(message, stacklevel=3)
    if unexpected:
        warnings.warn(f"weights {source}: ignored {len(unexpected)} key(s) not in the encoder: {unexpected[:_SHOWN]}",
                      stacklevel=3)
    module.load_state_dict(matched, strict=False)


def _strip_prefixes(state: Mapping[str, torch.Tensor], targets: set[str], source: str) -> dict[str, torch.Tensor]:
    """Remove wrapper prefixes from keys that do not already name an encoder tensor."""
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        new = key
        while new not in targets and new.startswith(KEY_PREFIXES):
            new = new.split(".", 1)[1]
        if new in out:
            raise DataError(f"weights {source}: keys {key!r} and another both map to {new!r} after removing prefixes")
        out[new] = value
    return out


def _adapt(value: torch.Tensor, target: torch.Tensor, key: str, source: str) -> torch.Tensor:
    """``value`` shaped like ``target``; RGB conv kernels become one-channel by summing over input channels."""
    if value.shape == target.shape:
        return value
    rgb_to_gray = value.dim() == 4 and value.shape[1] == 3 and target.shape[1] == 1
    if rgb_to_gray and value.shape[0] == target.shape[0] and value.shape[2:] == target.shape[2:]:
        return value.sum(dim=1, keepdim=True)
    raise DataError(f"weights {source}: {key!r} has shape {tuple(value.shape)}, encoder expects {tuple(target.shape)}")
