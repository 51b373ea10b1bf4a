"""Pre-training methods: one small module each, built by name with :func:`create_method`."""

from __future__ import annotations

import numpy as np
from torch import nn

from cxrl.methods.base import MethodConfig, PretrainMethod
from cxrl.methods.byol import BYOL
from cxrl.methods.moco import MoCoV2, MoCoV3
from cxrl.methods.simclr import SimCLR
from cxrl.methods.supervised import Supervised
from cxrl.methods.swav import SwAV

METHODS: dict[str, type[PretrainMethod]] = {
    "simclr": SimCLR,
    "moco_v2": MoCoV2,
    "moco_v3": MoCoV3,
    "byol": BYOL,
    "swav": SwAV,
    "supervised": Supervised,
}
ALIASES = {"moco": "moco_v2"}


def create_method(cfg: MethodConfig, encoder: nn.Module, image_size: int, train_targets: np.ndarray) -> PretrainMethod:
    """The method ``cfg.name`` around ``encoder``; ``train_targets`` (N, K) are used by ``supervised`` only."""
    cls = METHODS[ALIASES.get(cfg.name, cfg.name)]
    if cls is Supervised:
        return Supervised(encoder, cfg, image_size, train_targets)
    return cls(encoder, cfg, image_size)


__all__ = ["ALIASES", "METHODS", "MethodConfig", "PretrainMethod", "create_method"]
