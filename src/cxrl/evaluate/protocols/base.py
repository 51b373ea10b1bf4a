"""What every evaluation protocol is: fit on a label subset, predict, score (``cxrl evaluate --protocol NAME``).

The driver (:func:`cxrl.evaluate.protocol.run_evaluation`) settles the data (leakage check, selection and test
roles, label policy, pathologies), builds the protocol once per evaluation from an :class:`EvalSetup` (a place
to compute what every run reuses, e.g. cached features), then for every (label fraction, seed) calls
``fit(train rows, seed)``, ``predict(fitted)`` and ``metrics(predictions, seed, fraction)``; report.py and compare.py
render whatever ``metrics`` returns (the summary keys are the run's scalar keys in :attr:`summary_keys`).
A ``label_free`` protocol (zero-shot, retrieval) runs once, recorded as label fraction 0 with the base seed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch
from torch import nn

from cxrl.evaluate.metrics import choose_thresholds, evaluate_scores
from cxrl.evaluate.subgroups import subgroup_metrics

if TYPE_CHECKING:
    from cxrl.data.cache import Cache
    from cxrl.evaluate.protocol import EvalConfig, EvalData
    from cxrl.models.image_text import ImageTextModel


@dataclass
class EvalSetup:
    """What a protocol is built from: the encoder and its description, the caches and roles, the settings."""

    model: nn.Module
    encoder_info: dict[str, Any]
    source: Cache
    ev: EvalData
    cfg: EvalConfig
    image_size: int
    device: torch.device
    out: Path
    image_text: ImageTextModel | None = None  # both sides in the joint space, for protocols that need text


@dataclass
class Predictions:
    """One run's scores ``(N, K)`` on the selection (``valid``) and ``test`` rows, what was selected (``selection``,
    saved in the run), and the test embedding ``(N_test, D)`` for the report's map (``None``: no map)."""

    valid: np.ndarray
    test: np.ndarray
    selection: Any = None
    embedding: np.ndarray | None = None


class EvalProtocol:
    """Base of all protocols. Subclasses set ``__init__`` (once per evaluation), :meth:`fit` and :meth:`predict`;
    the default :meth:`metrics` is the multi-label one (thresholds on the selection rows, AUROC/AP/F1/kappa with
    patient-bootstrap intervals on the test rows)."""

    summary_keys: ClassVar[tuple[str, ...]] = ("macro_auroc", "macro_ap", "macro_f1", "macro_kappa")
    label_free: ClassVar[bool] = False  # True: no training labels; the driver runs it once, as label fraction 0
    needs_text: ClassVar[bool] = False  # True: the driver loads the encoder's image-text model (setup.image_text)

    def __init__(self, setup: EvalSetup) -> None:
        self.setup = setup

    def fit(self, train: np.ndarray, seed: int) -> Any:
        """Train on the source rows ``train`` (a label fraction drawn with ``seed``); return what predict needs."""
        raise NotImplementedError

    def predict(self, fitted: Any) -> Predictions:
        """Scores of the selection and test rows."""
        raise NotImplementedError

    def metrics(self, predictions: Predictions, seed: int, fraction: float) -> dict[str, Any]:
        """The run's metrics (``macro_auroc``, ``per_class``, ... for the default, and at the largest label
        ``fraction`` the ``subgroups`` ones of :mod:`cxrl.evaluate.subgroups`)."""
        ev, cfg = self.setup.ev, self.setup.cfg
        thresholds = choose_thresholds(ev.labels[ev.valid], predictions.valid, cfg.threshold_rule)
        test_records = ev.test_cache.records.iloc[ev.test]
        patients = test_records["patient_id"].astype(str).to_numpy()
        result = evaluate_scores(
            ev.test_labels[ev.test], predictions.test, thresholds, ev.pathologies, groups=patients,
            n_boot=cfg.n_bootstrap, seed=seed,
        )
        if cfg.subgroups and fraction == max(cfg.fractions):  # what the report and compare show
            result["subgroups"] = subgroup_metrics(
                ev.test_labels[ev.test], predictions.test, thresholds, test_records, ev.pathologies, cfg.subgroups,
                cfg.age_bins, groups=patients, n_boot=cfg.n_bootstrap, seed=seed, min_count=cfg.min_positives,
            )
        return result
