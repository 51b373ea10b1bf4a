"""MGCA (Wang et al., NeurIPS 2022): multi-granularity cross-modal alignment of images and reports.

``L = instance_weight * L_ITA + token_weight * L_TPA + prototype_weight * L_CPA`` (the reference code's effective
weights are 1, 1, 1, with L_ITA the *sum* of the two directions):

- instance (ITA): ConVIRT's global term (:class:`cxrl.methods.convirt.ConVIRT`, whose text side and options it
  keeps; MGCA's defaults: 128-d joint space, ``tau = 0.07``, both directions weighed alike), which averages the
  two directions: ``instance_weight: 2`` makes it MGCA's sum;
- token (TPA, Eq. 4-7, :func:`cxrl.losses.mgca_token_loss`): the encoder's spatial map projected to patches and
  the report's word tokens (``[CLS]``, ``[SEP]``, padding left out) to words in one ``local_dim`` space, each word
  matched to its own image's attended patches against the sample's other words and vice versa. Word weights are
  uniform: MGCA weighs words by the text tower's last [CLS] attention, which an arbitrary HF tower does not expose;
- prototype (CPA, Eq. 8-10): the joint-space image and report embeddings scored against ``num_prototypes`` unit
  prototypes, each side predicting the other's Sinkhorn codes (SwAV's swapped prediction, :func:`cxrl.losses.
  swav_loss` over the global batch), prototypes frozen for the first ``freeze_prototypes_steps``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from cxrl.losses import swav_loss
from cxrl.losses.local_alignment import mgca_token_loss
from cxrl.methods.base import Batch, BuildContext, Logs, fp32
from cxrl.methods.convirt import ConVIRTConfig
from cxrl.methods.registry import register_method
from cxrl.methods.word_region import WordRegionMethod
from cxrl.models.heads import hold_prototypes, swav_prototypes


@dataclass
class MGCAConfig(ConVIRTConfig):
    """The ``method:`` section of ``cxrl pretrain mgca``: ConVIRT's plus the token and prototype terms'."""

    name: str = "mgca"
    proj_dim: int = 128
    temperature: float = 0.07  # instance term
    image_weight: float = 0.5
    instance_weight: float = 2.0  # x ConVIRT's mean of the two directions = MGCA's sum
    local_dim: int = 128
    token_weight: float = 1.0
    token_temperature: float = 0.1  # tau2
    prototype_weight: float = 1.0
    num_prototypes: int = 500
    prototype_temperature: float = 0.2  # tau3
    sinkhorn_epsilon: float = 0.05
    sinkhorn_iterations: int = 3
    freeze_prototypes_steps: int = 0  # MGCA: the first epoch's steps


@register_method("mgca", config=MGCAConfig)
class MGCA(WordRegionMethod):
    """ConVIRT plus MGCA's token and prototype terms; exports the same encoders and projections."""

    def __init__(self, encoder: nn.Module, cfg: MGCAConfig, ctx: BuildContext) -> None:
        super().__init__(encoder, cfg, ctx)
        self.prototypes = swav_prototypes(cfg.proj_dim, cfg.num_prototypes)

    def on_step_start(self, step: int, total_steps: int) -> None:
        super().on_step_start(step, total_steps)
        with torch.no_grad():
            self.prototypes.normalize()

    def on_after_backward(self, step: int) -> None:
        hold_prototypes(self.prototypes, step, self.cfg.freeze_prototypes_steps)

    def loss(self, views: Sequence[torch.Tensor], batch: Batch) -> tuple[torch.Tensor, Logs]:
        f, cfg = self.word_region_features(views, batch), self.cfg
        image, report, valid = f.image, f.report, f.valid
        instance = self.global_loss(image, report, valid, batch)
        token = mgca_token_loss(f.regions, f.words, f.word_mask, temperature=cfg.token_temperature)
        with fp32(image):
            scores = [self.prototypes(F.normalize(z[valid].float(), dim=1)) for z in (image, report)]
        prototype = swav_loss(scores, temperature=cfg.prototype_temperature,
                              sinkhorn_iterations=cfg.sinkhorn_iterations, epsilon=cfg.sinkhorn_epsilon, gather=True)
        total = cfg.instance_weight * instance + cfg.token_weight * token + cfg.prototype_weight * prototype
        return total, {"instance_loss": instance.detach(), "token_loss": token.detach(),
                       "prototype_loss": prototype.detach()}
