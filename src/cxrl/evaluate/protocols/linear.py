"""The linear probe (``--protocol linear``): L2 logistic regression per finding on frozen, cached features, ``C``
chosen on the selection rows (:mod:`cxrl.evaluate.probe`)."""

from __future__ import annotations

from functools import partial
from typing import Any

import numpy as np

from cxrl.evaluate.features import cached_features
from cxrl.evaluate.probe import fit_linear_probe
from cxrl.evaluate.protocols.base import EvalProtocol, EvalSetup, Predictions
from cxrl.evaluate.protocols.registry import register_protocol


@register_protocol("linear")
class LinearProbe(EvalProtocol):
    """Features of the source (and target) cache are extracted once and cached under ``OUT/features``."""

    def __init__(self, setup: EvalSetup) -> None:
        super().__init__(setup)
        cfg = setup.cfg
        features_of = partial(
            cached_features, setup.model, setup.encoder_info["fingerprint"], image_size=setup.image_size,
            folder=setup.out / "features", device=setup.device, batch_size=cfg.batch_size, precision=cfg.precision,
        )
        self.feats = features_of(setup.source)
        self.test_feats = self.feats if setup.ev.test_cache is setup.source else features_of(setup.ev.test_cache)

    def fit(self, train: np.ndarray, seed: int) -> Any:
        ev, cfg = self.setup.ev, self.setup.cfg
        return fit_linear_probe(
            self.feats[train], ev.labels[train], self.feats[ev.valid], ev.labels[ev.valid],
            c_grid=tuple(cfg.c_grid), device=str(self.setup.device),
        )

    def predict(self, fitted: Any) -> Predictions:
        ev = self.setup.ev
        return Predictions(
            valid=fitted.decision_function(self.feats[ev.valid]),
            test=fitted.decision_function(self.test_feats[ev.test]),
            selection={"C": dict(zip(ev.pathologies, fitted.C.tolist(), strict=True))},
            embedding=self.test_feats[ev.test],
        )
