"""Image-text contrastive losses: ConVIRT's weighted InfoNCE and CLIP's symmetric one, with a learnable scale.

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
) -> torch.Tensor:
    """``mean_i [lam l_i^{v->t} + (1 - lam) l_i^{t->v}]`` (ConVIRT, Zhang et al. 2022; CLIP at ``lam = 1/2``).

    ConVIRT: ``temperature=0.1``, ``image_weight=0.75``. CLIP (Radford et al. 2021, fig. 3): ``image_weight=0.5`` and
    ``temperature = 1 / LogitScale()``, a tensor that receives gradients. With ``gather=True`` each rank's rows are
    scored against the other modality of every rank, gathered with gradients (open_clip's ``local_loss`` with
    ``gather_with_grad``); the targets are offset by the rank, and every rank must hold the same batch size.
    ``valid`` (B,) bool marks the rows that have a report: the others are no query and their text no candidate
    (their image stays a negative for the other reports). Computed in float32 whatever the autocast dtype outside.
    """
    if not 0.0 <= image_weight <= 1.0:
        raise ValueError(f"image_text_info_nce: image_weight must be in [0, 1], found {image_weight}")
    if image.shape != text.shape:
        raise ValueError(f"image_text_info_nce: image {tuple(image.shape)} and text {tuple(text.shape)} must match")
    with torch.autocast(image.device.type, enabled=False):
        v, t = F.normalize(image.float(), dim=1), F.normalize(text.float(), dim=1)
        all_v, all_t = (distributed.gather(v), distributed.gather(t)) if gather else (v, t)
        offset = distributed.rank() * len(v) if gather else 0
        targets = torch.arange(len(v), device=v.device) + offset
        image_to_text = v @ all_t.T / temperature
        if valid is None:
            return (image_weight * F.cross_entropy(image_to_text, targets)
                    + (1 - image_weight) * F.cross_entropy(t @ all_v.T / temperature, targets))
        weight = valid.float()
        all_valid = distributed.gather_detached(weight) if gather else weight
        image_to_text = image_to_text.masked_fill(all_valid[None, :] == 0, float("-inf"))
        image_to_text = torch.where(weight[:, None] > 0, image_to_text, 0.0)  # no query: no -inf row (NaN)
        per_row = (image_weight * F.cross_entropy(image_to_text, targets, reduction="none")
                   + (1 - image_weight) * F.cross_entropy(t @ all_v.T / temperature, targets, reduction="none"))
        return (per_row * weight).sum() / weight.sum().clamp(min=1)


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
