"""Losses as functions (and one queue module) on tensors; each docstring names its paper and equation."""

from cxrl.losses.byol import byol_loss
from cxrl.losses.contrastive import FeatureQueue, info_nce, moco_v3_loss, nt_xent
from cxrl.losses.image_text import LogitScale, dhn_nce, image_text_info_nce, semantic_matching_loss
from cxrl.losses.local_alignment import gloria_local_loss, gloria_local_scores, mgca_token_loss
from cxrl.losses.supervised import (
    focal_loss,
    inverse_frequency_weights,
    masked_bce,
    multiclass_uncertainty_ce,
    multiclass_uncertainty_probability,
    positive_weights,
)
from cxrl.losses.swav import swav_loss

__all__ = [
    "FeatureQueue",
    "LogitScale",
    "byol_loss",
    "dhn_nce",
    "focal_loss",
    "gloria_local_loss",
    "gloria_local_scores",
    "image_text_info_nce",
    "info_nce",
    "inverse_frequency_weights",
    "masked_bce",
    "mgca_token_loss",
    "moco_v3_loss",
    "multiclass_uncertainty_ce",
    "multiclass_uncertainty_probability",
    "nt_xent",
    "positive_weights",
    "semantic_matching_loss",
    "swav_loss",
]
