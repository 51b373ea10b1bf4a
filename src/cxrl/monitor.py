"""Online monitor: a cheap multi-label linear probe each epoch to see learning (and catch collapse) early.

Features of a few hundred labeled images (the deterministic eval view) -> standardized logistic regression per
pathology fitted on half of the patients -> macro AUROC on the other half (``monitor/auroc``), plus the mean
per-dimension std of the L2-normalized features (``monitor/feat_std``; near 0 = collapse).
Runs on global rank 0 only, in eval mode and without gradients; it touches no RNG the training uses.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import lightning.pytorch as pl
import numpy as np
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import Callback
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.preprocessing import StandardScaler

from cxrl.data.cache import Cache
from cxrl.data.labels import label_matrix, present_pathologies
from cxrl.transforms import eval_view, make_view_fn

log = logging.getLogger(__name__)


@dataclass
class MonitorConfig:
    enabled: bool = True
    splits: list[str] = field(default_factory=lambda: ["valid"])  # labeled rows the probe uses
    max_images: int = 256
    every_n_epochs: int = 1
    batch_size: int = 64


@dataclass
class ProbeData:
    """Monitor images (uint8), their cache rows, binary labels (NaN unknown) and a fit/score patient split."""

    images: torch.Tensor
    rows: torch.Tensor
    labels: np.ndarray
    fit: np.ndarray


def select_probe_data(cache: Cache, cfg: MonitorConfig, seed: int = 0) -> ProbeData | None:
    """Up to ``max_images`` seeded rows of ``splits``; patients split half/half into fit and score sets."""
    records = cache.records
    rows = np.flatnonzero(records["split"].isin(cfg.splits).to_numpy())
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.permutation(rows)[: cfg.max_images])
    if len(rows) < 8:
        return None
    pathologies = present_pathologies(records.iloc[rows])
    labels = label_matrix(records.iloc[rows], pathologies)
    labels = np.where(labels == 1, 1.0, np.where(labels == 0, 0.0, np.nan))  # uncertain -> unknown
    patients = records["patient_id"].iloc[rows].astype(str).to_numpy()
    unique = rng.permutation(np.unique(patients))
    fit = np.isin(patients, unique[: len(unique) // 2])
    images = torch.from_numpy(np.stack([cache.images[r] for r in rows]))
    return ProbeData(images, torch.as_tensor(rows), labels, fit)


def macro_auroc(features: np.ndarray, labels: np.ndarray, fit: np.ndarray) -> float:
    """Mean over labels (with both classes on both sides) of a logistic probe's AUROC; NaN when none qualify."""
    x = StandardScaler().fit(features[fit]).transform(features)
    scores = []
    for k in range(labels.shape[1]):
        y = labels[:, k]
        train, test = fit & ~np.isnan(y), ~fit & ~np.isnan(y)
        if len(np.unique(y[train])) < 2 or len(np.unique(y[test])) < 2:
            continue
        probe = LogisticRegression(C=0.1, max_iter=500).fit(x[train], y[train])
        scores.append(roc_auc_score(y[test], probe.decision_function(x[test])))
    return float(np.mean(scores)) if scores else float("nan")


def feature_std(features: torch.Tensor) -> float:
    """Mean per-dimension std of L2-normalized features (about 1/sqrt(dim) when spread, 0 when collapsed)."""
    return float(F.normalize(features.float(), dim=1).std(dim=0).mean())


class OnlineMonitor(Callback):
    """Logs ``monitor/auroc`` and ``monitor/feat_std`` every ``every_n_epochs`` epochs (rank 0)."""

    def __init__(self, cache: Cache, cfg: MonitorConfig, image_size: int, seed: int = 0) -> None:
        self.cfg = cfg
        self.data = select_probe_data(cache, cfg, seed)
        self.view_fn = make_view_fn([eval_view(image_size)])
        if self.data is None:
            log.warning("online monitor: fewer than 8 rows in splits %s; monitor off", cfg.splits)

    @torch.no_grad()
    def encode(self, encoder: torch.nn.Module, device: torch.device) -> torch.Tensor:
        assert self.data is not None
        was_training = encoder.training
        encoder.eval()
        out = []
        for images, rows in zip(
            self.data.images.split(self.cfg.batch_size), self.data.rows.split(self.cfg.batch_size), strict=True
        ):
            out.append(encoder(self.view_fn(images.to(device), rows)[0]).float().cpu())
        encoder.train(was_training)
        return torch.cat(out)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.data is None or not trainer.is_global_zero or (trainer.current_epoch + 1) % self.cfg.every_n_epochs:
            return
        features = self.encode(pl_module.method.encoder, pl_module.device)
        metrics = {"monitor/feat_std": feature_std(features)}
        auroc = macro_auroc(features.numpy(), self.data.labels, self.data.fit)
        if not np.isnan(auroc):
            metrics["monitor/auroc"] = auroc
        pl_module.log_dict(metrics, rank_zero_only=True)
