"""Word-region alignment losses: GLoRIA's attention-weighted local image-text score (Huang et al., ICCV 2021)
and MGCA's within-sample token alignment (Wang et al., NeurIPS 2022).

Regions ``v`` ``(B, M, D)`` (a spatial feature map flattened: M = H x W) and words ``t`` ``(B, T, D)`` with a word
mask ``(B, T)`` (padding and special tokens off). For caption k against image l: raw scores ``r_ij = v_j . t_i``,
region attention ``a_ij = softmax_j(tau1 r_ij)`` (Eq. 2), word contexts ``c_i = sum_j a_ij v_j`` (Eq. 3) and the
image-text score ``Z(l, k) = (1 / tau2) log sum_i exp(tau2 cos(c_i, t_i))`` (Eq. 5). MGCA aligns each word
with its own image's patches against the sample's other words (and each patch likewise), see
:func:`mgca_token_loss`.
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
        scores = raw
        if word_softmax_first:
            scores = raw.masked_fill(~mask[None, :, :, None], torch.finfo(raw.dtype).min).softmax(2)
        attention = (tau1 * scores).softmax(3)
        # cos(c, t) of the context c = sum_m a_m v_m without building c (B, B, T, D): c . t = sum_m a_m raw_m and
        # |c|^2 = a^T (V V^T) a with the image's (M, M) region Gram matrix; M << D makes this the cheap side
        dot = (attention * raw).sum(3)
        gram_attention = torch.einsum("lktm,lmn->lktn", attention, v @ v.transpose(1, 2))
        context_norm = (gram_attention * attention).sum(3).clamp(min=1e-16).sqrt()
        similarity = dot / (context_norm * t.norm(dim=-1)[None]).clamp(min=1e-8)  # (images, captions, words)
        summed = torch.logsumexp((tau2 * similarity).masked_fill(~mask[None], float("-inf")), 2)
        summed = summed.where(mask.any(1)[None, :], 0.0)
        return summed / tau2 if paper_exponent else summed


def gloria_local_loss(scores: torch.Tensor, tau3: float = 10.0) -> torch.Tensor:
    """GLoRIA's local term (Eq. 6-7): ``CE(tau3 Z) + CE(tau3 Z^T)``, image ``i``'s caption on the diagonal."""
    targets = torch.arange(len(scores), device=scores.device)
    return F.cross_entropy(tau3 * scores, targets) + F.cross_entropy(tau3 * scores.T, targets)


def mgca_token_loss(
    patches: torch.Tensor,
    words: torch.Tensor,
    word_mask: torch.Tensor,
    word_weights: torch.Tensor | None = None,
    temperature: float = 0.1,
) -> torch.Tensor:
    """MGCA's cross-modal token alignment (Wang et al., NeurIPS 2022, Eqs. 4-7), negatives from the same sample.

    Per sample, on L2-normalised patches ``p`` ``(N, D)`` and its real words ``w`` ``(T, D)``: word-to-patch
    attention ``a = softmax_N(w p^T / tau)``, visual contexts ``w~_t = normalise(sum_n a_tn p_n)``, similarities
    ``S_tt' = w_t . w~_t' / tau``, and ``sum_t omega_t (CE_row(S)_t + CE_col(S)_t) / 2`` with word weights
    ``omega`` (normalised over the real words; uniform by default, MGCA's [CLS] attention where the caller has
    it); the patch-to-word term is the same with the roles swapped and uniform patch weights. Returns the mean
    over samples of the two terms' mean; a sample without words adds 0.
    """
    if patches.shape[0] != words.shape[0] or patches.shape[-1] != words.shape[-1] or words.shape[:2] != word_mask.shape:
        raise ValueError(f"mgca_token_loss: patches {tuple(patches.shape)}, words {tuple(words.shape)} and word mask "
                         f"{tuple(word_mask.shape)} do not fit (B, N, D), (B, T, D), (B, T)")
    with torch.autocast(patches.device.type, enabled=False):
        p, w, mask = F.normalize(patches.float(), dim=-1), F.normalize(words.float(), dim=-1), word_mask.bool()
        weights = mask.float() if word_weights is None else word_weights.float() * mask
        weights = weights / weights.sum(1, keepdim=True).clamp(min=1e-12)
        every_patch = torch.ones(p.shape[:2], dtype=torch.bool, device=p.device)
        word_term = _token_term(w, p, mask, every_patch, weights, temperature)
        patch_term = _token_term(p, w, every_patch, mask, every_patch / p.shape[1], temperature)
        has_words = mask.any(1)
        return torch.where(has_words, (word_term + patch_term) / 2, 0.0).sum() / len(p)


def _token_term(queries, keys, query_mask, key_mask, weights, temperature) -> torch.Tensor:
    """Per sample ``sum_q weight_q (CE_row + CE_col)(S)_q / 2`` with ``S = queries . context^T / tau`` and each
    query's context the attention-weighted, normalised keys (masked keys and queries left out)."""
    neg = torch.finfo(queries.dtype).min
    attention = (queries @ keys.transpose(1, 2) / temperature).masked_fill(~key_mask[:, None, :], neg).softmax(2)
    context = F.normalize(attention @ keys, dim=-1)
    pair = query_mask[:, :, None] & query_mask[:, None, :]
    sims = (queries @ context.transpose(1, 2) / temperature).masked_fill(~pair, neg)
    diagonal = sims.diagonal(dim1=1, dim2=2)
    row = sims.logsumexp(2) - diagonal
    col = sims.logsumexp(1) - diagonal
    return (weights * (row + col) / 2).masked_fill(~query_mask, 0.0).sum(1)
