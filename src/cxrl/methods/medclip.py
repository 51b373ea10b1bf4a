"""MedCLIP (Wang et al., EMNLP 2022): images and reports decoupled, matched by the similarity of their labels.

Every step takes the loader's image batch (every train row, with a report or not) and, drawn apart from it, a batch
of ``text_batch_size`` reports from a text pool: the reports of the cache's train rows with their study's labels,
plus the train reports of each ``text_data`` cache with its records' labels (or, where it has none of the run's
pathology columns, cxrl's report labeler's, :mod:`cxrl.data.text.labeler`). The loss is MedCLIP's semantic matching
(section 3.3, :func:`cxrl.losses.semantic_matching_loss`) over every image x text combination: soft targets from the
labels' cosine (the paper) or dot product (``label_similarity: dot``, the reference code), -1 mapped by the
``uncertainty`` policy of :mod:`cxrl.data.labels` (the reference code keeps -1 as -1, which no policy does). Under DDP
both sides and their labels are gathered across ranks.

Draws are seeded by (seed, global step, rank): a resumed run draws the same texts, two ranks draw different ones.
The pool is tokenized once (the token cache, :mod:`cxrl.data.tokens`) and held on the CPU; each draw goes to the device.
Text tower, tokenizer, projections and exports are ConVIRT's (:class:`cxrl.methods.convirt.ConVIRT`), so zero-shot,
retrieval and linear evaluation read a run as they read ConVIRT's. The text pooling defaults to MedCLIP's
(``pooling: medclip``, the masked mean over tokens of the average of hidden layers 1, 2 and last, kept by the exported
tower; any HF tower exposes its hidden states). Not reproduced: MedCLIP's bias-free linear projection (here
ConVIRT's MLP) and its sentence-level labels (here whole reports with their study's labels).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
from torch import nn

from cxrl.data.cache import as_cache
from cxrl.data.labels import CHEXPERT_PATHOLOGIES, apply_uncertainty_policy, label_matrix
from cxrl.data.text.labeler import label_reports
from cxrl.data.tokens import report_texts
from cxrl.data.torch_dataset import training_rows
from cxrl.errors import ConfigError
from cxrl.losses import distributed
from cxrl.losses.image_text import CLIP_INIT_TEMPERATURE, semantic_matching_loss
from cxrl.methods.base import Batch, BuildContext, Logs
from cxrl.methods.convirt import ConVIRT, ConVIRTConfig
from cxrl.methods.registry import register_method


@dataclass
class MedCLIPConfig(ConVIRTConfig):
    """The ``method:`` section of ``cxrl pretrain medclip``: ConVIRT's text side plus the text pool and labels."""

    name: str = "medclip"
    loss: str = "semantic"  # the only one: MedCLIP's semantic matching
    temperature: float = CLIP_INIT_TEMPERATURE
    learn_temperature: bool = True  # MedCLIP's learnable logit scale, clamped to [1, 100]
    pooling: str | None = "medclip"  # MedCLIP's: hidden layers 1, 2 and last averaged, then a masked token mean
    text_batch_size: int | None = None  # texts per step over all ranks; None: the image batch size
    text_data: list[str] = field(default_factory=list)  # more caches whose train reports join the text pool
    label_similarity: str = "cosine"  # cosine (the paper) | dot (the reference code)
    pathologies: list[str] = field(default_factory=list)  # the label vector; empty: those present in the train rows
    uncertainty: str = "ignore"  # cxrl.data.labels policy for -1 (ignore: counts as not mentioned)


@register_method("medclip", config=MedCLIPConfig)
class MedCLIP(ConVIRT):
    """Decoupled image-text pre-training with MedCLIP's semantic matching; exports ConVIRT's towers and heads."""

    columns = ("image", "index", "labels")
    pooled_text_only = False

    def __init__(self, encoder: nn.Module, cfg: MedCLIPConfig, ctx: BuildContext) -> None:
        for key, bad in (("loss", cfg.loss != "semantic"), ("sentence_prob", cfg.sentence_prob > 0),
                         ("uncertainty", cfg.uncertainty == "multiclass"),
                         ("label_similarity", cfg.label_similarity not in ("cosine", "dot")),
                         ("text_batch_size", cfg.text_batch_size is not None and cfg.text_batch_size < 1)):
            if bad:
                raise ConfigError(f"method.{key}={getattr(cfg, key)!r} is not an option of medclip (see "
                                  "cxrl/methods/medclip.py: semantic loss, whole reports, 1/0 labels, cosine|dot)")
        if ctx.train_targets is None or len(ctx.pathologies) != ctx.train_targets.shape[1]:
            raise ConfigError("medclip needs the train rows' labels and their pathology names to build its text pool")
        super().__init__(encoder, cfg, ctx)
        self.columns, self.seed, self.step = type(self).columns, ctx.seed, 0
        parts = [self._reports(ctx.cache, training_rows(ctx.cache.records, ctx.train_splits), ctx.train_targets)]
        for path in cfg.text_data:
            cache = as_cache(path)
            rows = training_rows(cache.records, ctx.train_splits)
            parts.append(self._reports(cache, rows, self._labels(cache.records.iloc[rows], ctx)))
        # plain CPU tensors, not buffers: DDP would broadcast buffers every step; a draw goes to the device instead
        self.pool_ids, self.pool_lengths, self.pool_labels = (torch.from_numpy(np.concatenate(x))
                                                              for x in zip(*parts, strict=True))
        if len(self.pool_ids) == 0:
            raise ConfigError("medclip: no train row of the cache or of method.text_data has a report")

    def _reports(self, cache, rows: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, ...]:
        """Token ids (int32), lengths and labels of the ``rows`` of ``cache`` that have a report."""
        tokens = self.report_tokens(cache)
        has = tokens.lengths[rows] > 0
        return (tokens.ids[rows[has]].astype(np.int32), tokens.lengths[rows[has]].astype(np.int64),
                np.asarray(labels, np.float32)[has])

    def _labels(self, records: pd.DataFrame, ctx: BuildContext) -> np.ndarray:
        """A text cache's labels after the policy: its own columns, else the report labeler's."""
        if not any(p in records and records[p].notna().any() for p in ctx.pathologies):
            found = label_reports(report_texts(records).fillna(""))
            records = pd.DataFrame(found, columns=list(CHEXPERT_PATHOLOGIES))
        return apply_uncertainty_policy(label_matrix(records, ctx.pathologies), self.cfg.uncertainty, seed=ctx.seed)

    def draw_texts(self, n: int, device: torch.device | str = "cpu") -> tuple[torch.Tensor, ...]:
        """``n`` pool texts without replacement, seeded by (seed, step, rank): ids, attention mask and labels."""
        if n > len(self.pool_ids):
            raise ConfigError(f"medclip: {n} texts per step, but the text pool holds {len(self.pool_ids)} "
                              "reports; lower method.text_batch_size (or batch_size) or add method.text_data")
        # its own stream (SeedSequence's hash), apart from the engine's per-step seed of torch's global generator
        seed = int(np.random.SeedSequence([self.seed, self.step, distributed.rank()]).generate_state(1)[0])
        pick = torch.randperm(len(self.pool_ids), generator=torch.Generator().manual_seed(seed))[:n]
        lengths = self.pool_lengths[pick]
        width = max(int(lengths.max()), 1)
        mask = torch.arange(width)[None, :] < lengths[:, None]
        return tuple(x.to(device) for x in (self.pool_ids[pick, :width].long(), mask.long(), self.pool_labels[pick]))

    def texts_per_rank(self, n_images: int) -> int:
        """This rank's share of ``text_batch_size`` (its image batch size when unset)."""
        if self.cfg.text_batch_size is None:
            return n_images
        world = distributed.world_size()
        if self.cfg.text_batch_size % world:
            raise ConfigError(f"method.text_batch_size={self.cfg.text_batch_size} must be divisible by the "
                              f"{world} processes")
        return self.cfg.text_batch_size // world

    def loss(self, views: Sequence[torch.Tensor], batch: Batch) -> tuple[torch.Tensor, Logs]:
        ids, mask, text_labels = self.draw_texts(self.texts_per_rank(len(views[0])), views[0].device)
        image, text, _ = self.joint(self.encoder(views[0]), self.text(ids, mask))
        return semantic_matching_loss(image, text, batch["labels"], text_labels, self.temperature(),
                                      self.cfg.label_similarity, gather=True), {}

    def on_step_start(self, step: int, total_steps: int) -> None:
        super().on_step_start(step, total_steps)
        self.step = step
