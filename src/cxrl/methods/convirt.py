"""ConVIRT (Zhang et al., MLHC 2022) and CLIP (Radford et al., ICML 2021): an image and a report of the same study
are pulled together in a joint space, against the other reports and images of the global batch.

Image encoder + ``g_v`` and text encoder + ``g_u`` (Linear-ReLU-Linear to 512 d), then the weighted two-way InfoNCE
of :func:`cxrl.losses.image_text_info_nce` (ConVIRT Eq. 2-3: ``tau = 0.1``, ``lambda = 0.75``). With
``learn_temperature`` it is CLIP's symmetric loss with a learnable logit scale (set ``image_weight: 0.5``).
Report tokens come from the token cache (:mod:`cxrl.data.tokens`), never tokenized in the hot path.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from cxrl.data.tokens import ReportTokens, load_tokens, report_columns, resolve_tokenizer, tokenize_reports
from cxrl.errors import ConfigError
from cxrl.losses.image_text import LogitScale, dhn_nce, image_text_info_nce, semantic_matching_loss
from cxrl.methods.base import Batch, BuildContext, Logs, PretrainMethod
from cxrl.methods.registry import register_method
from cxrl.models.image_text import Projection
from cxrl.models.text import TextFeatures, create_text_encoder
from cxrl.transforms import convirt_views, sentence_view

LOSSES = ("info_nce", "dhn_nce", "semantic")


@dataclass
class ConVIRTConfig:
    """The ``method:`` section of ``cxrl pretrain convirt``."""

    name: str = "convirt"
    text_encoder: str = "tiny_text"  # tiny_text (from scratch) | minilm | bioclinicalbert | cxr_bert | hf:NAME
    text_weights: str | None = None  # initial text weights (file or exported run); None: the model's own
    tokenizer: str | None = None  # None: 'wordpiece' (trained on the cache's train reports) for tiny_text,
    #                               the model's own otherwise; or a tokenizer folder / name
    vocab_size: int = 4096  # the 'wordpiece' tokenizer's
    max_length: int = 128  # report tokens kept (findings + impression)
    sentence_prob: float = 0.0  # ConVIRT's t_u: the share of reports cut to one random sentence per step (paper: 1)
    pooling: str | None = None  # cls | mean | medclip (cxrl.models.text); None: the text encoder's default
    tiny_width: int = 64  # tiny_text only: hidden size (4x in the feed-forward, one head per 32)
    tiny_layers: int = 2  # tiny_text only: transformer layers
    proj_hidden_dim: int = 1024
    proj_dim: int = 512
    temperature: float = 0.1
    learn_temperature: bool = False  # CLIP: a learnable logit scale starting at 1 / temperature
    image_weight: float = 0.75  # lambda: weight of the image-to-text direction (CLIP: 0.5)
    loss: str = "info_nce"  # info_nce (ConVIRT / CLIP) | dhn_nce (MedCLIP-SAM: hard negatives, decoupled) |
    #                         semantic (MedCLIP's soft targets from the cache's labels; uncertain counts as blank)
    hn_beta: float = 0.15  # dhn_nce: hardness beta of both directions
    hn_alpha: float = 0.0  # dhn_nce: weight of the positive put back in the denominator (HN-NCE); 0: decoupled
    text_lr: float | None = None  # learning rate of the text encoder; None: the run's lr
    freeze_text_layers: int = 0  # ConVIRT freezes the embeddings and the first 6 BERT layers


@register_method("convirt", config=ConVIRTConfig, aliases=("clip",))
class ConVIRT(PretrainMethod):
    """Image-report contrastive pre-training (ConVIRT / CLIP); exports image and text encoders and projections."""

    columns = ("image", "index", "report_tokens", "report_mask")

    def __init__(self, encoder: nn.Module, cfg: ConVIRTConfig, ctx: BuildContext) -> None:
        super().__init__()
        if ctx.cache is None:
            raise ConfigError("convirt needs the training cache (its reports) to build the text side")
        tokenizer = cfg.tokenizer or ("wordpiece" if cfg.text_encoder == "tiny_text" else None)
        self.tokenizer = tokenizer and resolve_tokenizer(ctx.cache.path, tokenizer, cfg.vocab_size)
        self.cfg, self.encoder = cfg, encoder
        size = dict(hidden_size=cfg.tiny_width, num_hidden_layers=cfg.tiny_layers,
                    num_attention_heads=max(cfg.tiny_width // 32, 1), intermediate_size=4 * cfg.tiny_width)
        self.text = create_text_encoder(cfg.text_encoder, weights=cfg.text_weights, tokenizer=self.tokenizer,
                                        pooling=cfg.pooling, **(size if cfg.text_encoder == "tiny_text" else {}))
        freeze_text_layers(self.text, cfg.freeze_text_layers)
        dims = dict(hidden_dim=cfg.proj_hidden_dim, output_dim=cfg.proj_dim)
        self.image_projection = Projection("image_text_projection", input_dim=encoder.num_features, **dims)
        self.text_projection = Projection("image_text_projection", input_dim=self.text.num_features, **dims)
        self.logit_scale = LogitScale(cfg.temperature) if cfg.learn_temperature else None
        self.views = convirt_views(ctx.image_size)
        if cfg.loss not in LOSSES:
            raise ConfigError(f"method.loss={cfg.loss!r}: choose one of {', '.join(LOSSES)}")
        # only what the loss reads travels through the loader
        self.columns = (*type(self).columns, *(("report_sentences",) if cfg.sentence_prob > 0 else ()),
                        *(("labels",) if cfg.loss == "semantic" else ()))

    def column_arrays(self, cache: Any) -> dict[str, np.ndarray]:
        return report_columns(self.report_tokens(cache))

    def report_tokens(self, cache: Any) -> ReportTokens:
        """The cache's reports in this text tower's tokens (the token cache, written once)."""
        return load_tokens(tokenize_reports(cache.path, self.tokenizer or self.cfg.text_encoder, self.cfg.max_length))

    def loss(self, views: Sequence[torch.Tensor], batch: Batch) -> tuple[torch.Tensor, Logs]:
        text = self.text_features(batch)
        return self.global_loss(*self.joint(self.encoder(views[0]), text), batch), {}

    def text_features(self, batch: Batch) -> TextFeatures:
        """The text tower on the batch's report tokens (a random sentence with ``sentence_prob``), padding every
        row shares cut off."""
        ids, mask = batch["report_tokens"], batch["report_mask"]
        if self.training and self.cfg.sentence_prob > 0:
            ids, mask = sentence_view(ids, mask, batch["report_sentences"], self.cfg.sentence_prob)
        width = max(int(mask.sum(1).max()), 1)
        return self.text(ids[:, :width].long(), mask[:, :width].long())

    def joint(self, pooled: torch.Tensor, text: TextFeatures) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Pooled image features ``(B, F)`` and the text tower's output in the joint space: image ``(B, D)``,
        report ``(B, D)`` embeddings and which reports have tokens ``(B,)``."""
        return self.image_projection(pooled), self.text_projection(text.pooled), text.mask.any(1)

    def global_loss(self, image: torch.Tensor, text: torch.Tensor, valid: torch.Tensor, batch: Batch) -> torch.Tensor:
        """The configured image-report loss (``method.loss``) of joint-space embeddings (:meth:`joint`)."""
        temperature = self.temperature()
        if self.cfg.loss == "dhn_nce":
            return dhn_nce(image, text, temperature, self.cfg.hn_beta, self.cfg.hn_beta, self.cfg.hn_alpha,
                           gather=True, valid=valid)
        if self.cfg.loss == "semantic":  # this rank's pairs; a report's labels are its image's
            labels = batch["labels"]
            return semantic_matching_loss(image, text[valid], labels, labels[valid], temperature)
        return image_text_info_nce(image, text, temperature, self.cfg.image_weight, gather=True, valid=valid)

    def temperature(self) -> float | torch.Tensor:
        """The fixed ``temperature``, or ``1 / logit scale`` when it is learnt (``learn_temperature``)."""
        return 1 / self.logit_scale() if self.logit_scale is not None else self.cfg.temperature

    def on_step_start(self, step: int, total_steps: int) -> None:
        if self.logit_scale is not None:  # after the previous optimizer step, as open_clip does
            self.logit_scale.clamp_()

    def encoders(self) -> dict[str, nn.Module]:
        return {"image": self.encoder, "text": self.text}

    def projections(self) -> dict[str, Projection]:
        return {"image": self.image_projection, "text": self.text_projection}

    def export_meta(self, name: str) -> dict[str, Any]:
        return {"max_length": self.cfg.max_length} if name == "text" else {}

    def lr_groups(self) -> list[tuple[nn.Module, float | None]]:
        return [(self.text, self.cfg.text_lr), (self, None)]


def freeze_text_layers(text: nn.Module, n_layers: int) -> None:
    """Freeze the embeddings and the first ``n_layers`` transformer layers (ConVIRT, section 4.1); 0: none."""
    if n_layers <= 0:
        return
    layers = getattr(getattr(text.model, "encoder", None), "layer", None)
    if layers is None or n_layers > len(layers):
        raise ConfigError(f"freeze_text_layers={n_layers}: the text encoder {text.name!r} has "
                          f"{len(layers) if layers is not None else 'no BERT-style'} layers")
    for module in [text.model.embeddings, *layers[:n_layers]]:
        module.requires_grad_(False)
