"""SimCLR (Chen et al., ICML 2020): two views, an MLP projector, NT-Xent (Eq. 1) over the global batch."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from cxrl.losses.contrastive import nt_xent
from cxrl.methods.base import Batch, BuildContext, Logs, MethodConfig, PretrainMethod
from cxrl.methods.registry import register_method
from cxrl.models.heads import simclr_projection
from cxrl.transforms import simclr_views


@register_method("simclr")
class SimCLR(PretrainMethod):
    """Negatives are all other views in the batch of every rank (gathered with gradients)."""

    def __init__(self, encoder: nn.Module, cfg: MethodConfig, ctx: BuildContext) -> None:
        super().__init__()
        self.encoder = encoder
        self.projector = simclr_projection(encoder.num_features, cfg.proj_hidden_dim, cfg.proj_dim)
        self.temperature = cfg.temperature
        self.views = simclr_views(ctx.image_size)

    def loss(self, views: Sequence[torch.Tensor], batch: Batch) -> tuple[torch.Tensor, Logs]:
        z0, z1 = self.projector(self.encoder(torch.cat(list(views)))).chunk(2)
        return nt_xent(z0, z1, self.temperature, gather=True), {}
