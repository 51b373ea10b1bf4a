"""MoCo v2 (Chen et al. 2020, arXiv 2003.04297) and MoCo v3 (Chen, Xie, He, ICCV 2021).

Both train a query encoder against keys from its EMA copy (momentum cosine-scheduled from ``ema_momentum`` to 1).
v2: 2-layer projector, InfoNCE (He et al. 2020, Eq. 1) against a queue of past keys, gathered from every rank and
saved in checkpoints. v3: 3-layer BN projector + predictor, in-batch keys of every rank as negatives (Alg. 1).
Both losses are symmetrized over the two views. Shuffle-BN is not used; use ``sync_batchnorm`` under DDP.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from cxrl.errors import ConfigError
from cxrl.losses.contrastive import FeatureQueue, info_nce, moco_v3_loss
from cxrl.methods.base import Batch, BuildContext, Logs, MethodConfig, PretrainMethod, ema_update, momentum_copy
from cxrl.methods.registry import register_method
from cxrl.models.heads import byol_prediction, moco_projection
from cxrl.transforms import moco_views


class _Momentum(PretrainMethod):
    """Query encoder + projector, their EMA copies, and the per-step momentum update."""

    def __init__(self, encoder: nn.Module, projector: nn.Module, cfg: MethodConfig, ctx: BuildContext) -> None:
        super().__init__()
        self.encoder, self.projector = encoder, projector
        self.key_encoder, self.key_projector = momentum_copy(encoder), momentum_copy(projector)
        self.base_momentum, self.temperature = cfg.ema_momentum, cfg.temperature
        self.views = moco_views(ctx.image_size)

    def on_step_start(self, step: int, total_steps: int) -> None:
        pairs = [(self.encoder, self.key_encoder), (self.projector, self.key_projector)]
        ema_update(pairs, step, total_steps, self.base_momentum)

    @torch.no_grad()
    def keys(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.key_projector(self.key_encoder(x)).chunk(2)


@register_method("moco_v2", aliases=("moco",))
class MoCoV2(_Momentum):
    """MoCo v2: InfoNCE against a queue of past momentum keys."""

    def __init__(self, encoder: nn.Module, cfg: MethodConfig, ctx: BuildContext) -> None:
        projector = moco_projection(encoder.num_features, cfg.proj_hidden_dim, cfg.proj_dim)
        super().__init__(encoder, projector, cfg, ctx)
        if cfg.queue_size < 1:
            raise ConfigError(f"moco_v2 needs method.queue_size > 0, found {cfg.queue_size}")
        self.queue = FeatureQueue(cfg.proj_dim, cfg.queue_size)

    def loss(self, views: Sequence[torch.Tensor], batch: Batch) -> tuple[torch.Tensor, Logs]:
        x = torch.cat(list(views))
        q0, q1 = self.projector(self.encoder(x)).chunk(2)
        k0, k1 = self.keys(x)
        negatives = self.queue.features
        loss = 0.5 * (info_nce(q0, k1, negatives, self.temperature) + info_nce(q1, k0, negatives, self.temperature))
        self.queue.enqueue(k1)
        return loss, {}


@register_method("moco_v3")
class MoCoV3(_Momentum):
    """MoCo v3: predictor, in-batch momentum keys of every rank."""

    def __init__(self, encoder: nn.Module, cfg: MethodConfig, ctx: BuildContext) -> None:
        projector = moco_projection(
            encoder.num_features, cfg.proj_hidden_dim, cfg.proj_dim, num_layers=3, batch_norm=True
        )
        super().__init__(encoder, projector, cfg, ctx)
        self.predictor = byol_prediction(cfg.proj_dim, cfg.pred_hidden_dim, cfg.proj_dim)

    def loss(self, views: Sequence[torch.Tensor], batch: Batch) -> tuple[torch.Tensor, Logs]:
        x = torch.cat(list(views))
        q0, q1 = self.predictor(self.projector(self.encoder(x))).chunk(2)
        k0, k1 = self.keys(x)
        return moco_v3_loss(q0, q1, k0, k1, self.temperature, gather=True), {}
