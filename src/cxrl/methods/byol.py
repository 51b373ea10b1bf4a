"""BYOL (Grill et al., NeurIPS 2020): an online network predicts an EMA target's projection of the other view."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from cxrl.losses import byol_loss
from cxrl.methods.base import Batch, BuildContext, Logs, MethodConfig, PretrainMethod, ema_update, momentum_copy
from cxrl.methods.registry import register_method
from cxrl.models.heads import byol_prediction, byol_projection
from cxrl.transforms import byol_views


@register_method("byol")
class BYOL(PretrainMethod):
    """Symmetrized loss ``2 - 2 cos(q(z_1), z'_2)`` (Eq. 2); target momentum cosine from ``ema_momentum`` to 1."""

    def __init__(self, encoder: nn.Module, cfg: MethodConfig, ctx: BuildContext) -> None:
        super().__init__()
        self.encoder = encoder
        self.projector = byol_projection(encoder.num_features, cfg.proj_hidden_dim, cfg.proj_dim)
        self.predictor = byol_prediction(cfg.proj_dim, cfg.pred_hidden_dim, cfg.proj_dim)
        self.target_encoder = momentum_copy(encoder)
        self.target_projector = momentum_copy(self.projector)
        self.base_momentum = cfg.ema_momentum
        self.views = byol_views(ctx.image_size)

    def on_step_start(self, step: int, total_steps: int) -> None:
        pairs = [(self.encoder, self.target_encoder), (self.projector, self.target_projector)]
        ema_update(pairs, step, total_steps, self.base_momentum)

    def loss(self, views: Sequence[torch.Tensor], batch: Batch) -> tuple[torch.Tensor, Logs]:
        x = torch.cat(list(views))
        p0, p1 = self.predictor(self.projector(self.encoder(x))).chunk(2)
        with torch.no_grad():
            t0, t1 = self.target_projector(self.target_encoder(x)).chunk(2)
        return byol_loss(p0, t1) + byol_loss(p1, t0), {}

