"""Multi-label losses for CXR findings with unobserved (NaN) labels, and class-balancing weights."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from cxrl.data.labels import UNCERTAIN_CLASS


def _observed(targets: torch.Tensor, allowed: tuple[float, ...]) -> torch.Tensor:
    """The mask of non-NaN targets, after checking they are all in ``allowed``."""
    mask = ~torch.isnan(targets)
    values = targets[mask]
    valid = torch.isin(values, torch.tensor(allowed, dtype=values.dtype, device=values.device))
    if not bool(valid.all()):
        raise ValueError(
            f"expected targets in {allowed} or NaN (apply an uncertainty policy first), "
            f"found e.g. {values[~valid][:5].tolist()}"
        )
    return mask


def _masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` where ``mask``; zero (keeping the graph) when nothing is observed."""
    return (values * mask).sum() / mask.sum().clamp(min=1)


def masked_bce(logits: torch.Tensor, targets: torch.Tensor, pos_weight: torch.Tensor | None = None) -> torch.Tensor:
    """Binary cross entropy over observed entries only (NaN targets masked), mean over observed entries.

    Targets may be soft labels in [0, 1] (label smoothing, Pham et al. 2021), but not -1: map uncertain labels first.
    """
    mask = ~torch.isnan(targets)
    if bool(((targets[mask] < 0) | (targets[mask] > 1)).any()):
        raise ValueError("masked_bce: targets must lie in [0, 1] or be NaN (apply an uncertainty policy to -1 first)")
    with torch.autocast(logits.device.type, enabled=False):
        per_entry = F.binary_cross_entropy_with_logits(
            logits.float(), torch.nan_to_num(targets.float()), pos_weight=pos_weight, reduction="none"
        )
        return _masked_mean(per_entry, mask)


def focal_loss(
    logits: torch.Tensor, targets: torch.Tensor, gamma: float = 2.0, alpha: float | None = None
) -> torch.Tensor:
    """Focal loss ``FL(p_t) = -alpha_t (1 - p_t)^gamma log(p_t)`` (Lin et al. 2017, eq. 5), NaN targets masked.

    ``alpha`` weighs positives (``1 - alpha`` negatives); None means no weighting. Mean over observed entries.
    """
    mask = _observed(targets, (0.0, 1.0))
    with torch.autocast(logits.device.type, enabled=False):
        logits, y = logits.float(), torch.nan_to_num(targets.float())
        log_p_t = -F.binary_cross_entropy_with_logits(logits, y, reduction="none")
        per_entry = -((-torch.expm1(log_p_t)) ** gamma) * log_p_t  # (1 - p_t)^gamma, precise as p_t -> 1
        if alpha is not None:
            per_entry = per_entry * (alpha * y + (1 - alpha) * (1 - y))
        return _masked_mean(per_entry, mask)


def multiclass_uncertainty_ce(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """CheXpert's U-MultiClass (Irvin et al. 2019): per finding, a 3-way softmax over negative/positive/uncertain.

    ``logits`` ``(B, K, 3)`` (class order 0 = negative, 1 = positive, 2 = uncertain), ``targets`` ``(B, K)`` in
    {0, 1, -1} or NaN (masked). Mean cross entropy over observed entries. At test time use
    ``multiclass_uncertainty_probability``.
    """
    if logits.shape != (*targets.shape, 3):
        raise ValueError(f"expected logits of shape {(*targets.shape, 3)}, found {tuple(logits.shape)}")
    mask = _observed(targets, (0.0, 1.0, -1.0))
    classes = torch.nan_to_num(targets).long().where(targets != -1, UNCERTAIN_CLASS)
    with torch.autocast(logits.device.type, enabled=False):
        per_entry = F.cross_entropy(logits.float().flatten(0, 1), classes.flatten(), reduction="none")
        return _masked_mean(per_entry.view_as(targets), mask)


def multiclass_uncertainty_probability(logits: torch.Tensor) -> torch.Tensor:
    """P(positive) from U-MultiClass logits: softmax over the negative and positive classes only (Irvin et al.)."""
    return logits[..., :2].float().softmax(dim=-1)[..., 1]


def positive_weights(labels: np.ndarray | torch.Tensor) -> torch.Tensor:
    """Per-finding ``pos_weight = negatives / positives`` over observed 0/1 labels, for ``masked_bce``.

    A finding lacking positives or negatives gets weight 1 (there is nothing to balance).
    """
    y = torch.as_tensor(np.asarray(labels, dtype=np.float64))
    positives = (y == 1).sum(dim=0)
    negatives = (y == 0).sum(dim=0)
    balanced = (positives > 0) & (negatives > 0)
    return torch.where(balanced, negatives / positives.clamp(min=1), torch.ones_like(negatives)).float()


def inverse_frequency_weights(labels: np.ndarray | torch.Tensor) -> torch.Tensor:
    """Per-sample weights for a ``WeightedRandomSampler`` that evens out findings.

    Each sample is put in the group of its rarest positive finding (or a "no positive" group), and weighted by
    ``1 / group size``; weights are scaled to sum to the number of samples.
    """
    y = np.asarray(labels, dtype=np.float64) == 1
    counts = y.sum(axis=0)
    rarity = np.where(y, counts[None, :], np.inf)
    group = np.where(y.any(axis=1), rarity.argmin(axis=1), -1)
    _, inverse, sizes = np.unique(group, return_inverse=True, return_counts=True)
    weights = 1.0 / sizes[inverse]
    return torch.as_tensor(weights * len(weights) / weights.sum(), dtype=torch.double)
