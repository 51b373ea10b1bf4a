"""SwAV's swapped-prediction loss with Sinkhorn-Knopp codes (Caron et al. 2020), via lightly's ``SwaVLoss``."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from lightly.loss import SwaVLoss

from cxrl.losses import distributed


def swav_loss(
    high_res: Sequence[torch.Tensor],
    low_res: Sequence[torch.Tensor] = (),
    queue_outputs: Sequence[torch.Tensor] | None = None,
    temperature: float = 0.1,
    sinkhorn_iterations: int = 3,
    epsilon: float = 0.05,
    gather: bool = False,
) -> torch.Tensor:
    """Swapped prediction over multi-crop views (Caron et al. 2020, eqs. 1-3).

    Args:
        high_res: prototype scores ``(B, K)`` of each global crop; codes ``q`` are computed from these only.
        low_res: prototype scores of the local crops (predict the global crops' codes, never the reverse).
        queue_outputs: per global crop, prototype scores ``(Q, K)`` of queued embeddings from earlier batches
            (one ``FeatureQueue`` per global crop), which enlarge the Sinkhorn batch when B is small.
        temperature: ``t`` of the softmax over prototypes (eq. 2).
        sinkhorn_iterations, epsilon: Sinkhorn-Knopp iterations and entropy weight (eq. 3).
        gather: normalize codes over the global batch of every rank.

    For each global crop s: ``q_s = Sinkhorn(scores_s)``, loss += mean over the other crops v of
    ``-sum_k q_s log softmax(scores_v / t)``; averaged over global crops. Computed in float32.
    """
    if len(high_res) < 2:
        raise ValueError(f"swav_loss: expected at least 2 global crops, found {len(high_res)}")
    with torch.autocast(high_res[0].device.type, enabled=False):
        loss_fn = SwaVLoss(
            temperature=temperature, sinkhorn_iterations=sinkhorn_iterations, sinkhorn_epsilon=epsilon,
            sinkhorn_gather_distributed=gather and distributed.is_distributed(),
        )
        queue = None if queue_outputs is None else [t.float() for t in queue_outputs]
        return loss_fn([t.float() for t in high_res], [t.float() for t in low_res], queue).squeeze()
