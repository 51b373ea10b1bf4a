"""GLoRIA (Huang et al., ICCV 2021): global and local image-report alignment.

The global term is ConVIRT's (pooled image vs pooled report, :class:`cxrl.methods.convirt.ConVIRT`, whose text
side, options and exports it keeps). The local term (Eq. 2-7, :func:`cxrl.losses.gloria_local_scores`) projects the
image encoder's last spatial map to regions and the report's word tokens (``[CLS]``, ``[SEP]`` and padding left
out) to words in one ``local_dim`` space; each word attends over the regions, and the attention-weighted region
context is compared with the word, aggregated into an image-report score ``Z`` that two cross-entropies over the
rank's batch turn into a loss. Loss = ``global + local_weight * local`` (the paper weighs both 1). Tokens stand for
words: the paper merges sub-words into words first, which a word-piece vocabulary trained on the reports makes rare.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from cxrl.losses.local_alignment import gloria_local_loss, gloria_local_scores
from cxrl.methods.base import Batch, BuildContext, Logs
from cxrl.methods.convirt import ConVIRT, ConVIRTConfig
from cxrl.methods.registry import register_method
from cxrl.models.pyramid import probe_feature_maps


@dataclass
class GLoRIAConfig(ConVIRTConfig):
    """The ``method:`` section of ``cxrl pretrain gloria``: ConVIRT's plus the local term's."""

    name: str = "gloria"
    local_dim: int = 256  # shared width of regions and words
    local_weight: float = 1.0
    tau1: float = 4.0  # region attention sharpness (Eq. 2)
    tau2: float = 5.0  # word aggregation (Eq. 5)
    tau3: float = 10.0  # local score scaling in the cross-entropies (Eq. 6-7)
    word_softmax_first: bool = False  # the reference code's extra softmax over words (not in the paper)


@register_method("gloria", config=GLoRIAConfig)
class GLoRIA(ConVIRT):
    """ConVIRT plus GLoRIA's word-region term; exports the same encoders and projections."""

    def __init__(self, encoder: nn.Module, cfg: GLoRIAConfig, ctx: BuildContext) -> None:
        super().__init__(encoder, cfg, ctx)
        channels = probe_feature_maps(encoder, ctx.image_size, n=1)[-1].shape[1]
        self.region_projection = nn.Conv2d(channels, cfg.local_dim, 1)
        self.word_projection = nn.Linear(self.text.num_features, cfg.local_dim)

    def loss(self, views: Sequence[torch.Tensor], batch: Batch) -> tuple[torch.Tensor, Logs]:
        text = self.text_features(batch)
        pooled, feature_map = self.encoder.pooled_and_map(views[0])
        global_term = self.global_loss(*self.joint(pooled, text), batch)
        regions = self.region_projection(feature_map).flatten(2).transpose(1, 2)  # (B, h*w, local_dim)
        cfg = self.cfg
        scores = gloria_local_scores(regions, self.word_projection(text.tokens), word_mask(text.mask), cfg.tau1,
                                     cfg.tau2, cfg.word_softmax_first)
        local_term = gloria_local_loss(scores, cfg.tau3)
        return global_term + cfg.local_weight * local_term, {"global_loss": global_term.detach(),
                                                            "local_loss": local_term.detach()}


def word_mask(mask: torch.Tensor) -> torch.Tensor:
    """The real-token mask ``(B, L)`` without each row's first (``[CLS]``) and last real (``[SEP]``) token."""
    words = mask.clone()
    words[:, 0] = False
    last = (mask.sum(1) - 1).clamp(min=0)
    words[torch.arange(len(mask), device=mask.device), last] = False
    return words
