"""Projection and prediction heads: thin factories over lightly's heads, dimensions as arguments.

Each head maps encoder features ``(B, input_dim)`` to embeddings; the layer specs follow the papers named below.
"""

from __future__ import annotations

from lightly.models.modules import heads
from torch import nn


def simclr_projection(input_dim: int, hidden_dim: int = 2048, output_dim: int = 128, num_layers: int = 2) -> nn.Module:
    """SimCLR (Chen et al. 2020) MLP with batch norm: Linear-BN-ReLU x (num_layers - 1), then Linear-BN."""
    return heads.SimCLRProjectionHead(input_dim, hidden_dim, output_dim, num_layers=num_layers, batch_norm=True)


def moco_projection(
    input_dim: int, hidden_dim: int = 2048, output_dim: int = 128, num_layers: int = 2, batch_norm: bool = False
) -> nn.Module:
    """MoCo v2 (Chen et al. 2020): 2 layers, no BN. MoCo v3 (Chen et al. 2021): ``num_layers=3, batch_norm=True``."""
    return heads.MoCoProjectionHead(input_dim, hidden_dim, output_dim, num_layers=num_layers, batch_norm=batch_norm)


def byol_projection(input_dim: int, hidden_dim: int = 4096, output_dim: int = 256) -> nn.Module:
    """BYOL (Grill et al. 2020) projector: Linear-BN-ReLU-Linear."""
    return heads.BYOLProjectionHead(input_dim, hidden_dim, output_dim)


def byol_prediction(input_dim: int = 256, hidden_dim: int = 4096, output_dim: int = 256) -> nn.Module:
    """BYOL predictor q_theta: same shape as the projector, applied to the online branch only."""
    return heads.BYOLPredictionHead(input_dim, hidden_dim, output_dim)


def swav_projection(input_dim: int, hidden_dim: int = 2048, output_dim: int = 128) -> nn.Module:
    """SwAV (Caron et al. 2020) projector: Linear-BN-ReLU-Linear; L2-normalize its output before the prototypes."""
    return heads.SwaVProjectionHead(input_dim, hidden_dim, output_dim)


def swav_prototypes(input_dim: int = 128, n_prototypes: int = 3000) -> nn.Module:
    """SwAV prototypes C (a Linear layer); call ``.normalize()`` before each step to keep them on the sphere."""
    return heads.SwaVPrototypes(input_dim, n_prototypes)


def hold_prototypes(prototypes: nn.Module, step: int, freeze_steps: int) -> None:
    """After the backward of ``step``: drop the prototypes' gradients while ``step < freeze_steps`` (SwAV's and
    MGCA's frozen start; no update, and DDP sees no unused parameters)."""
    if step < freeze_steps:
        for p in prototypes.parameters():
            p.grad = None


def image_text_projection(input_dim: int, hidden_dim: int = 2048, output_dim: int = 512) -> nn.Module:
    """ConVIRT (Zhang et al. 2022) projections g_v / g_u: Linear-ReLU-Linear to the shared 512-d space, no BN."""
    return heads.SimCLRProjectionHead(input_dim, hidden_dim, output_dim, num_layers=2, batch_norm=False)


def linear_projection(input_dim: int, output_dim: int = 512) -> nn.Module:
    """One linear map to the joint space (CLIP, Radford et al. 2021: ``W_i``, ``W_t`` without bias)."""
    return nn.Linear(input_dim, output_dim, bias=False)


HEADS = {"image_text_projection": image_text_projection, "linear_projection": linear_projection}
