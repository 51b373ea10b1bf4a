"""CM-CGNS's local losses (Lan et al. 2025, arXiv 2506.11674): SimSiam-style patch alignment, and cluster-guided
negative sampling (CGNS) of sentence features, extending ClusterNS (Deng et al. 2023) across modalities.

``z1`` ``(N, D)`` are sentence features of the text tower and ``z2`` ``(N, D)`` the same sentences attended over
their own image's patches (cross-modal attention), row ``a`` of both being one sentence. ``K`` cluster centres of
the ``z2`` are kept as method state: farthest-point initialised, moved by momentum towards the mean of the
features assigned to them (k-means' M-step), and read for hard negatives (each anchor's second-nearest centre)
and for false negatives (anchors sharing a nearest centre).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from cxrl.losses.distributed import gather_rows


def simsiam_local_loss(x: torch.Tensor, y: torch.Tensor, predictor: nn.Module,
                       mask: torch.Tensor | None = None) -> torch.Tensor:
    """``-1/2 [cos(P(x), sg(y)) + cos(P(y), sg(x))]`` averaged over the rows in ``mask`` (``x``, ``y`` ``(N, D)``
    paired features: patches and their text-attended counterparts; SimSiam, Chen & He 2021, Eq. 1-2)."""
    cos = F.cosine_similarity(predictor(x), y.detach(), dim=-1) + F.cosine_similarity(predictor(y), x.detach(), dim=-1)
    weight = torch.ones_like(cos) if mask is None else mask.float()
    return -(cos * weight).sum() / (2 * weight.sum().clamp(min=1))


def farthest_point_centres(features: torch.Tensor, k: int) -> torch.Tensor:
    """``k`` rows of ``features`` ``(N, D)`` chosen by a greedy farthest-point pass in cosine similarity: the first
    row, then each time the row whose highest similarity to the chosen ones is lowest. (The reference code compares
    with the last chosen centre only and starts from a random row; a fixed start keeps ranks and resumes equal.)"""
    if len(features) < k:
        raise ValueError(f"farthest_point_centres: {len(features)} features cannot seed {k} centres")
    unit = F.normalize(features.float(), dim=1)
    chosen = [0]
    closest = unit @ unit[0]
    for _ in range(1, k):
        chosen.append(int(closest.argmin()))
        closest = torch.maximum(closest, unit @ unit[chosen[-1]])
    return features[chosen].clone()


def nearest_centres(features: torch.Tensor, centres: torch.Tensor, k: int = 1) -> torch.Tensor:
    """Indices ``(N, k)`` of each row's ``k`` most cosine-similar centres, nearest first."""
    return (F.normalize(features.float(), dim=1) @ F.normalize(centres.float(), dim=1).T).topk(k, dim=1).indices


def update_centres(centres: torch.Tensor, features: torch.Tensor, momentum: float) -> torch.Tensor:
    """``c_k <- (1 - m) c_k + m mean{z : nearest centre of z is k}``; centres without a feature stay.

    The paper's k-means step with momentum ``m``. The reference code moves towards the *sum* of the assigned
    features, i.e. the mean at a rate scaled by the cluster's size, with centre norms that grow without bound; not
    reproduced (cosine assignments read only the direction).
    """
    assigned = F.one_hot(nearest_centres(features, centres)[:, 0], len(centres)).float()  # (N, K)
    counts = assigned.sum(0)
    means = (assigned.T @ features.float()) / counts.clamp(min=1)[:, None]
    moved = (1 - momentum) * centres.float() + momentum * means
    return torch.where(counts[:, None] > 0, moved, centres.float()).to(centres.dtype)


@torch.no_grad()
def cluster_step(centres: torch.Tensor, ready: torch.Tensor, z1: torch.Tensor, z2: torch.Tensor, momentum: float,
                 start_similarity: float) -> None:
    """One step of the centres (in place), on ``z1``/``z2`` gathered from every rank so that all ranks hold the
    same centres: before ``ready``, seed them by :func:`farthest_point_centres` of ``z2`` once the mean cosine of
    ``z1`` against ``z2`` is at most ``start_similarity`` and there are enough sentences (the code's trigger, 0.4);
    after, :func:`update_centres` with ``z2``."""
    all_z1, all_z2 = (F.normalize(gather_rows(z).float(), dim=1) for z in (z1, z2))
    if bool(ready):
        centres.copy_(update_centres(centres, all_z2, momentum))
    elif len(all_z2) >= len(centres) and float(all_z1.mean(0) @ all_z2.mean(0)) <= start_similarity:
        centres.copy_(farthest_point_centres(all_z2, len(centres)))
        ready.fill_(True)


def bml_loss(delta: torch.Tensor, alpha: float = 0.2, beta: float = 0.5) -> torch.Tensor:
    """The bidirectional margin loss ``ReLU(delta + alpha) + ReLU(-delta - beta)`` (ClusterNS, Deng et al. 2023):
    zero while ``-beta <= delta <= -alpha``."""
    return F.relu(delta + alpha) + F.relu(-delta - beta)


def cgns_text_loss(
    z1: torch.Tensor,
    z2: torch.Tensor,
    centres: torch.Tensor | None = None,
    temperature: float = 1.0,
    hard_negative_weight: float = 3.0,
    alpha: float = 0.2,
    beta: float = 0.5,
    false_negative_weight: float = 1e-4,
) -> torch.Tensor:
    """CGNS's text term: ``CE([S | w cos(z1_a, h_a)] / tau, a) + lambda_fn mean_{(a,b) in F} BML(S_ab - S_aa)``.

    ``S_ab = cos(z1_a, z2_b)``; ``h_a`` is the centre second-nearest to ``z1_a`` (its nearest is taken for its own
    cluster), one extra logit per row weighted by ``w`` (the code's 3); ``F`` are the pairs ``a != b`` whose ``z1``
    share a nearest centre (false negatives), pushed to ``-beta <= S_ab - S_aa <= -alpha`` instead of away. Without
    ``centres`` it is the plain ``CE(S / tau)``. The reference code adds every other row's hard negative to each
    row with logit 0 (an ``exp(0)`` per row in each denominator) and averages the margin loss over all ``N^2``
    pairs, each non-false-negative pair adding the constant ``alpha``; neither is reproduced.
    """
    with torch.autocast(z1.device.type, enabled=False):
        z1, z2 = F.normalize(z1.float(), dim=1), F.normalize(z2.float(), dim=1)
        sims = z1 @ z2.T
        targets = torch.arange(len(z1), device=z1.device)
        if centres is None:
            return F.cross_entropy(sims / temperature, targets)
        near = nearest_centres(z1, centres, k=2)
        hard = (z1 * F.normalize(centres.float(), dim=1)[near[:, 1]]).sum(1, keepdim=True)
        loss = F.cross_entropy(torch.cat([sims, hard_negative_weight * hard], 1) / temperature, targets)
        false = (near[:, :1] == near[:, 0][None, :]) & ~torch.eye(len(z1), dtype=torch.bool, device=z1.device)
        margins = bml_loss(sims - sims.diagonal()[:, None], alpha, beta) * false
        return loss + false_negative_weight * margins.sum() / false.sum().clamp(min=1)
