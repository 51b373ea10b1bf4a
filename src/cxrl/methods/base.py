"""What every pre-training method is, and the few functions they share.

A method is a small ``nn.Module`` registered with ``@register_method`` (:mod:`cxrl.methods.registry`) and built
as ``cls(encoder, cfg, ctx)`` from its own config dataclass. It owns an image ``encoder`` and its heads (and may
own more encoders, e.g. ``text``), names its ``views`` (``cxrl.transforms.ViewConfig`` list) and the batch
``columns`` it reads, and maps the views plus the batch dict to a scalar loss and a dict of logs. The engine
(``cxrl.train``) does everything else: data, moving the batch to the device, optimizer and parameter groups,
schedules, precision, DDP, checkpoints, export of every encoder in :meth:`PretrainMethod.encoders`.
Momentum (EMA) methods override ``on_step_start``; SwAV overrides ``on_after_backward``.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lightly.models.utils import deactivate_requires_grad, update_momentum
from lightly.utils.scheduler import cosine_schedule
from torch import nn

from cxrl.data.torch_dataset import BASE_COLUMNS
from cxrl.transforms import ViewConfig

Logs = dict[str, torch.Tensor]
Batch = dict[str, torch.Tensor]


@dataclass
class MethodConfig:
    """The knobs the packaged image-only methods share (each reads the ones it needs; its YAML sets them).

    A new method registers its own small dataclass instead (``@register_method(name, config=...)``).
    """

    name: str = "simclr"
    proj_hidden_dim: int = 2048
    proj_dim: int = 128
    pred_hidden_dim: int = 4096  # BYOL / MoCo v3 predictor
    temperature: float = 0.1
    queue_size: int = 0  # MoCo v2 negatives; SwAV feature queue (0 = off)
    ema_momentum: float = 0.99  # base EMA momentum, cosine-scheduled to 1.0 (BYOL, MoCo)
    num_prototypes: int = 3000  # SwAV
    sinkhorn_iterations: int = 3
    sinkhorn_epsilon: float = 0.05
    freeze_prototypes_steps: int = 0  # SwAV: prototypes get no update for the first steps
    queue_start_step: int = 0  # SwAV: the queue joins the assignment after this step
    local_views: int = 0  # SwAV multi-crop: number of small crops
    local_size: int = 96
    pathologies: list[str] = field(default_factory=list)  # supervised; empty = all present in the train rows
    uncertainty: str = "ignore"  # supervised: cxrl.data.labels policy for -1
    weighted_sampling: bool = False  # supervised: seeded WeightedRandomSampler-style draws
    loss: str = "bce"  # supervised: bce | focal
    focal_gamma: float = 2.0
    pos_weight: bool = False  # supervised: BCE positive weights from train prevalence


@dataclass
class BuildContext:
    """What the engine knows when it builds a method: the training image size, the train rows' targets
    ``(N, K)`` after the label policy (supervised methods), the cache (where token caches live), the splits the
    train rows come from, the ``K`` pathologies of the targets, and the run's seed."""

    image_size: int
    train_targets: np.ndarray | None = None
    cache: Any = None
    train_splits: Sequence[str] = ("train",)
    pathologies: Sequence[str] = ()
    seed: int = 0


class PretrainMethod(nn.Module):
    """Base of all methods: an image ``encoder``, the ``views`` it trains on, the batch ``columns`` and ``loss``."""

    encoder: nn.Module
    views: list[ViewConfig]
    columns: tuple[str, ...] = BASE_COLUMNS
    label_sampling: bool = False  # True: the config's ``weighted_sampling`` draws train rows by label frequency

    def loss(self, views: Sequence[torch.Tensor], batch: Batch) -> tuple[torch.Tensor, Logs]:
        """Views (one ``(B, 1, s, s)`` tensor per ``ViewConfig``) and the batch dict (``columns``) -> (loss, logs)."""
        raise NotImplementedError

    def column_arrays(self, cache: Any) -> dict[str, np.ndarray]:
        """Row-aligned ``(N, ...)`` arrays of the ``columns`` beyond :data:`BASE_COLUMNS` (e.g. report tokens)."""
        return {}

    def encoders(self) -> dict[str, nn.Module]:
        """The encoders export writes, by name (``image`` at the run root, ``text`` in ``RUN/text/``)."""
        return {"image": self.encoder}

    def projections(self) -> dict[str, nn.Module]:
        """Heads to a joint image-text space (``image`` and ``text`` :class:`~cxrl.models.image_text.Projection`),
        exported beside the encoders for zero-shot and retrieval; empty for image-only methods."""
        return {}

    def export_meta(self, name: str) -> dict[str, Any]:
        """Extra sidecar entries of the exported encoder ``name`` (e.g. a text encoder's ``max_length``)."""
        return {}

    def lr_groups(self) -> list[tuple[nn.Module, float | None]]:
        """(module, learning rate) pairs, most specific first; ``None`` is the run's ``lr``. A parameter belongs to
        the first module that holds it (e.g. ``[(self.text_encoder, cfg.text_lr), (self, None)]``)."""
        return [(self, None)]

    def on_step_start(self, step: int, total_steps: int) -> None:
        """Called before each optimization step's forward (e.g. the EMA update)."""

    def on_after_backward(self, step: int) -> None:
        """Called after the backward pass, before the optimizer step (e.g. freezing prototypes)."""

    def write_artifacts(self, run_dir: Path) -> None:
        """Called once after export (rank 0): files of the method's own beside the exported encoders (e.g. a plot)."""


def encode_views(encoder: nn.Module, views: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """Encode views, one forward per resolution (BatchNorm sees the views together, as in SimCLR/SwAV)."""
    out: list[torch.Tensor | None] = [None] * len(views)
    for size in dict.fromkeys(v.shape[-1] for v in views):
        group = [i for i, v in enumerate(views) if v.shape[-1] == size]
        features = encoder(torch.cat([views[i] for i in group])).chunk(len(group))
        for i, f in zip(group, features, strict=True):
            out[i] = f
    return out  # type: ignore[return-value]


def fp32(like: torch.Tensor) -> AbstractContextManager:
    """Autocast off on ``like``'s device: losses and normalizations run in float32 under mixed precision."""
    return torch.autocast(device_type=like.device.type, enabled=False)


def momentum_copy(module: nn.Module) -> nn.Module:
    """A frozen copy of ``module`` for the EMA (momentum) branch."""
    ema = copy.deepcopy(module)
    deactivate_requires_grad(ema)
    return ema


def ema_update(pairs: Sequence[tuple[nn.Module, nn.Module]], step: int, total_steps: int, base: float) -> float:
    """EMA ``ema = m ema + (1 - m) online`` with ``m`` cosine-scheduled from ``base`` to 1 (BYOL, Eq. 1 + Sec. 3.2).

    Returns the momentum used.
    """
    m = cosine_schedule(step, max(total_steps, 1), base, 1.0)
    for online, ema in pairs:
        update_momentum(online, ema, m)
    return m
