"""ConVIRT (Zhang et al., MLHC 2022) and CLIP (Radford et al., ICML 2021): an image and a report of the same study
are pulled together in a joint space, against the other reports and images of the global batch.

Image encoder + ``g_v`` and text encoder + ``g_u`` (Linear-ReLU-Linear to 512 d), then the weighted two-way InfoNCE
of :func:`cxrl.losses.image_text_info_nce` (ConVIRT Eq. 2-3: ``tau = 0.1``, ``lambda = 0.75``). With
``learn_temperature`` it is CLIP's symmetric loss with a learnable logit scale (set ``image_weight: 0.5``).
Report tokens come from the token cache (:mod:`cxrl.data.tokens`), never tokenized in the hot path; a locked text
tower (``locked_text``) is not even run: its report and sentence features are cached once
(:mod:`cxrl.data.text_features`). ``negation_negatives`` adds each report's negation flip as a NegCLIP hard
negative.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cxrl.data.text_features import cached_sentence_features, cached_text_features
from cxrl.data.tokens import ReportTokens, load_tokens, report_columns, resolve_tokenizer, tokenize_reports
from cxrl.errors import ConfigError
from cxrl.losses.image_text import LogitScale, dhn_nce, image_text_info_nce, semantic_matching_loss
from cxrl.methods.base import Batch, BuildContext, Logs, PretrainMethod
from cxrl.methods.registry import register_method
from cxrl.models.image_text import Projection
from cxrl.models.text import TextFeatures, create_text_encoder
from cxrl.transforms import choose_sentences, convirt_views, sentence_view

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
    negation_negatives: bool = False  # NegCLIP-style: each report's negation flip is an extra image-to-text
    #                                   negative (cxrl.data.text.negation; info_nce only)
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
    locked_text: bool = False  # LiT-style locked text tower (e.g. minilm): frozen whole, its pooled report (and,
    #                            with sentence_prob, sentence) features computed once and cached
    #                            (cxrl.data.text_features); the image tower and the projections learn


@register_method("convirt", config=ConVIRTConfig, aliases=("clip",))
class ConVIRT(PretrainMethod):
    """Image-report contrastive pre-training (ConVIRT / CLIP); exports image and text encoders and projections."""

    columns = ("image", "index", "report_tokens", "report_mask")
    pooled_text_only = True  # the loss reads only pooled report features (so a locked tower's cache serves it)

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
        if cfg.negation_negatives and cfg.loss != "info_nce":
            raise ConfigError(f"method.negation_negatives=true needs method.loss=info_nce, not {cfg.loss!r}")
        self.sentence_tables: dict[str, np.ndarray] = {}  # locked_text with sentence_prob: cached sentence features
        if cfg.locked_text:
            lock_text_tower(self, cfg)
        # only what the loss reads travels through the loader
        texts = ("report", "negated") if cfg.negation_negatives else ("report",)
        self.columns = (*type(self).columns, *(f"{t}_sentences" for t in texts if cfg.sentence_prob > 0),
                        *(("negated_tokens", "negated_mask") if cfg.negation_negatives else ()),
                        *(f"{t}_features" for t in texts if cfg.locked_text),
                        *(f"{t}_sentence_rows" for t in texts if cfg.locked_text and cfg.sentence_prob > 0),
                        *(("labels",) if cfg.loss == "semantic" else ()))

    def column_arrays(self, cache: Any) -> dict[str, np.ndarray]:
        arrays = {}
        for text in ("report", "negated") if self.cfg.negation_negatives else ("report",):
            tokens = self.report_tokens(cache, text)
            arrays |= report_columns(tokens, text)
            if self.cfg.locked_text:
                arrays[f"{text}_features"] = cached_text_features(tokens, self.text)
            if self.cfg.locked_text and self.cfg.sentence_prob > 0:
                table, arrays[f"{text}_sentence_rows"] = cached_sentence_features(tokens, self.text)
                self.sentence_tables[text] = table
        return arrays

    def report_tokens(self, cache: Any, variant: str = "report") -> ReportTokens:
        """The cache's reports (or their ``variant``) in this text tower's tokens (the token cache, written once)."""
        tokenizer = self.tokenizer or self.cfg.text_encoder
        return load_tokens(tokenize_reports(cache.path, tokenizer, self.cfg.max_length, variant))

    def loss(self, views: Sequence[torch.Tensor], batch: Batch) -> tuple[torch.Tensor, Logs]:
        text = self.text_features(batch)
        return self.global_loss(*self.joint(self.encoder(views[0]), text), batch), {}

    def text_features(self, batch: Batch, text: str = "report") -> TextFeatures:
        """The text tower on the batch's ``text`` view (:meth:`text_view`); a locked tower's cached pooled features
        in training (``tokens`` then holds no per-token features)."""
        if self.cfg.locked_text and self.training:
            mask = batch[f"{text}_mask"].bool()
            return TextFeatures(pooled=self.locked_features(batch, text), tokens=mask.new_zeros(0), mask=mask)
        return self.text(*self.text_view(batch, text))

    def locked_features(self, batch: Batch, text: str) -> torch.Tensor:
        """A locked tower's cached features of the batch's ``text`` view: whole reports, or with ``sentence_prob``
        the cached features of the sentence :meth:`text_view` would keep (the same draw)."""
        pooled = batch[f"{text}_features"].float()
        if self.cfg.sentence_prob <= 0:
            return pooled
        chosen = self.sentence_choice(batch, text)
        cut = (chosen > 0).nonzero().flatten()
        rows = batch[f"{text}_sentence_rows"][cut, chosen[cut] - 1].cpu().numpy()
        sentences = torch.from_numpy(np.asarray(self.sentence_tables[text][np.maximum(rows, 0)]))
        keep = torch.from_numpy(rows >= 0).to(pooled.device)  # a flip may have fewer sentences (truncation)
        return pooled.index_put((cut[keep],), sentences.to(pooled)[keep])

    def text_view(self, batch: Batch, text: str = "report") -> tuple[torch.Tensor, torch.Tensor]:
        """Token ids and mask of the batch's ``{text}_tokens`` (a random sentence with ``sentence_prob``: the
        report's draw, kept in ``batch["sentence_choice"]``, serves its negation flip too), shared padding cut."""
        ids, mask = batch[f"{text}_tokens"], batch[f"{text}_mask"]
        if self.training and self.cfg.sentence_prob > 0:
            ids, mask = sentence_view(ids, mask, batch[f"{text}_sentences"], 0, self.sentence_choice(batch, text))
        width = max(int(mask.sum(1).max()), 1)
        return ids[:, :width].long(), mask[:, :width].long()

    def sentence_choice(self, batch: Batch, text: str) -> torch.Tensor:
        """The step's sentence per row (0: whole report), drawn once per batch and kept in ``batch``."""
        if "sentence_choice" not in batch:
            batch["sentence_choice"] = choose_sentences(batch[f"{text}_mask"], batch[f"{text}_sentences"],
                                                        self.cfg.sentence_prob)
        return batch["sentence_choice"]

    def negation_negatives(self, batch: Batch) -> dict[str, torch.Tensor]:
        """``hard_text`` (B, D) the joint-space negation flips of the batch's report views and ``hard_valid``: a
        flip that exists and differs from its report view (a sentence naming no finding flips to itself)."""
        (ids, mask), (flip_ids, flip_mask) = self.text_view(batch), self.text_view(batch, "negated")
        width = max(ids.shape[1], flip_ids.shape[1])
        same = (F.pad(ids * mask, (0, width - ids.shape[1])) == F.pad(flip_ids * flip_mask,
                                                                     (0, width - flip_ids.shape[1]))).all(1)
        flip = self.text_features(batch, "negated")
        return {"hard_text": self.text_projection(flip.pooled), "hard_valid": flip.mask.any(1) & ~same}

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
        hard = self.negation_negatives(batch) if self.cfg.negation_negatives and self.training else {}
        return image_text_info_nce(image, text, temperature, self.cfg.image_weight, gather=True, valid=valid, **hard)

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


def lock_text_tower(method: ConVIRT, cfg: ConVIRTConfig) -> None:
    """Freeze the whole text tower for ``locked_text``, refusing what needs it to run in training."""
    if not method.pooled_text_only:
        raise ConfigError(f"method.locked_text=true: {cfg.name} reads per-token text features in training, which "
                          "the cache of pooled features does not hold")
    method.text.requires_grad_(False)


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
