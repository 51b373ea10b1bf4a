"""BYOL's regression loss (Grill et al. 2020)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def byol_loss(p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """Normalized MSE ``||p/|p| - z/|z|||^2 = 2 - 2 cos(p, z)`` (Grill et al. 2020, eq. 2), mean over the batch.

    ``p`` is the online prediction, ``z`` the target projection; the stop-gradient on ``z`` is applied here.
    Symmetrize by calling it twice with the views swapped.
    """
    with torch.autocast(p.device.type, enabled=False):
        cos = F.cosine_similarity(p.float(), z.detach().float(), dim=1)
        return (2 - 2 * cos).mean()
