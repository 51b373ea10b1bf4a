"""The local side GLoRIA and MGCA share on top of ConVIRT: the image encoder's last spatial map projected to
regions and the report's word tokens (``[CLS]``, ``[SEP]`` and padding left out) projected to words, in one
``local_dim`` space, from one pass through each tower."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from cxrl.methods.base import Batch, BuildContext
from cxrl.methods.convirt import ConVIRT
from cxrl.models.pyramid import probe_feature_maps


@dataclass
class WordRegionFeatures:
    """Joint-space ``image`` / ``report`` ``(B, D)`` with ``valid`` reports, ``regions`` ``(B, h*w, local_dim)``,
    ``words`` ``(B, L, local_dim)`` and ``word_mask`` ``(B, L)``."""

    image: torch.Tensor
    report: torch.Tensor
    valid: torch.Tensor
    regions: torch.Tensor
    words: torch.Tensor
    word_mask: torch.Tensor


class WordRegionMethod(ConVIRT):
    """ConVIRT plus region (1x1 conv of the map) and word (linear) projections; ``cfg`` needs ``local_dim``."""

    pooled_text_only = False

    def __init__(self, encoder: nn.Module, cfg, ctx: BuildContext) -> None:
        super().__init__(encoder, cfg, ctx)
        channels = probe_feature_maps(encoder, ctx.image_size, n=1)[-1].shape[1]
        self.region_projection = nn.Conv2d(channels, cfg.local_dim, 1)
        self.word_projection = nn.Linear(self.text.num_features, cfg.local_dim)

    def word_region_features(self, views: Sequence[torch.Tensor], batch: Batch) -> WordRegionFeatures:
        text = self.text_features(batch)
        pooled, feature_map = self.encoder.pooled_and_map(views[0])
        image, report, valid = self.joint(pooled, text)
        regions = self.region_projection(feature_map).flatten(2).transpose(1, 2)
        return WordRegionFeatures(image, report, valid, regions, self.word_projection(text.tokens),
                                  word_mask(text.mask))


def word_mask(mask: torch.Tensor) -> torch.Tensor:
    """The real-token mask ``(B, L)`` without each row's first (``[CLS]``) and last real (``[SEP]``) token."""
    words = mask.clone()
    words[:, 0] = False
    last = (mask.sum(1) - 1).clamp(min=0)
    words[torch.arange(len(mask), device=mask.device), last] = False
    return words
