"""Image-text contrastive losses: ConVIRT's weighted InfoNCE and CLIP's symmetric one, with a learnable scale, and
MedCLIP-SAM's DHN-NCE (hard negatives up-weighted, the positive out of the denominator).

``s_ij = v_i . t_j`` on L2-normalized image embeddings ``v`` and text embeddings ``t``. The image-to-text term of
pair i is ``l_i^{v->t} = -log exp(s_ii / tau) / sum_k exp(s_ik / tau)`` and ``l_i^{t->v}`` swaps the roles.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from cxrl.losses import distributed

CLIP_INIT_TEMPERATURE = 0.07  # Radford et al. 2021, section 2.5
MAX_LOGIT_SCALE = 100.0  # open_clip clamps the scale to [1, 100] (log scale to [0, ln 100])


def image_text_info_nce(
    image: torch.Tensor,
    text: torch.Tensor,
    temperature: float | torch.Tensor = 0.1,
    image_weight: float = 0.5,
    gather: bool = False,
    valid: torch.Tensor | None = None,
    hard_text: torch.Tensor | None = None,
    hard_valid: torch.Tensor | None = None,
) -> torch.Tensor:
    """``mean_i [lam l_i^{v->t} + (1 - lam) l_i^{t->v}]`` (ConVIRT, Zhang et al. 2022; CLIP at ``lam = 1/2``).

    ConVIRT: ``temperature=0.1``, ``image_weight=0.75``. CLIP (Radford et al. 2021, fig. 3): ``image_weight=0.5`` and
    ``temperature = 1 / LogitScale()``, a tensor that receives gradients. With ``gather=True`` each rank's rows are
    scored against the other modality of every rank, gathered with gradients (open_clip's ``local_loss`` with
    ``gather_with_grad``); the targets are offset by the rank, and every rank must hold the same batch size.
    ``valid`` (B,) bool marks the rows that have a report: the others are no query and their text no candidate
    (their image stays a negative for the other reports). ``hard_text`` (B, D) are extra candidates of the
    image-to-text term only (NegCLIP's hard negative captions, Yuksekgonul et al. 2023), gathered like ``text``;
    ``hard_valid`` (B,) bool marks the real ones. Computed in float32 whatever the autocast dtype outside.
    """
    if not 0.0 <= image_weight <= 1.0:
        raise ValueError(f"image_text_info_nce: image_weight must be in [0, 1], found {image_weight}")
    if image.shape != text.shape:
        raise ValueError(f"image_text_info_nce: image {tuple(image.shape)} and text {tuple(text.shape)} must match")
    with torch.autocast(image.device.type, enabled=False):
        v, t, all_v, all_t, targets = _joint_space(image, text, gather)
        image_to_text = v @ all_t.T / temperature
        weight = None if valid is None else valid.float()
        if weight is not None:
            image_to_text = image_to_text.masked_fill(~_all_valid(weight, gather)[None, :], float("-inf"))
        if hard_text is not None:
            image_to_text = torch.cat([image_to_text, _hard_logits(v, hard_text, hard_valid, temperature, gather)], 1)
        if weight is None:
            return (image_weight * F.cross_entropy(image_to_text, targets)
                    + (1 - image_weight) * F.cross_entropy(t @ all_v.T / temperature, targets))
        image_to_text = torch.where(weight[:, None] > 0, image_to_text, 0.0)  # no query: no -inf row (NaN)
        per_row = (image_weight * F.cross_entropy(image_to_text, targets, reduction="none")
                   + (1 - image_weight) * F.cross_entropy(t @ all_v.T / temperature, targets, reduction="none"))
        return (per_row * weight).sum() / weight.sum().clamp(min=1)


def _hard_logits(v: torch.Tensor, hard_text: torch.Tensor, hard_valid: torch.Tensor | None,
                 temperature: float | torch.Tensor, gather: bool) -> torch.Tensor:
    """Logits of images ``v`` against the hard negative texts (every rank's when ``gather``), -inf where not valid."""
    h = F.normalize(hard_text.float(), dim=1)
    logits = v @ (distributed.gather(h) if gather else h).T / temperature
    if hard_valid is None:
        return logits
    return logits.masked_fill(~_all_valid(hard_valid.float(), gather)[None, :], float("-inf"))


def _joint_space(image: torch.Tensor, text: torch.Tensor, gather: bool) -> tuple[torch.Tensor, ...]:
    """Unit float32 rows ``v``, ``t``; the other modality's candidates (every rank's, gathered with gradients, when
    ``gather``); and each row's own pair among them (offset by the rank)."""
    v, t = F.normalize(image.float(), dim=1), F.normalize(text.float(), dim=1)
    own = torch.arange(len(v), device=v.device)
    if not gather:
        return v, t, v, t, own
    return v, t, distributed.gather(v), distributed.gather(t), own + distributed.rank() * len(v)


def _all_valid(weight: torch.Tensor, gather: bool) -> torch.Tensor:
    """Which candidate texts are real reports (every rank's when ``gather``), from this rank's 0/1 ``weight``."""
    return (distributed.gather_detached(weight) if gather else weight) > 0


def semantic_matching_loss(
    image: torch.Tensor,
    text: torch.Tensor,
    image_labels: torch.Tensor,
    text_labels: torch.Tensor,
    temperature: float | torch.Tensor = CLIP_INIT_TEMPERATURE,
    label_similarity: str = "cosine",
    gather: bool = False,
) -> torch.Tensor:
    """MedCLIP's semantic matching loss (Wang et al., EMNLP 2022, section 3.3): soft targets from label similarity.

    ``y_ij = softmax_j(c_ij)`` with ``c_ij = cos(l_i^img, l_j^txt)`` (``label_similarity="cosine"``, the paper) or
    the raw dot product (``"dot"``, the reference ``medclip/losses.py``); predictions
    ``p_ij = softmax_j(cos(v_i, t_j) / tau)``; ``L = (L^{v->t} + L^{t->v}) / 2`` with
    ``L^{v->t} = -mean_i sum_j y_ij log p_ij`` and ``L^{t->v}`` the same on the transposed matrices. Images and
    texts need not be pairs: ``image`` (B, D) with ``image_labels`` (B, K), ``text`` (M, D) with ``text_labels``
    (M, K), labels coded 1 / 0 / -1 (NaN, not mentioned, counts 0; an all-zero vector has similarity 0).
    With ``gather=True`` this rank's images are scored against every rank's texts and its texts against every
    rank's images (embeddings gathered with gradients, labels without), each direction averaged over this rank's
    rows: with the same ``B`` and ``M`` on every rank, the mean over ranks is the loss of the whole batch.
    """
    if label_similarity not in ("cosine", "dot"):
        raise ValueError(f"semantic_matching_loss: label_similarity is 'cosine' or 'dot', not {label_similarity!r}")
    if len(image) != len(image_labels) or len(text) != len(text_labels):
        raise ValueError("semantic_matching_loss: one label row per image and per text")
    with torch.autocast(image.device.type, enabled=False):
        v, t = F.normalize(image.float(), dim=1), F.normalize(text.float(), dim=1)
        li, lt = (torch.nan_to_num(x.float(), nan=0.0) for x in (image_labels, text_labels))
        if label_similarity == "cosine":
            li, lt = F.normalize(li, dim=1), F.normalize(lt, dim=1)
        all_v, all_t = (distributed.gather(x) if gather else x for x in (v, t))
        all_li, all_lt = (distributed.gather_detached(x) if gather else x for x in (li, lt))
        image_to_text = _soft_cross_entropy(li @ all_lt.T, v @ all_t.T / temperature)
        text_to_image = _soft_cross_entropy(lt @ all_li.T, t @ all_v.T / temperature)
        return (image_to_text + text_to_image) / 2


def _soft_cross_entropy(similarity: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """``-mean_i sum_j softmax_j(similarity)_ij log softmax_j(logits)_ij``."""
    return -(similarity.softmax(1) * logits.log_softmax(1)).sum(1).mean()


def dhn_nce(
    image: torch.Tensor,
    text: torch.Tensor,
    temperature: float | torch.Tensor = 0.6,
    beta_image: float = 0.15,
    beta_text: float = 0.15,
    alpha: float = 0.0,
    gather: bool = False,
    valid: torch.Tensor | None = None,
) -> torch.Tensor:
    """DHN-NCE (Koleilat et al., MICCAI 2024, "MedCLIP-SAM", Eq. 1-3): ``mean_i [L_i^{v->t} + L_i^{t->v}]`` with

    ``L_i^{v->t} = -s_ii / tau + log sum_{j != i} w_ij exp(s_ij / tau)``,
    ``w_ij = n_i exp(beta s_ij / tau) / sum_{k != i} exp(beta s_ik / tau)`` (``n_i`` negatives of row i, B - 1
    without masks; ``beta_image`` for v->t, ``beta_text`` for t->v). The positive is out of the denominator
    (decoupled, Yeh et al. 2022); ``alpha > 0`` adds ``alpha exp(s_ii / tau)`` back (HN-NCE, Radenovic et al.
    2023). The weights keep their gradient, as the equations are written. Written from the equations: the
    reference ``loss/hnl.py`` masks by multiplying (the diagonal still enters as ``exp(0)``), normalises with
    ``exp(s)`` instead of ``exp(beta s)`` and uses a fixed batch size; none of that is reproduced. ``gather`` and
    ``valid`` as in :func:`image_text_info_nce`.
    """
    if image.shape != text.shape:
        raise ValueError(f"dhn_nce: image {tuple(image.shape)} and text {tuple(text.shape)} must match")
    if alpha < 0:
        raise ValueError(f"dhn_nce: alpha must be >= 0, found {alpha}")
    with torch.autocast(image.device.type, enabled=False):
        v, t, all_v, all_t, positive = _joint_space(image, text, gather)
        weight = torch.ones(len(v), device=v.device) if valid is None else valid.float()
        all_valid = _all_valid(weight, gather)
        image_to_text = _dhn_direction(v @ all_t.T / temperature, positive, all_valid, beta_image, alpha)
        text_to_image = _dhn_direction(t @ all_v.T / temperature, positive, torch.ones_like(all_valid), beta_text,
                                       alpha)
        per_row = torch.where(weight > 0, image_to_text + text_to_image, 0.0)
        return per_row.sum() / weight.sum().clamp(min=1)


def _dhn_direction(logits: torch.Tensor, positive: torch.Tensor, candidate: torch.Tensor, beta: float,
                   alpha: float) -> torch.Tensor:
    """Per query ``-l_ii + log(alpha e^{l_ii} + n_i sum_j softmax(beta l)_j e^{l_ij})`` over its negatives ``j``
    (``logits`` ``(B, M)`` = ``s / tau``; candidates ``(M,)``); 0 for a query without a negative."""
    rows = torch.arange(len(logits), device=logits.device)
    own = logits[rows, positive]
    negative = candidate[None, :].expand_as(logits).clone()
    negative[rows, positive] = False
    count = negative.sum(1)
    def over_negatives(x: torch.Tensor) -> torch.Tensor:  # log sum_j e^{x_ij} over the negatives j
        return torch.logsumexp(x.masked_fill(~negative, float("-inf")).where(count[:, None] > 0, 0.0), 1)

    log_sum = count.clamp(min=1).float().log() + over_negatives((1 + beta) * logits) - over_negatives(beta * logits)
    if alpha > 0:
        log_sum = torch.logaddexp(log_sum, math.log(alpha) + own)
    return torch.where(count > 0, log_sum - own, 0.0)


class LogitScale(nn.Module):
    """CLIP's learnable inverse temperature ``exp(theta)``, ``theta`` initialised to ``ln(1 / 0.07)``.

    As in open_clip, ``theta`` is clamped in place to ``[0, ln 100]`` by :meth:`clamp_` after each optimizer step,
    so the gradient is never cut by the clamp itself.
    """

    def __init__(self, init_temperature: float = CLIP_INIT_TEMPERATURE):
        super().__init__()
        if not 1 / MAX_LOGIT_SCALE <= init_temperature <= 1.0:
            raise ValueError(f"LogitScale: init_temperature must be in [0.01, 1], found {init_temperature}")
        self.log_scale = nn.Parameter(torch.tensor(math.log(1 / init_temperature)))

    def forward(self) -> torch.Tensor:
        return self.log_scale.exp()

    @torch.no_grad()
    def clamp_(self) -> None:
        self.log_scale.clamp_(0.0, math.log(MAX_LOGIT_SCALE))
