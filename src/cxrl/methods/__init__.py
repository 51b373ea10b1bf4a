"""Pre-training methods: one small module each, registered with ``@register_method`` and built with
:func:`create_method`. Importing this package registers the packaged methods."""

from __future__ import annotations

from typing import Any

import numpy as np
from torch import nn

from cxrl.methods import (  # noqa: F401  (registers them)
    byol,
    cm_cgns,
    convirt,
    gloria,
    label_text,
    medclip,
    mgca,
    moco,
    simclr,
    supervised,
    swav,
)
from cxrl.methods.base import BuildContext, MethodConfig, PretrainMethod
from cxrl.methods.registry import ALIASES, METHODS, MethodSpec, canonical_method, register_method


def create_method(
    cfg: MethodConfig, encoder: nn.Module, image_size: int, train_targets: np.ndarray | None = None, cache=None,
    **context: Any,
) -> PretrainMethod:
    """The registered method ``cfg.name`` around ``encoder`` (``train_targets`` (N, K): supervised methods;
    ``context``: the other :class:`BuildContext` fields)."""
    spec = METHODS[canonical_method(cfg.name)]
    return spec.cls(encoder, cfg, BuildContext(image_size, train_targets, cache, **context))


__all__ = [
    "ALIASES", "METHODS", "BuildContext", "MethodConfig", "MethodSpec", "PretrainMethod", "canonical_method",
    "create_method", "register_method",
]
