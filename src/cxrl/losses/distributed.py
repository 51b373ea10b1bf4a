"""The only place that talks to ``torch.distributed``: rank, world size and all-gathers.

``gather`` keeps gradients: its backward sums the gradients every rank computed for this rank's slice. With DDP
averaging parameter gradients over ranks, a loss averaged over local rows then gets the gradient of the loss
averaged over the global batch (the scale lightly #1977 got wrong for Barlow Twins).
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.distributed.nn.functional as dist_fn


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def gather(x: torch.Tensor) -> torch.Tensor:
    """Concatenate ``x`` from all ranks along dim 0 (rank order), differentiable; ``x`` itself when not distributed."""
    if not is_distributed():
        return x
    return torch.cat(dist_fn.all_gather(x), dim=0)


@torch.no_grad()
def gather_detached(x: torch.Tensor) -> torch.Tensor:
    """Concatenate ``x`` from all ranks along dim 0 without gradients (e.g. keys before they enter a queue)."""
    if not is_distributed():
        return x.detach()
    parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, x.detach().contiguous())
    return torch.cat(parts, dim=0)


@torch.no_grad()
def gather_rows(x: torch.Tensor) -> torch.Tensor:
    """:func:`gather_detached` where each rank may hold a different number of rows (padded to the most, then cut)."""
    if not is_distributed():
        return x.detach()
    counts = gather_detached(torch.tensor([len(x)], device=x.device)).tolist()
    most = max(*counts, 1)
    padded = x.new_zeros((most, *x.shape[1:]))
    padded[: len(x)] = x.detach()
    parts = gather_detached(padded).split(most)
    return torch.cat([part[:n] for part, n in zip(parts, counts, strict=True)])
