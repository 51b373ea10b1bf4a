"""Supervised multi-label pre-training on the cache's labels: the baseline every SSL method must beat.

One CXR-safe augmented view, a linear head, and per-finding losses with unobserved (NaN) labels masked:
BCE (optionally with positive weights from train prevalence), focal loss (Lin et al. 2017, Eq. 5), or
CheXpert's U-MultiClass 3-way softmax when the uncertainty policy is ``multiclass`` (Irvin et al. 2019, Sec. 4.1).
Targets arrive already mapped by the uncertainty policy (``cxrl.data.labels.apply_uncertainty_policy``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from cxrl.data.labels import UNCERTAIN, UNCERTAIN_CLASS
from cxrl.errors import ConfigError
from cxrl.losses import focal_loss, masked_bce, multiclass_uncertainty_ce, positive_weights
from cxrl.methods.base import Batch, BuildContext, Logs, MethodConfig, PretrainMethod
from cxrl.methods.registry import register_method
from cxrl.transforms import ViewConfig


@register_method("supervised")
class Supervised(PretrainMethod):
    """Supervised multi-label baseline on the cache's labels."""

    label_sampling = True

    def __init__(self, encoder: nn.Module, cfg: MethodConfig, ctx: BuildContext) -> None:
        super().__init__()
        train_targets = ctx.train_targets if ctx.train_targets is not None else np.zeros((0, 0))
        if train_targets.shape[1] == 0:
            raise ConfigError("supervised pre-training needs labels: no pathology has a positive train row")
        if cfg.loss not in ("bce", "focal"):
            raise ConfigError(f"method.loss: expected 'bce' or 'focal', found {cfg.loss!r}")
        self.encoder = encoder
        self.multiclass = cfg.uncertainty == "multiclass"
        n_labels = train_targets.shape[1]
        self.head = nn.Linear(encoder.num_features, n_labels * (3 if self.multiclass else 1))
        weights = positive_weights(train_targets) if cfg.pos_weight else None
        self.register_buffer("pos_weight", weights, persistent=False)
        self.loss_name, self.focal_gamma = cfg.loss, cfg.focal_gamma
        self.views = [ViewConfig(size=ctx.image_size)]

    def loss(self, views: Sequence[torch.Tensor], batch: Batch) -> tuple[torch.Tensor, Logs]:
        labels = batch["labels"]
        logits = self.head(self.encoder(views[0]))
        if self.multiclass:
            targets = labels.masked_fill(labels == UNCERTAIN_CLASS, UNCERTAIN)
            return multiclass_uncertainty_ce(logits.view(*labels.shape, 3), targets), {}
        if self.loss_name == "focal":
            return focal_loss(logits, labels, self.focal_gamma), {}
        return masked_bce(logits, labels, self.pos_weight), {}
