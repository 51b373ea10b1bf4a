"""Word-region alignment losses: GLoRIA's attention-weighted local image-text score (Huang et al., ICCV 2021).

Regions ``v`` ``(B, M, D)`` (a spatial feature map flattened: M = H x W) and words ``t`` ``(B, T, D)`` with a word
mask ``(B, T)`` (padding and special tokens off). For caption k against image l: raw scores ``r_ij = v_j . t_i``,
region attention ``a_ij = softmax_j(tau1 r_ij)`` (Eq. 2), word contexts ``c_i = sum_j a_ij v_j`` (Eq. 3) and the
image-text score ``Z(l, k) = (1 / tau2) log sum_i exp(tau2 cos(c_i, t_i))`` (Eq. 5).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def gloria_local_scores(
    regions: torch.Tensor,
    words: torch.Tensor,
    word_mask: torch.Tensor,
    tau1: float = 4.0,
    tau2: float = 5.0,
    word_softmax_first: bool = False,
    paper_exponent: bool = True,
) -> torch.Tensor:
    """``Z`` ``(B_images, B_texts)``: GLoRIA's local score of every image against every caption.

    ``word_softmax_first`` is the reference code's extra softmax over a caption's words before the region
    softmax (``a_ij = softmax_j(tau1 softmax_i(r_ij))``); ``paper_exponent=False`` drops the paper's ``1 / tau2``
    in front of the log, as the code does. A caption without a word scores 0 against every image.
    """
    if regions.shape[-1] != words.shape[-1] or words.shape[:2] != word_mask.shape:
        raise ValueError(f"gloria_local_scores: regions {tuple(regions.shape)}, words {tuple(words.shape)} and "
                         f"word mask {tuple(word_mask.shape)} do not fit (B, M, D), (B, T, D), (B, T)")
    with torch.autocast(regions.device.type, enabled=False):
        v, t, mask = regions.float(), words.float(), word_mask.bool()
        raw = torch.einsum("lmd,ktd->lktm", v, t)  # (images, captions, words, regions)
        if word_softmax_first:
            raw = raw.masked_fill(~mask[None, :, :, None], torch.finfo(raw.dtype).min).softmax(2)
        attention = (tau1 * raw).softmax(3)
        context = torch.einsum("lktm,lmd->lktd", attention, v)
        similarity = F.cosine_similarity(context, t[None], dim=-1)  # (images, captions, words)
        summed = torch.logsumexp((tau2 * similarity).masked_fill(~mask[None], float("-inf")), 2)
        summed = summed.where(mask.any(1)[None, :], 0.0)
        return summed / tau2 if paper_exponent else summed


def gloria_local_loss(scores: torch.Tensor, tau3: float = 10.0) -> torch.Tensor:
    """GLoRIA's local term (Eq. 6-7): ``CE(tau3 Z) + CE(tau3 Z^T)``, image ``i``'s caption on the diagonal."""
    targets = torch.arange(len(scores), device=scores.device)
    return F.cross_entropy(tau3 * scores, targets) + F.cross_entropy(tau3 * scores.T, targets)
