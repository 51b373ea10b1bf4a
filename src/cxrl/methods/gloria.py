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

from cxrl.losses.local_alignment import gloria_local_loss, gloria_local_scores
from cxrl.methods.base import Batch, Logs
from cxrl.methods.convirt import ConVIRTConfig
from cxrl.methods.registry import register_method
from cxrl.methods.word_region import WordRegionMethod


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
class GLoRIA(WordRegionMethod):
    """ConVIRT plus GLoRIA's word-region term; exports the same encoders and projections."""

    def loss(self, views: Sequence[torch.Tensor], batch: Batch) -> tuple[torch.Tensor, Logs]:
        f, cfg = self.word_region_features(views, batch), self.cfg
        global_term = self.global_loss(f.image, f.report, f.valid, batch)
        scores = gloria_local_scores(f.regions, f.words, f.word_mask, cfg.tau1, cfg.tau2, cfg.word_softmax_first)
        local_term = gloria_local_loss(scores, cfg.tau3)
        return global_term + cfg.local_weight * local_term, {"global_loss": global_term.detach(),
                                                            "local_loss": local_term.detach()}
