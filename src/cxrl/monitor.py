"""Online monitor: a cheap multi-label linear probe each epoch to see learning (and catch collapse) early.

Features of a few hundred labeled images (the deterministic eval view) -> standardized logistic regression per
pathology fitted on half of the patients -> macro AUROC on the other half (``monitor/auroc``), plus the mean
per-dimension std of the L2-normalized features (``monitor/feat_std``; near 0 = collapse, which it warns of).
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

from cxrl.data.cache import Cache
from cxrl.data.labels import label_matrix, present_pathologies
from cxrl.evaluate.features import extract_features
from cxrl.evaluate.metrics import auroc
from cxrl.evaluate.probe import fit_logistic

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
    """Monitor images (uint8), binary labels (NaN unknown) and a fit/score patient split."""

    images: np.ndarray
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
    picked = records.iloc[rows]
    labels = label_matrix(picked, present_pathologies(picked))
    labels = np.where(labels == 1, 1.0, np.where(labels == 0, 0.0, np.nan))  # uncertain -> unknown
    patients = picked["patient_id"].astype(str).to_numpy()
    unique = rng.permutation(np.unique(patients))
    fit = np.isin(patients, unique[: len(unique) // 2])
    return ProbeData(cache.read(rows), labels, fit)


def macro_auroc(features: np.ndarray, labels: np.ndarray, fit: np.ndarray) -> float:
    """Mean over labels (with both classes on both sides) of a logistic probe's AUROC; NaN when none qualify.

    The probe is :func:`cxrl.evaluate.probe.fit_logistic` (all labels at once, ``C = 0.1``) on features
    standardized with the fit half's statistics; AUROC is :func:`cxrl.evaluate.metrics.auroc` on the other half.
    """
    mean, scale = features[fit].mean(0), features[fit].std(0)
    scale[scale < 1e-8] = 1.0
    x = ((features - mean) / scale).astype(np.float32)
    y_fit = np.where(fit[:, None], labels, np.nan).astype(np.float32)
    theta = fit_logistic(torch.from_numpy(x), torch.from_numpy(y_fit), C=0.1)
    scores = x @ theta[:, :-1].numpy().T + theta[:, -1].numpy()
    per_class = auroc(np.where(fit[:, None], np.nan, labels), scores)
    two_sided = [len(np.unique(labels[fit & ~np.isnan(labels[:, k]), k])) == 2 for k in range(labels.shape[1])]
    per_class[~np.array(two_sided, dtype=bool)] = np.nan
    return float(np.nanmean(per_class)) if np.isfinite(per_class).any() else float("nan")


def feature_std(features: torch.Tensor) -> float:
    """Mean per-dimension std of L2-normalized features (about 1/sqrt(dim) when spread, 0 when collapsed)."""
    return float(F.normalize(features.float(), dim=1).std(dim=0).mean())


def collapse_warning(std: float, dim: int, epoch: int) -> str | None:
    """A warning when ``std`` (:func:`feature_std`) is under a tenth of ``1/sqrt(dim)``: the encoder maps every
    image to nearly the same point (healthy runs read 0.3-0.5 of it; a collapsed MGCA read 0.01)."""
    floor = 0.1 / dim**0.5
    if std >= floor:
        return None
    return (f"online monitor, epoch {epoch}: the image features are nearly identical across images (feat_std "
            f"{std:.4f} < {floor:.4f} = 0.1/sqrt({dim})): the encoder is collapsing; lower lr or check the "
            "method's loss weights")


class OnlineMonitor(Callback):
    """Logs ``monitor/auroc`` and ``monitor/feat_std`` every ``every_n_epochs`` epochs (rank 0)."""

    def __init__(self, cache: Cache, cfg: MonitorConfig, image_size: int, seed: int = 0, progress: bool = True) -> None:
        self.cfg, self.progress = cfg, progress
        self.data = select_probe_data(cache, cfg, seed)
        self.image_size = image_size
        if self.data is None:
            log.warning("online monitor: fewer than 8 rows in splits %s; monitor off", cfg.splits)

    def encode(self, encoder: torch.nn.Module, device: torch.device, precision: str = "32-true") -> np.ndarray:
        """Features of the monitor images with the evaluation view, under the training's ``precision``; the
        encoder's train/eval mode is restored."""
        assert self.data is not None
        was_training = encoder.training
        feats = extract_features(encoder, self.data.images, self.image_size, device, self.cfg.batch_size,
                                 desc="monitor" if self.progress else None, precision=precision)
        encoder.train(was_training)
        return feats

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.data is None or not trainer.is_global_zero or (trainer.current_epoch + 1) % self.cfg.every_n_epochs:
            return
        features = self.encode(pl_module.method.encoder, pl_module.device, trainer.precision)
        metrics = {"monitor/feat_std": feature_std(torch.from_numpy(features))}
        warning = collapse_warning(metrics["monitor/feat_std"], features.shape[1], trainer.current_epoch)
        if warning:
            log.warning(warning)
        auroc = macro_auroc(features, self.data.labels, self.data.fit)
        if not np.isnan(auroc):
            metrics["monitor/auroc"] = auroc
        pl_module.log_dict(metrics, rank_zero_only=True)
