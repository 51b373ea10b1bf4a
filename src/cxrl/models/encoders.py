"""Image encoders behind one door: ``create_encoder(name)`` -> a module mapping ``(B, C, H, W)`` to ``(B, F)``.

Aliases name timm models (built with ``pretrained=False``, ``num_classes=0``: pooled features) plus ``tiny_cnn``, a
small CNN for CPU tests. Any other timm model is reachable as ``timm:NAME`` and any torchvision classifier as
``torchvision:NAME``, and the image tower of an open_clip model as ``open_clip:ARCH`` or ``open_clip:hf-hub:ORG/NAME``
(:mod:`cxrl.models.open_clip_door`). Nothing is downloaded unless ``weights="hub:..."`` or a ``hf-hub:`` name asks.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import timm
import torch
from torch import nn

from cxrl.errors import ConfigError
from cxrl.models.weights import load_weights

TIMM_ALIASES = {
    "resnet10t": "resnet10t",
    "resnet18": "resnet18",
    "resnet50": "resnet50",
    "densenet121": "densenet121",
    "convnext_tiny": "convnext_tiny",
    "vit_small": "vit_small_patch16_224",
    "vit_base": "vit_base_patch16_224",
}
PREFIXES = ("timm:", "torchvision:", "open_clip:")
STAGE_MODULES = 6  # a TinyCNN stage: two conv-BN-ReLU blocks


class Encoder(nn.Module):
    """A backbone returning pooled features, with the facts needed to rebuild it.

    Attributes:
        name: the name given to ``create_encoder``.
        num_features: width of the pooled feature vector.
        build_kwargs: keyword arguments that rebuild the same architecture (saved with exported weights).
        timm_name: the timm architecture behind it (None for others), where ``weights="hub:"`` looks.
    """

    def __init__(
        self, backbone: nn.Module, name: str, num_features: int, build_kwargs: dict[str, Any],
        timm_name: str | None = None,
    ):
        super().__init__()
        self.backbone = backbone
        self.name = name
        self.num_features = num_features
        self.build_kwargs = build_kwargs
        self.timm_name = timm_name

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x)

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        """The last spatial feature map ``(B, C, h, w)`` before pooling: the regions of word-region alignment
        (GLoRIA, MGCA), segmentation decoders and saliency. A ViT's patch tokens come back as a ``(B, C, h, w)``
        grid without its class and register tokens."""
        return self._as_map(self._features(x))

    def pooled_and_map(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(self(x), self.feature_map(x))`` from one pass through the backbone (global and local features)."""
        features = self._features(x)
        if isinstance(self.backbone, TinyCNN):
            return features.mean(dim=(2, 3)), features
        return self.backbone.forward_head(features, pre_logits=True), self._as_map(features)

    def _features(self, x: torch.Tensor) -> torch.Tensor:
        backbone = self.backbone
        if isinstance(backbone, TinyCNN):
            return backbone.features(x)
        if not hasattr(backbone, "forward_features"):
            raise ConfigError(f"encoder {self.name!r} exposes no spatial feature map (timm models and tiny_cnn do)")
        return backbone.forward_features(x)

    def _as_map(self, features: torch.Tensor) -> torch.Tensor:
        """A backbone's ``forward_features`` output as a ``(B, C, h, w)`` map (ViT tokens: the patch grid)."""
        backbone = self.backbone
        if features.ndim == 4:
            return features
        return patch_grid(features, getattr(backbone, "num_prefix_tokens", 0), self.name)

    def feature_maps(self, x: torch.Tensor, n: int = 4) -> list[torch.Tensor]:
        """The last ``n`` stages' spatial maps ``(B, C_i, h_i, w_i)``, shallow to deep (strides 4-32 for a CNN at
        ``n=4``; a ViT's last ``n`` blocks, all at its patch stride): the pyramid of U-Net / FPN decoders and
        detection backbones (timm's ``forward_intermediates``)."""
        backbone = self.backbone
        if isinstance(backbone, TinyCNN):
            return backbone.stage_maps(x)[-n:]
        if not hasattr(backbone, "forward_intermediates"):
            raise ConfigError(f"encoder {self.name!r} exposes no feature pyramid (timm models and tiny_cnn do)")
        return list(backbone.forward_intermediates(x, indices=n, intermediates_only=True))


def patch_grid(tokens: torch.Tensor, prefix_tokens: int, name: str = "encoder") -> torch.Tensor:
    """A ViT's tokens ``(B, prefix + h * w, C)`` as the patch grid ``(B, C, h, w)``, without the ``prefix_tokens``
    (class, register) tokens; the grid must be square."""
    patches = tokens[:, prefix_tokens:]
    side = math.isqrt(patches.shape[1])
    if side * side != patches.shape[1]:
        raise ConfigError(f"encoder {name!r}: {patches.shape[1]} patch tokens make no square grid")
    return patches.transpose(1, 2).reshape(len(patches), patches.shape[2], side, side)


class TinyCNN(nn.Module):
    """Four stride-2 stages of two 3x3 conv-BN-ReLU blocks, then global average pooling (~0.46 M parameters)."""

    def __init__(self, in_chans: int = 1, widths: tuple[int, ...] = (32, 64, 96, 128)):
        super().__init__()
        layers: list[nn.Module] = []
        for width in widths:
            layers += [*_conv_bn_relu(in_chans, width, stride=2), *_conv_bn_relu(width, width, stride=1)]
            in_chans = width
        self.features = nn.Sequential(*layers)
        self.num_features = widths[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x).mean(dim=(2, 3))

    def stage_maps(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Each stage's output (strides 2, 4, 8, 16)."""
        maps = []
        for start in range(0, len(self.features), STAGE_MODULES):
            x = self.features[start:start + STAGE_MODULES](x)
            maps.append(x)
        return maps


def _conv_bn_relu(c_in: int, c_out: int, stride: int) -> list[nn.Module]:
    conv = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
    return [conv, nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]


def list_encoders() -> list[str]:
    """Names ``create_encoder`` accepts, besides the ``timm:NAME``, ``torchvision:NAME`` and ``open_clip:`` forms."""
    return sorted([*TIMM_ALIASES, "tiny_cnn"])


def create_encoder(name: str, in_chans: int = 1, weights: str | Path | None = None, **kwargs: Any) -> Encoder:
    """Build encoder ``name`` for ``in_chans``-channel input, optionally loading ``weights``.

    Args:
        name: an alias from ``list_encoders()``, ``timm:NAME``, ``torchvision:NAME``, or ``open_clip:ARCH`` /
            ``open_clip:hf-hub:ORG/NAME`` (the image tower; ``weights`` then names a whole open_clip checkpoint).
        in_chans: input channels (1 for the canonical CXR tensor).
        weights: None (random init), a file (``.safetensors``, or ``.pt/.pth/.bin/.ckpt`` read with
            ``weights_only=True``), a cxrl run directory, or ``hub:`` / ``hub:TIMM_NAME`` for timm's pretrained
            weights (needs internet or a filled Hugging Face cache).
        **kwargs: passed to the model constructor (e.g. ``img_size=`` for ViTs, which also accept any multiple of
            the patch size at run time).
    """
    if name.startswith("open_clip:"):
        from cxrl.models.open_clip_door import load_open_clip

        return load_open_clip(name, weights, in_chans, **kwargs).image
    timm_name = TIMM_ALIASES.get(name) or (name.removeprefix("timm:") if name.startswith("timm:") else None)
    if name == "tiny_cnn":
        backbone: nn.Module = _tiny_cnn(in_chans, kwargs)
    elif name.startswith("torchvision:"):
        backbone = _torchvision_backbone(name.removeprefix("torchvision:"), in_chans, kwargs)
    elif timm_name is not None:
        backbone = _timm_backbone(name, timm_name, in_chans, kwargs)
    else:
        raise ConfigError(
            f"unknown encoder {name!r}; known: {', '.join(list_encoders())}, or timm:NAME / torchvision:NAME"
        )
    encoder = Encoder(backbone, name, _num_features(backbone, name), {"in_chans": in_chans, **kwargs}, timm_name)
    if weights is not None:
        load_weights(encoder, weights)
    return encoder


def _tiny_cnn(in_chans: int, kwargs: dict[str, Any]) -> TinyCNN:
    unknown = sorted(set(kwargs) - {"widths"})
    if unknown:
        raise ConfigError(f"encoder 'tiny_cnn': unknown argument(s) {unknown}; it accepts in_chans and widths")
    return TinyCNN(in_chans, **kwargs)


def _timm_backbone(name: str, timm_name: str, in_chans: int, kwargs: dict[str, Any]) -> nn.Module:
    if timm_name.startswith("vit_"):
        kwargs = {"dynamic_img_size": True, **kwargs}
    try:
        return timm.create_model(timm_name, pretrained=False, in_chans=in_chans, num_classes=0, **kwargs)
    except (RuntimeError, TypeError) as e:  # timm: unknown model / unexpected keyword
        raise ConfigError(f"encoder {name!r}: timm could not build {timm_name!r} with {kwargs}: {e}") from e


def _torchvision_backbone(name: str, in_chans: int, kwargs: dict[str, Any]) -> nn.Module:
    """A torchvision classifier with its last Linear layer removed and its first conv taking ``in_chans``."""
    import torchvision

    try:
        model = torchvision.models.get_model(name, weights=None, **kwargs)
    except (ValueError, TypeError) as e:
        raise ConfigError(f"encoder 'torchvision:{name}': {e}") from e
    linear_name = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)][-1]
    model.num_features = model.get_submodule(linear_name).in_features
    model.set_submodule(linear_name, nn.Identity())
    conv_name, conv = next((n, m) for n, m in model.named_modules() if isinstance(m, nn.Conv2d))
    if conv.in_channels != in_chans:
        model.set_submodule(conv_name, _with_in_chans(conv, in_chans))
    return model


def _with_in_chans(conv: nn.Conv2d, in_chans: int) -> nn.Conv2d:
    return nn.Conv2d(
        in_chans, conv.out_channels, conv.kernel_size, conv.stride, conv.padding, conv.dilation, conv.groups,
        conv.bias is not None, conv.padding_mode,
    )


def _num_features(backbone: nn.Module, name: str) -> int:
    num = getattr(backbone, "num_features", None)
    if not isinstance(num, int):
        raise ConfigError(f"encoder {name!r}: cannot tell the width of its pooled features")
    return num
