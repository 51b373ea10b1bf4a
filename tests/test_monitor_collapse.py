"""The online monitor warns when the encoder maps every image to nearly the same point, and not otherwise."""

from __future__ import annotations

import torch

from cxrl.monitor import collapse_warning, feature_std


def test_collapsed_features_warn_and_spread_ones_do_not():
    gen = torch.Generator().manual_seed(0)
    spread = torch.randn(256, 128, generator=gen)
    collapsed = torch.randn(1, 128, generator=gen) + 0.01 * torch.randn(256, 128, generator=gen)
    assert collapse_warning(feature_std(spread), 128, epoch=3) is None
    warning = collapse_warning(feature_std(collapsed), 128, epoch=3)
    assert warning is not None and "epoch 3" in warning and "collapsing" in warning
