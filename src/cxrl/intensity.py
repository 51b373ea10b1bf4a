"""The one canonical in-memory image convention, recorded in every checkpoint's metadata.

Caches hold single-channel uint8 (0 = black/air, 255 = white/bone). Models see float32
``(x / 255 - MEAN) / STD`` with one channel.
"""

from __future__ import annotations

import torch

MEAN = 0.5
STD = 0.25
CONVENTION = {"storage": "uint8", "channels": 1, "scale": 1 / 255, "mean": MEAN, "std": STD}


def to_model_input(images: torch.Tensor) -> torch.Tensor:
    """Map uint8 ``(B, H, W)`` or ``(B, 1, H, W)`` images to normalized float ``(B, 1, H, W)``."""
    x = images if images.dim() == 4 else images.unsqueeze(1)
    return (x.float() * (1 / 255) - MEAN) / STD
