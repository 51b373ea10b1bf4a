"""SwAV (Caron et al., NeurIPS 2020): swapped prediction of Sinkhorn codes over prototypes, with multi-crop.

Codes come from the global crops only (Sec. 3.1, Eq. 3), computed by Sinkhorn-Knopp over the global batch of
every rank; from ``queue_start_step`` on, a queue of past global-crop embeddings per global crop (saved in
checkpoints; set the start step past ``queue_size / batch_size`` so the random initial content is flushed)
enlarges the Sinkhorn batch. Prototypes are renormalized before each step and get no update during the first
``freeze_prototypes_steps`` (their gradients are dropped, so DDP sees no unused parameters).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from cxrl.losses import FeatureQueue, swav_loss
from cxrl.methods.base import Batch, BuildContext, Logs, MethodConfig, PretrainMethod, encode_views, fp32
from cxrl.methods.registry import register_method
from cxrl.models.heads import hold_prototypes, swav_projection, swav_prototypes
from cxrl.transforms import swav_views

N_GLOBAL = 2


@register_method("swav")
class SwAV(PretrainMethod):
    """SwAV: swapped prediction of Sinkhorn codes over prototypes, multi-crop."""

    def __init__(self, encoder: nn.Module, cfg: MethodConfig, ctx: BuildContext) -> None:
        super().__init__()
        self.encoder = encoder
        self.projector = swav_projection(encoder.num_features, cfg.proj_hidden_dim, cfg.proj_dim)
        self.prototypes = swav_prototypes(cfg.proj_dim, cfg.num_prototypes)
        self.queues = nn.ModuleList(
            [
                FeatureQueue(cfg.proj_dim, cfg.queue_size, seed=i, gather=False)  # per rank: Sinkhorn sums ranks
                for i in range(N_GLOBAL if cfg.queue_size else 0)
            ]
        )
        self.cfg = cfg
        self.views = swav_views(ctx.image_size, N_GLOBAL, cfg.local_views, cfg.local_size)
        self.step = 0

    def on_step_start(self, step: int, total_steps: int) -> None:
        self.step = step
        with torch.no_grad():
            self.prototypes.normalize()

    def on_after_backward(self, step: int) -> None:
        hold_prototypes(self.prototypes, step, self.cfg.freeze_prototypes_steps)

    def loss(self, views: Sequence[torch.Tensor], batch: Batch) -> tuple[torch.Tensor, Logs]:
        projections = [self.projector(h) for h in encode_views(self.encoder, views)]
        with fp32(projections[0]):
            z = [F.normalize(p.float(), dim=1) for p in projections]
            scores = [self.prototypes(e) for e in z]
            use_queue = len(self.queues) > 0 and self.step >= self.cfg.queue_start_step
            queued = [self.prototypes(q.features) for q in self.queues] if use_queue else None
        loss = swav_loss(
            scores[:N_GLOBAL], scores[N_GLOBAL:], queued, self.cfg.temperature, self.cfg.sinkhorn_iterations,
            self.cfg.sinkhorn_epsilon, gather=True,
        )
        for queue, embeddings in zip(self.queues, z, strict=False):
            queue.enqueue(embeddings)
        return loss, {}
