"""CM-CGNS (Lan et al. 2025, arXiv 2506.11674): cross-modal cluster-guided negative sampling and cross-modal masked
image reconstruction. ``L = L_global + L_img + L_text (+ mir_weight L_rec from mir_start_step, stage 2)``:

- global: ConVIRT's term (:class:`cxrl.methods.convirt.ConVIRT`) in CLIP form, learnable scale from 1 / 0.1. The
  code pools the report by attention over sentence embeddings; here the text tower's own pooling, which export and
  zero-shot read unchanged;
- per sample, patches (the encoder's last map, 1x1-projected, :class:`~cxrl.methods.word_region.WordRegionMethod`)
  and sentences (the mean of a sentence's projected token features) attend to each other (Q/K/V, ``1/sqrt(d)``):
  text-attended patches and image-attended sentences. ``attention: softmax`` is standard cross-attention; the
  reference code's ``sigmoid`` (from PRIOR) is the option;
- image term (:func:`cxrl.losses.cgns.simsiam_local_loss`): patches vs their text-attended features, SimSiam-style;
- text term (:func:`cxrl.losses.cgns.cgns_text_loss`): sentences vs their image-attended features, each with the
  second-nearest of ``num_clusters`` centres as hard negative; the centres are buffers (checkpointed, equal on
  every rank: :func:`cxrl.losses.cgns.cluster_step` gathers the features);
- CM-MIR: patches masked by spatial dropout (whole positions, ``mir_mask_ratio``; the code drops channels for
  ResNets), concatenated with the text-attended features, decoded by convs and 2x upsamplings to the view; L1.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from cxrl.errors import ConfigError
from cxrl.losses.cgns import cgns_text_loss, cluster_step, simsiam_local_loss
from cxrl.methods.base import Batch, BuildContext, Logs, fp32
from cxrl.methods.convirt import ConVIRTConfig
from cxrl.methods.registry import register_method
from cxrl.methods.word_region import WordRegionMethod
from cxrl.models.pyramid import probe_feature_maps


@dataclass
class CMCGNSConfig(ConVIRTConfig):
    """The ``method:`` section of ``cxrl pretrain cm_cgns``: ConVIRT's (as CLIP) plus the local terms'."""

    name: str = "cm_cgns"
    learn_temperature: bool = True
    temperature: float = 0.1  # the global scale starts at 1 / 0.1
    image_weight: float = 0.5
    local_dim: int = 128  # patches, sentences, attention (paper: 768)
    attention: str = "softmax"  # softmax | sigmoid (the reference code)
    num_clusters: int = 16  # K (paper: 128)
    cluster_momentum: float = 0.01  # towards the mean (the code: 0.001 towards the sum, ~ a few members each)
    cluster_start_similarity: float = 0.4  # centres are seeded once mean cos(z1, z2) <= this
    text_temperature: float = 1.0  # the code's; logits then span [-1, 1] and the term barely moves (0.1 learns)
    hard_negative_weight: float = 3.0
    margin_alpha: float = 0.2
    margin_beta: float = 0.5
    false_negative_weight: float = 1e-4
    mir_weight: float = 10.0
    mir_start_step: int = 0  # stage 2 (the paper: after 10 of 30 epochs)
    mir_mask_ratio: float = 0.5


@register_method("cm_cgns", config=CMCGNSConfig)
class CMCGNS(WordRegionMethod):
    """ConVIRT plus CM-CGNS's local, cluster-guided and reconstruction terms; exports ConVIRT's encoders and heads."""

    def __init__(self, encoder: nn.Module, cfg: CMCGNSConfig, ctx: BuildContext) -> None:
        super().__init__(encoder, cfg, ctx)
        if cfg.attention not in ("softmax", "sigmoid") or cfg.num_clusters < 2 or cfg.sentence_prob > 0:
            raise ConfigError("cm_cgns: method.attention is softmax or sigmoid, method.num_clusters >= 2, and "
                              "method.sentence_prob 0 (every sentence of the report is used)")
        self.columns = (*self.columns, "report_sentences")
        d = cfg.local_dim
        self.qkv = nn.ModuleDict({side: nn.Linear(d, 3 * d) for side in ("image", "text")})
        self.predictor = nn.Sequential(nn.Linear(d, d // 2), nn.ReLU(inplace=True), nn.Linear(d // 2, d))
        self.decoder = reconstruction_decoder(2 * d, probe_feature_maps(encoder, ctx.image_size, n=1)[-1].shape[-1],
                                              ctx.image_size)
        self.register_buffer("centres", torch.zeros(cfg.num_clusters, d))
        self.register_buffer("centres_ready", torch.tensor(False))
        self.step = 0

    def on_step_start(self, step: int, total_steps: int) -> None:
        super().on_step_start(step, total_steps)
        self.step = step

    def loss(self, views: Sequence[torch.Tensor], batch: Batch) -> tuple[torch.Tensor, Logs]:
        f, cfg = self.word_region_features(views, batch), self.cfg
        global_term = self.global_loss(f.image, f.report, f.valid, batch)
        patches = F.normalize(f.regions, dim=-1)
        numbers = batch["report_sentences"][:, : f.words.shape[1]]
        sentences, has = sentence_features(F.normalize(f.words, dim=-1), numbers)
        text_to_patch, image_to_sentence = self.cross_attention(patches, sentences, has)
        image_local = simsiam_local_loss(patches.flatten(0, 1), text_to_patch.flatten(0, 1), self.predictor,
                                         has.any(1).repeat_interleave(patches.shape[1]))
        z1, z2 = sentences[has], image_to_sentence[has]
        with fp32(z1):
            cluster_step(self.centres, self.centres_ready, z1, z2, cfg.cluster_momentum, cfg.cluster_start_similarity)
        text_local = cgns_text_loss(z1, z2, self.centres if bool(self.centres_ready) else None, cfg.text_temperature,
                                    cfg.hard_negative_weight, cfg.margin_alpha, cfg.margin_beta,
                                    cfg.false_negative_weight) if len(z1) else z1.sum()
        logs = {"global_loss": global_term.detach(), "image_local_loss": image_local.detach(),
                "text_local_loss": text_local.detach()}
        total = global_term + image_local + text_local
        if self.step < cfg.mir_start_step:  # stage 1: the decoder joins the graph with weight 0 (DDP needs its grads)
            return total + 0.0 * sum(p.sum() for p in self.decoder.parameters()), logs
        # the engine seeds torch's generator per (seed, step, rank): the mask replays on --resume
        keep = torch.rand(patches.shape[:2], device=patches.device) >= cfg.mir_mask_ratio
        masked = patches * keep[..., None] / (1 - cfg.mir_mask_ratio)
        side = math.isqrt(patches.shape[1])
        fused = torch.cat([masked, text_to_patch], -1).transpose(1, 2).unflatten(2, (side, side))
        with fp32(fused):
            reconstruction = F.l1_loss(self.decoder(fused.float()), views[0].float())
        logs["reconstruction_loss"] = reconstruction.detach()
        return total + cfg.mir_weight * reconstruction, logs

    def cross_attention(self, patches: torch.Tensor, sentences: torch.Tensor,
                        has: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per sample, patches ``(B, N, d)`` attend over the real sentences ``(B, S, d)`` (mask ``has``) and the
        sentences over the patches: text-attended patches ``(B, N, d)``, image-attended sentences ``(B, S, d)``."""
        qi, ki, vi = self.qkv["image"](patches).chunk(3, -1)
        qt, kt, vt = self.qkv["text"](sentences).chunk(3, -1)
        every_patch = torch.ones(patches.shape[:2], dtype=torch.bool, device=patches.device)
        return (cross_attend(qi, kt, vt, has, self.cfg.attention),
                cross_attend(qt, ki, vi, every_patch, self.cfg.attention))


def cross_attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, key_mask: torch.Tensor,
                 kind: str = "softmax") -> torch.Tensor:
    """``a(q k^T / sqrt(d)) v`` over the keys in ``key_mask`` (``(B, M)``), ``a`` a softmax over the keys or an
    element-wise sigmoid; a query without keys gets 0."""
    scores = q @ k.transpose(1, 2) * q.shape[-1] ** -0.5
    if kind == "sigmoid":
        return (scores.sigmoid() * key_mask[:, None]) @ v
    return scores.masked_fill(~key_mask[:, None], float("-inf")).softmax(-1).nan_to_num(0.0) @ v

def sentence_features(tokens: torch.Tensor, sentences: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The mean token feature of each sentence, ``(B, S, d)``, and which sentences have tokens ``(B, S)``, from token
    features ``(B, L, d)`` and each token's sentence number ``(B, L)`` (1-based; 0: special tokens, padding)."""
    ids = sentences.long()
    member = F.one_hot(ids, int(ids.max()) + 1)[..., 1:].to(tokens.dtype)  # (B, L, S)
    counts = member.sum(1)
    return member.transpose(1, 2) @ tokens / counts.clamp(min=1)[..., None], counts > 0


def reconstruction_decoder(channels: int, map_size: int, image_size: int, min_channels: int = 16) -> nn.Sequential:
    """CM-MIR's decoder: conv3x3-BN-ReLU and 2x bilinear upsampling (halving the width) until the map reaches the
    image, then a conv3x3 to one channel at exactly ``image_size`` (the code ends in Tanh; views are standardized,
    not bounded, so no Tanh here)."""
    layers: list[nn.Module] = []
    while map_size < image_size:
        out = max(channels // 2, min_channels)
        layers += [nn.Conv2d(channels, out, 3, padding=1), nn.BatchNorm2d(out), nn.ReLU(inplace=True),
                   nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False)]
        channels, map_size = out, map_size * 2
    return nn.Sequential(*layers, nn.Conv2d(channels, 1, 3, padding=1),
                         nn.Upsample(size=(image_size, image_size), mode="bilinear", align_corners=False))
