"""Contrastive losses: NT-Xent (SimCLR), InfoNCE with a queue (MoCo v2) or in-batch (MoCo v3), and the queue.

All compute in float32 on L2-normalized embeddings, whatever the autocast dtype outside.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from lightly.loss import NTXentLoss
from torch import nn

from cxrl.losses import distributed


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.1, gather: bool = False) -> torch.Tensor:
    """SimCLR's normalized-temperature cross entropy (Chen et al. 2020, eq. 1), averaged over all 2N anchors.

    For anchor i with positive j(i) among the 2N embeddings (self excluded),
    ``l_i = -log exp(sim(z_i, z_j) / t) / sum_{k != i} exp(sim(z_i, z_k) / t)``, ``sim`` the cosine similarity.
    With ``gather=True`` the negatives come from every rank (lightly's ``NTXentLoss(gather_distributed=True)``,
    positives offset by rank), and each rank averages over its own anchors.
    """
    with torch.autocast(z1.device.type, enabled=False):
        loss_fn = NTXentLoss(temperature=temperature, gather_distributed=gather and distributed.is_distributed())
        return loss_fn(z1.float(), z2.float())


def info_nce(
    q: torch.Tensor,
    k: torch.Tensor,
    queue: torch.Tensor | None = None,
    temperature: float = 0.2,
    gather: bool = False,
) -> torch.Tensor:
    """InfoNCE of queries against their keys (He et al. 2020, eq. 1; Chen et al. 2021, MoCo v3 Alg. 1).

    ``L_q = -log exp(q . k+ / t) / (exp(q . k+ / t) + sum_{k-} exp(q . k- / t))`` on normalized vectors, mean over q.

    - ``queue`` given (MoCo v2): the positive is ``k[i]`` and the negatives are the queued keys ``(K, D)``.
    - no queue (MoCo v3): the other keys of the batch are the negatives, from every rank with ``gather=True``
      (every rank must then hold the same batch size: use ``drop_last``).
    Keys are targets: no gradient flows into ``k`` or ``queue``.
    """
    with torch.autocast(q.device.type, enabled=False):
        q = F.normalize(q.float(), dim=1)
        k = F.normalize(k.detach().float(), dim=1)
        if queue is not None:
            positive = (q * k).sum(dim=1, keepdim=True)
            negatives = q @ F.normalize(queue.detach().float(), dim=1).T
            logits = torch.cat([positive, negatives], dim=1) / temperature
            labels = torch.zeros(len(q), dtype=torch.long, device=q.device)
        else:
            keys = distributed.gather_detached(k) if gather else k
            logits = q @ keys.T / temperature
            offset = distributed.rank() * len(q) if gather else 0
            labels = torch.arange(len(q), device=q.device) + offset
        return F.cross_entropy(logits, labels)


def moco_v3_loss(
    q1: torch.Tensor, q2: torch.Tensor, k1: torch.Tensor, k2: torch.Tensor, temperature: float = 0.2,
    gather: bool = False,
) -> torch.Tensor:
    """MoCo v3's symmetrized loss ``2t * (ctr(q1, k2) + ctr(q2, k1))`` (Chen et al. 2021, Alg. 1)."""
    return 2 * temperature * (info_nce(q1, k2, temperature=temperature, gather=gather)
                              + info_nce(q2, k1, temperature=temperature, gather=gather))


class FeatureQueue(nn.Module):
    """A FIFO of ``size`` normalized features, kept in ``state_dict`` so a resumed run keeps its negatives.

    With ``gather=True`` (MoCo) ``enqueue`` gathers the keys of every rank first, so all ranks hold the same queue
    of global keys. SwAV wants ``gather=False``: each rank queues its own embeddings, because the distributed
    Sinkhorn already sums over ranks and a shared queue would be counted once per rank. The initial content is
    random unit vectors from a fixed seed. Call ``enqueue`` after computing the loss with ``queue.features``; it
    replaces the buffer rather than writing into it, so the graph of that loss stays valid.
    """

    features: torch.Tensor
    pointer: torch.Tensor

    def __init__(self, dim: int, size: int, seed: int = 0, gather: bool = True):
        super().__init__()
        if size < 1 or dim < 1:
            raise ValueError(f"FeatureQueue: dim and size must be positive, found dim={dim} size={size}")
        generator = torch.Generator().manual_seed(seed)
        self.register_buffer("features", F.normalize(torch.randn(size, dim, generator=generator), dim=1))
        self.register_buffer("pointer", torch.zeros((), dtype=torch.long))
        self.gather = gather

    @torch.no_grad()
    def enqueue(self, keys: torch.Tensor) -> None:
        """Append ``keys`` ``(B, dim)`` (of every rank when gathering), overwriting the oldest entries."""
        keys = distributed.gather_detached(keys) if self.gather else keys.detach()
        keys = F.normalize(keys.float(), dim=1)[-len(self.features):]
        slots = (self.pointer + torch.arange(len(keys), device=keys.device)) % len(self.features)
        self.features = self.features.index_copy(0, slots, keys.to(self.features.dtype))
        self.pointer = (self.pointer + len(keys)) % len(self.features)
