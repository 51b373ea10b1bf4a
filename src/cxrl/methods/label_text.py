"""Fine-grained label-text alignment: images classified by their similarity to learned per-finding text embeddings.

No paper; the design of one of the source projects. Each finding ``k`` (the training labels' columns) has an
embedding ``e_k`` in ConVIRT's joint space (:class:`cxrl.methods.convirt.ConVIRT`, whose towers, projections, options
and exports it keeps): the mean of the unit joint-space embeddings of its positive zero-shot prompts
(:func:`cxrl.evaluate.protocols.zeroshot.load_prompts`; a finding without prompts is its own name), recomputed each
step while the text tower trains, or from the frozen tower's prompt features computed once (``finding_offset``
adds a learned ``(K, D)`` offset). Loss (:mod:`cxrl.losses.label_text`):

``L = BCE(cos(v_i, e_k) / tau + b_k, y_ik) + ortho_weight ||E^ E^T - I||_F^2 / K^2 + contrastive_weight L_ConVIRT``

with ``v_i`` the image in the joint space, ``b_k`` a learned bias, the BCE masked where the label policy leaves no
label (``uncertainty``; a finding not mentioned is a negative unless ``blank: nan``), ``E^`` the unit rows of ``E``
and ``L_ConVIRT`` the image-report term (``method.loss``, gathered across ranks; the other two are per-rank means).
Ablations: ``text_branch: false`` is the visual branch alone (no report term; ``E`` is a free parameter initialised
from the prompts, the text side frozen); ``freeze_text`` / ``freeze_image`` freeze a tower (kept in eval mode).
The run writes ``finding_similarity.png`` / ``.json``: the cosine similarities of ``E`` at build and after training.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cxrl.errors import ConfigError
from cxrl.losses import masked_bce
from cxrl.losses.label_text import finding_logits, orthogonality_loss
from cxrl.methods.base import Batch, BuildContext, Logs
from cxrl.methods.convirt import ConVIRT, ConVIRTConfig
from cxrl.methods.registry import register_method

FINDING_SIMILARITY = "finding_similarity.png"  # in the run folder; `cxrl explain` shows it


@dataclass
class LabelTextConfig(ConVIRTConfig):
    """The ``method:`` section of ``cxrl pretrain label_text``: ConVIRT's plus the finding terms' and switches."""

    name: str = "label_text"
    pathologies: list[str] = field(default_factory=list)  # the findings; empty: every one with a positive train row
    uncertainty: str = "ignore"  # cxrl.data.labels policy for -1 (ignore: masked)
    blank: str = "zero"  # "not mentioned": zero (a negative, MIMIC's reading) | nan (masked)
    prompts: str | None = None  # YAML {finding: {positive: [...], negative: [...]}} as `cxrl evaluate --prompts`
    cls_temperature: float = 0.1  # tau of the image-to-finding logits
    ortho_weight: float = 1.0
    contrastive_weight: float = 1.0
    text_branch: bool = True  # false: the visual branch alone (no report term, free finding embeddings)
    freeze_text: bool | None = None  # None: frozen without the text branch, trained with it
    freeze_image: bool = False
    finding_offset: bool = False  # a frozen text tower's finding embeddings plus a learned offset


@register_method("label_text", config=LabelTextConfig)
class LabelText(ConVIRT):
    """ConVIRT plus classification against per-finding text embeddings kept orthogonal; exports as ConVIRT."""

    pooled_text_only = False

    def __init__(self, encoder: nn.Module, cfg: LabelTextConfig, ctx: BuildContext) -> None:
        frozen_text = not cfg.text_branch if cfg.freeze_text is None else cfg.freeze_text
        check_switches(cfg, frozen_text)
        super().__init__(encoder, cfg, ctx)
        self.frozen_text = frozen_text
        self.findings = list(ctx.pathologies)
        if not self.findings:
            raise ConfigError("label_text needs labels: no finding has a positive train row (see method.pathologies)")
        from cxrl.evaluate.protocols.zeroshot import load_prompts

        prompts = load_prompts(cfg.prompts)
        texts = [(k, p) for k, f in enumerate(self.findings) for p in (prompts[f][0] if f in prompts else (f,))]
        tokens = self.text.tokenize([p for _, p in texts], cfg.max_length)
        self.register_buffer("prompt_ids", tokens["input_ids"], persistent=False)
        self.register_buffer("prompt_mask", tokens["attention_mask"], persistent=False)
        owner = F.one_hot(torch.tensor([k for k, _ in texts]), len(self.findings)).T.float()  # (K, P)
        self.register_buffer("prompt_average", owner / owner.sum(1, keepdim=True), persistent=False)
        self.text.requires_grad_(not self.frozen_text)
        self.text_projection.requires_grad_(cfg.text_branch)
        self.encoder.requires_grad_(not cfg.freeze_image)
        self.learned_findings: nn.Parameter | None = None
        self.offset: nn.Parameter | None = None
        self.text.eval()  # no dropout in what is computed once
        with torch.no_grad():
            frozen = self.text(self.prompt_ids, self.prompt_mask).pooled if self.frozen_text else None
            self.register_buffer("frozen_prompts", frozen, persistent=False)
            initial = self.finding_embeddings()
        self.train()  # frozen towers back in eval mode (the engine trains the method as built)
        self.register_buffer("initial_findings", initial)
        if not cfg.text_branch:
            self.learned_findings = nn.Parameter(initial.clone())
        if cfg.finding_offset:
            self.offset = nn.Parameter(torch.zeros_like(initial))
        self.finding_bias = nn.Parameter(torch.zeros(len(self.findings)))
        reports = self.columns if cfg.text_branch else ("image", "index")
        self.columns = tuple(dict.fromkeys((*reports, "labels")))

    def finding_embeddings(self) -> torch.Tensor:
        """``E`` ``(K, D)``: per finding, the mean unit joint-space embedding of its prompts (+ the offset)."""
        if self.learned_findings is not None:
            return self.learned_findings
        pooled = self.frozen_prompts if self.frozen_prompts is not None else self.text(self.prompt_ids,
                                                                                         self.prompt_mask).pooled
        mean = self.prompt_average @ F.normalize(self.text_projection(pooled).float(), dim=1)
        return mean if self.offset is None else mean + self.offset

    def column_arrays(self, cache: Any) -> dict[str, np.ndarray]:
        return super().column_arrays(cache) if self.cfg.text_branch else {}

    def loss(self, views: Sequence[torch.Tensor], batch: Batch) -> tuple[torch.Tensor, Logs]:
        cfg, pooled = self.cfg, self.encoder(views[0])
        if cfg.text_branch:
            image, report, valid = self.joint(pooled, self.text_features(batch))
        else:
            image = self.image_projection(pooled)
        findings = self.finding_embeddings()
        cls = masked_bce(finding_logits(image, findings, cfg.cls_temperature, self.finding_bias), batch["labels"])
        ortho = orthogonality_loss(findings)
        total, logs = cls + cfg.ortho_weight * ortho, {"cls_loss": cls.detach(), "ortho_loss": ortho.detach()}
        if cfg.text_branch:
            contrastive = self.global_loss(image, report, valid, batch)
            total, logs["contrastive_loss"] = total + cfg.contrastive_weight * contrastive, contrastive.detach()
        return total, logs

    def train(self, mode: bool = True) -> LabelText:
        super().train(mode)
        for frozen, tower in ((self.frozen_text, self.text), (self.cfg.freeze_image, self.encoder)):
            if frozen:  # a frozen tower's BatchNorm statistics and dropout stay as built
                tower.eval()
        return self

    def write_artifacts(self, run_dir: Path) -> None:
        """``finding_similarity.png`` (before / after panels) and ``finding_similarity.json`` in ``run_dir``."""
        from cxrl.explain.maps import cosine_matrix, similarity_heatmaps

        was = self.training
        self.eval()
        with torch.no_grad():
            after = self.finding_embeddings().float().cpu().numpy()
        self.train(was)
        matrices = {"before training": cosine_matrix(self.initial_findings.float().cpu().numpy()),
                    "after training": cosine_matrix(after)}
        similarity_heatmaps(matrices, self.findings, run_dir / FINDING_SIMILARITY,
                            "finding-to-finding cosine similarity of the finding embeddings")
        run_dir.joinpath(FINDING_SIMILARITY).with_suffix(".json").write_text(json.dumps(
            {"findings": self.findings, **{k.split()[0]: m.tolist() for k, m in matrices.items()}}, indent=1) + "\n")


def check_switches(cfg: LabelTextConfig, frozen_text: bool) -> None:
    """Refuse ablation switches that contradict each other (ConfigError naming the options)."""
    if not cfg.text_branch:
        if not frozen_text:
            raise ConfigError("method.freeze_text=false: without the text branch (method.text_branch=false) the "
                              "text tower gets no gradient; drop freeze_text or set it true")
        reports = [k for k in ("learn_temperature", "sentence_prob") if getattr(cfg, k)]
        if reports:
            raise ConfigError(f"method.{reports[0]} sets the report term, which method.text_branch=false leaves out")
    if cfg.finding_offset and not (cfg.text_branch and frozen_text):
        raise ConfigError("method.finding_offset=true refines the finding embeddings of a frozen text tower: it needs "
                          "method.text_branch=true and method.freeze_text=true")
